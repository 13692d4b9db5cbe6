"""A raster ``Sample`` to and from an ``xarray.DataArray`` georeferenced by rioxarray
(``Sample.from_xarray``, ``Sample.to_xarray``; the ``xarray`` extra).

- **In.** The grid comes from ``da.rio.transform()`` (pixel corners, as GeoTIFF) and the CRS from
  ``da.rio.crs``; a DataArray of ``(band, y, x)`` (any name for the band dimension) or ``(y, x)``
  (one channel). Band names come from the band coordinate when it holds strings, else from the
  ``long_name`` attribute (what rioxarray makes of GeoTIFF band descriptions), else ``band<i>``, as
  ``io.load`` names a file's bands. Nodata is ``da.rio.nodata`` (``_FillValue``); a masked array
  (``mask_and_scale=True``: NaN at nodata) is invalid where it is NaN and takes its encoded nodata
  as the fill. Values are handled as ``io.load`` handles a file's: float32 intensities, a pixel
  valid only where every band is, invalid pixels holding the fill. The same file opened with
  ``rioxarray.open_rasterio`` and with ``io.load`` gives the same ``Sample``.
- **Out.** ``to_xarray`` gives ``(band, y, x)`` with pixel-centre ``x``/``y`` coordinates, the CRS
  and transform written by rioxarray, ``_FillValue`` the nodata value, and the dtype, band
  coordinate, dimension names and attributes of the DataArray the sample came from (values fitted
  to that dtype once, as ``io.save`` does), so ``from_xarray(da).to_xarray()`` gives ``da`` back.
  A sample of any other source gets rioxarray's layout: bands numbered ``1..C``, named channels in
  ``long_name`` (so ``io.load(f).to_xarray()`` holds what ``rioxarray.open_rasterio(f)`` holds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.sample import Role, Sample
from ..core.space import Space, as_crs
from ..errors import ParameterError
from ..extras import require

__all__ = ["from_xarray", "to_xarray"]

#: Attributes rioxarray manages itself (written from the CRS, transform and nodata).
_MANAGED = ("_FillValue", "missing_value", "grid_mapping", "transform", "crs")


def _names(da: Any, band_dim: str | None, count: int) -> tuple[list[str], list[Any] | None]:
    """The channel names, and the band coordinate's values (``None`` without one)."""
    from .geotiff import default_names
    coord = None
    if band_dim is not None and band_dim in da.coords:
        coord = [v.item() if hasattr(v, "item") else v for v in np.asarray(da.coords[band_dim].values)]
    if coord is not None and all(isinstance(v, str) for v in coord):
        return [str(v) for v in coord], coord
    long_name = da.attrs.get("long_name")
    if isinstance(long_name, str) and count == 1:
        long_name = [long_name]
    descriptions = list(long_name) if isinstance(long_name, (list, tuple)) and len(long_name) == count else \
        [None] * count
    return default_names([str(d) if d else None for d in descriptions]), coord


def _raw(da: Any, what: str) -> dict[str, Any]:
    """What a reader returns (``io.assemble`` makes the layers), from a DataArray."""
    require("rioxarray", f"Sample.from_xarray ({what})")
    import xarray as xr

    from .geotiff import nodata_in, to_space_affine
    if isinstance(da, xr.Dataset):
        raise ParameterError(what, "xarray.Dataset", "an xarray.DataArray: pick a variable (ds['name']) or stack "
                             "them as bands (ds.to_dataarray('band'))")
    if not isinstance(da, xr.DataArray):
        raise ParameterError(what, type(da).__name__, "an xarray.DataArray (e.g. from rioxarray.open_rasterio)")
    y_dim, x_dim = da.rio.y_dim, da.rio.x_dim
    others = [d for d in da.dims if d not in (y_dim, x_dim)]
    if len(others) > 1 or da.ndim not in (2, 3):
        raise ParameterError(what, list(da.dims), f"dimensions ({y_dim}, {x_dim}) and at most one band dimension "
                             "(select one time or level first)")
    band_dim = str(others[0]) if others else None
    arranged = da.transpose(*([band_dim] if band_dim else []), y_dim, x_dim)
    values = np.asarray(arranged.values)
    if values.ndim == 2:
        values = values[None]
    if values.dtype.kind not in "iufb":
        raise ParameterError(what, str(values.dtype), "a numeric DataArray")
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    transform = da.rio.transform()
    space = Space(values.shape[1:], to_space_affine(transform), as_crs(da.rio.crs))
    nodata = da.rio.nodata
    encoded = da.rio.encoded_nodata
    nodata = None if nodata is None else float(nodata)
    valid = None
    value = None if nodata is None else nodata_in(nodata, values.dtype)     # None: no pixel can equal it
    if value is not None:
        hit = np.isnan(values) if isinstance(value, float) and math.isnan(value) else values == value
        valid = ~hit.any(0, keepdims=True)          # valid where every band is (declared nodata: a layer, as load)
    fill_source = nodata if nodata is not None and math.isfinite(nodata) else \
        float(encoded) if encoded is not None and math.isfinite(float(encoded)) else None
    names, coord = _names(da, band_dim, values.shape[0])
    source = da.encoding.get("source")
    meta = {"format": "xarray", "on_disk_dtype": str(values.dtype), "nodata": nodata,
            "encoded_nodata": None if encoded is None else float(encoded),
            "crs": space.crs, "channels": names, "band_descriptions": list(names),
            "dims": [str(d) for d in da.dims], "band_dim": None if band_dim is None else str(band_dim),
            "band_coord": coord, "name": da.name,
            "attrs": {k: v for k, v in da.attrs.items() if k not in _MANAGED}}
    if source:
        meta["source"] = str(source)
    return {"format": "xarray", "data": np.ascontiguousarray(values), "space": space, "fill": fill_source,
            "valid": valid, "channels": tuple(names), "meta": meta}


