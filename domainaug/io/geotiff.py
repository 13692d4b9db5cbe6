"""GeoTIFF through rasterio.

A GeoTIFF geotransform maps pixel *corners* in (col, row) order to (x, y) in CRS units; domainaug
maps array indices of pixel *centres* in (row, col) order.

Reading: a pixel is valid only where **every** band is valid (each band's nodata value or mask,
combined; GDAL's dataset mask would call a pixel valid when any band is). The CRS is kept whole
(``as_crs``: ``"EPSG:<code>"`` only when the file's definition is that code, else its WKT). The
file's layout and metadata are remembered (``source_meta``) so that ``write`` gives the file back
as it came: dtype, nodata (NaN included), compression, predictor, tiling, interleave, colour
interpretation (alpha only where the source had alpha), band descriptions, tags, scales, offsets,
units, colour map and the exact source CRS definition.

Writing invalid pixels: they hold the source's nodata value (NaN when the source marked them
with NaN alone); a source without nodata (or a dtype that cannot hold it) gets an internal mask
band instead (``GDAL_TIFF_INTERNAL_MASK``), so no data
value is ever taken over and invalid pixels are never silent zeros. A valid pixel whose on-disk
value would equal the nodata value is moved one step away from it (it would read back as nodata).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.transform import Affine as GeoTransform
from rasterio.windows import Window

from ..core.space import Space, as_crs
from ..errors import NoDataError, ParameterError
from .common import check_load_size, fits, smallest_integer_dtype, to_disk

__all__ = ["read", "read_dataset", "write",
           "fit_to", "to_space_affine", "to_geotransform", "source_meta", "band_validity",
           "disk_values", "nodata_in", "creation_profile", "finish_bands", "write_env", "LABEL_DTYPES"]

#: Integer types tried, in order, for a label raster whose values its source type cannot hold.
LABEL_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32")

_PHOTOMETRIC = {"black": "MINISBLACK", "white": "MINISWHITE", "rgb": "RGB", "cmyk": "CMYK", "ycbcr": "YCBCR",
                "cielab": "CIELAB", "icclab": "ICCLAB", "itulab": "ITULAB"}


def to_space_affine(t: GeoTransform) -> np.ndarray:
    """rasterio geotransform (corner, (col, row)) -> domainaug affine (centre, (row, col))."""
    return np.array([[t.b, t.a, t.c + 0.5 * t.a + 0.5 * t.b],
                     [t.e, t.d, t.f + 0.5 * t.d + 0.5 * t.e],
                     [0.0, 0.0, 1.0]])


def to_geotransform(affine: np.ndarray) -> GeoTransform:
    """Inverse of ``to_space_affine``."""
    b, a, e, d = affine[0, 0], affine[0, 1], affine[1, 0], affine[1, 1]
    return GeoTransform(a, b, affine[0, 2] - 0.5 * a - 0.5 * b, d, e, affine[1, 2] - 0.5 * d - 0.5 * e)


def default_names(descriptions: Sequence[str | None]) -> list[str]:
    """Channel names at load: the band descriptions, ``band<i>`` (1-based) where there is none."""
    return [d if d else f"band{i + 1}" for i, d in enumerate(descriptions)]


def source_meta(src: Any) -> dict[str, Any]:
    """What ``write`` needs to give the file back as it came (plain data, picklable)."""
    structure = src.tags(ns="IMAGE_STRUCTURE")
    profile = src.profile
    flags = src.mask_flag_enums
    mask = ("none" if all(MaskFlags.all_valid in f for f in flags) else
            "alpha" if any(MaskFlags.alpha in f for f in flags) else
            "mask" if any(MaskFlags.per_dataset in f for f in flags) else "nodata")
    colormap = None
    if src.count == 1 and src.colorinterp[0] == ColorInterp.palette:
        try:
            colormap = {int(k): tuple(int(c) for c in v) for k, v in src.colormap(1).items()}
        except ValueError:
            colormap = None
    return {"format": "geotiff", "on_disk_dtype": src.dtypes[0],
            "nodata": None if src.nodata is None else float(src.nodata),
            "crs": as_crs(src.crs), "crs_wkt": src.crs.to_wkt(),
            "channels": default_names(src.descriptions), "band_descriptions": list(src.descriptions),
            "colorinterp": [c.name for c in src.colorinterp], "colormap": colormap,
            "compress": structure.get("COMPRESSION", "").lower() or None,
            "predictor": int(structure["PREDICTOR"]) if structure.get("PREDICTOR", "").isdigit() else None,
            "tiled": bool(profile.get("tiled", False)), "blockxsize": profile.get("blockxsize"),
            "blockysize": profile.get("blockysize"), "interleave": profile.get("interleave"),
            "photometric": src.photometric.name if src.photometric is not None else None,
            "tags": dict(src.tags()), "band_tags": [dict(src.tags(b)) for b in src.indexes],
            "scales": [float(v) for v in src.scales], "offsets": [float(v) for v in src.offsets],
            "units": [u or "" for u in src.units], "mask": mask}


def nodata_in(value: float, dtype: np.dtype) -> Any:
    """``value`` in ``dtype``, or ``None`` when ``dtype`` cannot hold it (no pixel can equal it)."""
    if math.isnan(value):
        return np.nan if dtype.kind == "f" else None
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return dtype.type(value) if value == round(value) and info.min <= value <= info.max else None
    return dtype.type(value)


def band_validity(src: Any, data: np.ndarray, window: Window | None = None) -> np.ndarray | None:
    """``(1, H, W)`` bool: valid where every band is valid (its nodata value, or its mask), or
    ``None`` when the file marks nothing invalid."""
    flags = src.mask_flag_enums
    if all(MaskFlags.all_valid in f for f in flags):
        return None
    valid = np.ones(data.shape[1:], dtype=bool)
    for b, band_flags in enumerate(flags):
        if MaskFlags.all_valid in band_flags:
            continue
        nodata = src.nodatavals[b]
        if list(band_flags) == [MaskFlags.nodata] and nodata is not None:
            value = nodata_in(float(nodata), data.dtype)
            if value is None:
                continue
            valid &= ~np.isnan(data[b]) if isinstance(value, float) and math.isnan(value) else data[b] != value
        else:                                     # an internal/external mask or alpha: GDAL reads it per band
            valid &= src.read_masks(b + 1, window=window) > 0
    return valid[None]


def read(path: Path | str, window: Window | None = None) -> dict[str, Any]:
    """The raster, or one window of it (read lazily: only that window's pixels). ``path`` is a
    local ``Path`` or a remote/GDAL virtual path string (``io.sources``), given to rasterio as it is."""
    with rasterio.open(path) as src:
        return read_dataset(src, path, window)


def read_dataset(src: Any, path: Any, window: Window | None = None) -> dict[str, Any]:
    """What ``read`` returns, from an open rasterio dataset (left open; ``path`` names it)."""
    if src.crs is None:
        raise ParameterError("crs", f"none in {path}", "a GeoTIFF with a coordinate reference system")
    height = src.height if window is None else int(window.height)
    width = src.width if window is None else int(window.width)
    check_load_size(path, (src.count, height, width), np.dtype(src.dtypes[0]).itemsize)
    data = src.read(window=window)
    valid = band_validity(src, data, window)
    meta = source_meta(src)
    transform = src.window_transform(window) if window is not None else src.transform
    affine = to_space_affine(transform)
    if window is None and valid is not None and not valid.any():
        raise NoDataError(f"{path}: every pixel is nodata")
    nodata = meta["nodata"]
    fill = nodata if nodata is not None and math.isfinite(nodata) else None   # the nodata value stays the fill
    return {"format": "geotiff", "data": np.ascontiguousarray(data),
            "space": Space(data.shape[1:], affine, meta["crs"]),
            "fill": fill, "valid": valid, "channels": tuple(meta["channels"]), "meta": meta}


def fit_to(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values ready for a raster of ``dtype``: integers rounded and clipped to its range."""
    return to_disk(data, dtype)


def _disk_dtype(data: np.ndarray, role: str, src: dict[str, Any], dtype: Any) -> np.dtype:
    if role == "valid":
        return np.dtype("uint8")
    requested = np.dtype(dtype) if dtype is not None else None
    disk = requested or (np.dtype(src["on_disk_dtype"]) if src.get("on_disk_dtype") else None)
    if role == "label":
        if disk is not None and (disk.kind == "f" or fits(data, disk)):
            return disk
        return smallest_integer_dtype(data, LABEL_DTYPES)
    disk = disk or data.dtype
    return np.dtype("float32") if disk.kind == "f" and disk.itemsize < 4 else disk   # no float16 GeoTIFFs here


def _step_off(values: np.ndarray, at: np.ndarray, nodata: Any) -> None:
    """Move valid values equal to ``nodata`` one step away from it, in place."""
    hit = at & (values == nodata)
    if not hit.any():
        return
    if values.dtype.kind == "f":
        values[hit] = np.nextafter(values.dtype.type(nodata), values.dtype.type(np.inf))
    else:
        info = np.iinfo(values.dtype)
        values[hit] = nodata + 1 if nodata < info.max else nodata - 1


def disk_values(data: np.ndarray, role: str, src: dict[str, Any], *, fill: float, valid: np.ndarray | None,
                dtype: Any = None) -> tuple[np.ndarray, Any, bool]:
    """``(values on disk, nodata for the header or None, whether an internal mask is needed)``.

    Intensity: invalid pixels get the source's nodata (NaN included) when the dtype holds it; NaN
    when the source marked them with NaN alone (no nodata tag) and the dtype is float; else the
    fill and an internal mask. Valid pixels never take the nodata value. Labels: when no labelled pixel
    was 0 at load, 0 (unlabelled) is written as the source's nodata value.
    """
    disk = _disk_dtype(data, role, src, dtype)
    nodata = src.get("nodata")
    nodata_d = None if nodata is None else nodata_in(nodata, disk)
    if role == "valid":
        return data.astype(np.uint8), None, False
    if role == "label":
        values = to_disk(data, disk)
        if nodata_d is not None and src.get("unlabelled") == "nodata":
            values[data == 0] = nodata_d
        return values, nodata_d, False
    invalid = None if valid is None else ~np.broadcast_to(valid, data.shape)
    if invalid is not None and not invalid.any():
        invalid = None
    values = to_disk(data if invalid is None else np.where(invalid, data.dtype.type(fill), data), disk)
    if nodata_d is not None:
        _step_off(values, np.ones(values.shape, bool) if invalid is None else ~invalid, nodata_d)
        if invalid is not None:
            values[invalid] = nodata_d
        return values, nodata_d, False
    if invalid is not None and disk.kind == "f" and src.get("non_finite"):   # NaN marked them in the source
        values[invalid] = np.nan
        return values, None, False
    return values, None, invalid is not None


def _crs_for(space: Space, src: dict[str, Any]) -> Any:
    if src.get("crs_wkt") and src.get("crs") == space.crs:       # unchanged: the source's own definition
        return CRS.from_wkt(src["crs_wkt"])
    return CRS.from_user_input(space.crs)


def _band_map(channels: Sequence[str] | None, count: int, src: dict[str, Any]) -> list[int | None]:
    """For each output band, the source band it comes from: by name, else by position when the
    band count is unchanged, else none."""
    names = list(src.get("channels") or [])
    out: list[int | None] = []
    for i in range(count):
        name = channels[i] if channels else None
        if name is not None and name in names:
            out.append(names.index(name))
        elif len(names) == count:
            out.append(i)
        else:
            out.append(None)
    return out


def creation_profile(src: dict[str, Any], space: Space, count: int, dtype: np.dtype, nodata: Any) -> dict[str, Any]:
    """The rasterio creation profile: the source's layout (compression, predictor, tiling,
    interleave, photometric) when known, else deflate with 256-pixel tiles."""
    height, width = space.shape
    profile: dict[str, Any] = {"driver": "GTiff", "width": width, "height": height, "count": count,
                               "dtype": np.dtype(dtype).name, "crs": _crs_for(space, src),
                               "transform": to_geotransform(space.affine)}
    if nodata is not None:
        profile["nodata"] = nodata
    if src.get("format") != "geotiff":
        profile["compress"] = "deflate"
        if height >= 256 and width >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
        return profile
    if src.get("compress"):
        profile["compress"] = src["compress"]
        predictor = src.get("predictor")
        if predictor and not (predictor == 3 and np.dtype(dtype).kind != "f"):
            profile["predictor"] = predictor
    if src.get("tiled"):
        profile.update(tiled=True, blockxsize=src["blockxsize"], blockysize=src["blockysize"])
    elif src.get("blockysize"):
        profile["blockysize"] = src["blockysize"]                  # rows per strip
    if src.get("interleave") and count > 1:
        profile["interleave"] = src["interleave"]
    photometric = _PHOTOMETRIC.get(str(src.get("photometric") or "").lower())
    if photometric and len(src.get("channels") or []) == count:
        profile["photometric"] = photometric
    return profile


def finish_bands(dst: Any, src: dict[str, Any], channels: Sequence[str] | None, count: int) -> None:
    """Band metadata of a just-opened output, before any pixel is written (GDAL fixes the colour
    interpretation with the first write): colour interpretation, descriptions, tags, scales,
    offsets, units and colour map from the source bands they come from; channel names as
    descriptions."""
    mapping = _band_map(channels, count, src)
    names, descriptions = list(src.get("channels") or []), list(src.get("band_descriptions") or [])
    source_ci = list(src.get("colorinterp") or [])
    ci = [ColorInterp[source_ci[j]] if j is not None and j < len(source_ci) else ColorInterp.undefined
          for j in mapping]
    if not source_ci:
        ci = [ColorInterp.gray] + [ColorInterp.undefined] * (count - 1)
    dst.colorinterp = ci                   # set explicitly: GDAL would otherwise make a 4th uint8 band alpha
    for i, j in enumerate(mapping):
        name = channels[i] if channels else None
        if j is not None and name == names[j]:
            description = descriptions[j] if j < len(descriptions) else None   # "band3" was made at load
        else:
            description = name
        if description:
            dst.set_band_description(i + 1, description)
        if j is not None:
            tags = {k: v for k, v in (src.get("band_tags") or [{}] * (j + 1))[j].items()
                    if not k.startswith("STATISTICS_")}               # statistics of the source are stale
            if tags:
                dst.update_tags(i + 1, **tags)
    if src.get("tags"):
        dst.update_tags(**src["tags"])
    for key in ("scales", "offsets", "units"):
        values = src.get(key) or []
        default = {"scales": 1.0, "offsets": 0.0, "units": ""}[key]
        per_band = [values[j] if j is not None and j < len(values) else default for j in mapping]
        if any(v != default for v in per_band):
            setattr(dst, key, per_band)
    if src.get("colormap") and count == 1 and ci[0] == ColorInterp.palette:
        dst.write_colormap(1, src["colormap"])


def write_env() -> rasterio.Env:
    """The GDAL settings for writing: masks go inside the TIFF, never into a ``.msk`` side file."""
    return rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True)


def write(path: Path, data: np.ndarray, space: Space, *, meta: dict[str, Any], role: str, fill: float,
          valid: np.ndarray | None, channels: Sequence[str] | None, dtype: Any = None) -> None:
    if space.ndim != 2:
        raise ParameterError("path", str(path), f"a format for {space.ndim}D samples (GeoTIFF holds 2D rasters)")
    if space.crs is None:
        raise ParameterError("crs", None, "a CRS on the sample's space to write a GeoTIFF")
    src = meta if meta.get("format") == "geotiff" else {}
    values, nodata, use_mask = disk_values(data, role, src, fill=fill, valid=valid, dtype=dtype)
    profile = creation_profile(src, space, values.shape[0], values.dtype, nodata)
    with write_env(), rasterio.open(path, "w", **profile) as dst:
        finish_bands(dst, src, channels, values.shape[0])
        dst.write(values)
        if use_mask and valid is not None:        # (a mask is only needed for invalid pixels)
            dst.write_mask(np.where(np.broadcast_to(valid, data.shape[1:]), 255, 0).astype(np.uint8))