def from_xarray(da: Any, label: Any = None, *, dtype: Any = None, fill: float | str | None = None) -> Sample:
    """A raster ``Sample`` from a rioxarray-georeferenced DataArray (see the module).

    Args:
        da: The image, ``(band, y, x)`` or ``(y, x)``, with a CRS and transform rioxarray can read.
        label: An optional label DataArray on the same grid (a LABEL layer; nodata becomes 0).
        dtype: The in-memory float type of the image (float32 by default, float64 for float64 data).
        fill: As for ``io.load``: a number, ``"minimum"`` or ``"mean"``; default the nodata value.

    Raises:
        MissingDependencyError: xarray/rioxarray are not installed (the ``xarray`` extra).
        ParameterError: not a DataArray, or more than one non-spatial dimension.
        SpaceMismatchError: the label is on another grid.
    """
    from . import assemble
    image = _raw(da, "da")
    lab = None if label is None else _raw(label, "label")
    name = image["meta"].get("source") or (f"<xarray.DataArray {da.name!r}>" if da.name else "<xarray.DataArray>")
    label_name = None if lab is None else lab["meta"].get("source") or "<xarray.DataArray label>"
    return assemble(image, lab, name, label_name, dtype=dtype, fill=fill)


def to_xarray(sample: Sample, layer: str = "image", *, dtype: Any = None) -> Any:
    """One layer of a raster sample as a rioxarray-georeferenced DataArray (see the module).

    Args:
        sample: A 2D sample with a CRS (or none: then no CRS is written).
        layer: Which layer.
        dtype: The DataArray's dtype; default the dtype the layer came from (its DataArray's or
            file's), else the in-memory one. Integer types get values rounded and clipped once.

    Invalid pixels of an intensity layer hold the nodata value (``_FillValue``): the source's, or
    NaN for a float type; an integer type without a nodata value it can hold becomes float32 with
    NaN there (never a silent value).

    Raises:
        ParameterError: an unknown layer, a 3D sample, or a grid whose rows do not run along ``y``
            and columns along ``x`` (a rotated grid has no 1D ``x``/``y`` coordinates).
    """
    require("rioxarray", "Sample.to_xarray")
    import xarray as xr

    from .geotiff import disk_values, to_geotransform
    if layer not in sample.layer_names():
        raise ParameterError("layer", layer, f"a layer of the sample ({sample.layer_names()})")
    space = sample.space_of(layer)
    if space.ndim != 2:
        raise ParameterError("sample", space.describe(), "a 2D raster sample (to_xarray writes (band, y, x))")
    transform = to_geotransform(space.affine)
    if abs(transform.b) > 1e-12 * abs(transform.a) or abs(transform.d) > 1e-12 * abs(transform.e):
        raise ParameterError("sample", space.describe(), "a grid whose rows run along y and columns along x "
                             "(a rotated grid has no 1D x/y coordinates; Resample onto a north-up grid first)")
    info = sample.layer_info(layer)
    src = dict(sample.meta.get("layers", {}).get(layer, {}))
    data = info.data.detach().cpu()
    data_np = (data.float() if data.dtype.is_floating_point and data.element_size() < 4 else data).numpy()
    valid = None
    valid_name = sample.valid_of(layer)
    if valid_name and info.role is Role.INTENSITY:
        valid = sample.layers[valid_name].data.cpu().numpy()[0]
    role = info.role.value
    values, nodata, use_mask = disk_values(data_np, role, src, fill=info.fill, valid=valid, dtype=dtype)
    if use_mask and valid is not None:                      # no nodata value the dtype holds: NaN in float32
        values = np.where(np.broadcast_to(valid, values.shape), values.astype(np.float32), np.float32(np.nan))
        nodata = np.nan
    if role == "valid":
        nodata = None
    channels = list(info.channels) if info.channels else None
    count, height, width = values.shape
    attrs = dict(src.get("attrs") or {})
    band_coord: list[Any] = list(range(1, count + 1))         # rioxarray's: 1-based band numbers
    if src.get("format") == "xarray" and channels is not None:
        band_coord = list(channels)
        if src.get("band_coord") is not None and list(src.get("channels") or []) == channels:
            band_coord = list(src["band_coord"])             # the source's own coordinate (1, 2, 3, ...)
    elif channels is not None and channels != [f"band{i + 1}" for i in range(count)]:
        attrs["long_name"] = tuple(channels)                 # as rioxarray reads band descriptions
    dims = list(src.get("dims") or [])
    band_dim = src.get("band_dim") or "band"
    if len(dims) == 3 and band_dim in dims:
        y_dim, x_dim = [d for d in dims if d != band_dim]
    else:
        y_dim, x_dim = (dims if len(dims) == 2 else ["y", "x"])
    x = transform.c + (np.arange(width) + 0.5) * transform.a
    y = transform.f + (np.arange(height) + 0.5) * transform.e
    squeeze = len(dims) == 2 and count == 1
    array = xr.DataArray(values[0] if squeeze else values,
                         dims=(y_dim, x_dim) if squeeze else (band_dim, y_dim, x_dim),
                         coords={**({} if squeeze else {band_dim: band_coord}), y_dim: y, x_dim: x},
                         attrs=attrs, name=src.get("name"))
    array = array.rio.set_spatial_dims(x_dim=x_dim, y_dim=y_dim)
    if space.crs is not None:
        array = array.rio.write_crs(space.crs)
    array = array.rio.write_transform(transform)
    if nodata is not None:
        array = array.rio.write_nodata(nodata, encoded=False)
    return array
