"""GeoTIFF through rasterio.

A GeoTIFF geotransform maps pixel *corners* in (col, row) order to (x, y) in CRS units; domainaug
maps array indices of pixel *centres* in (row, col) order. Nodata and internal masks become one
VALID layer (GDAL's dataset mask) and the layer's fill; band descriptions become channel names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import Affine as GeoTransform
from rasterio.windows import Window

from ..core.space import Space
from ..errors import NoDataError, ParameterError

__all__ = ["read", "write", "fit_to", "to_space_affine", "to_geotransform"]


def to_space_affine(t: GeoTransform) -> np.ndarray:
    """rasterio geotransform (corner, (col, row)) -> domainaug affine (centre, (row, col))."""
    return np.array([[t.b, t.a, t.c + 0.5 * t.a + 0.5 * t.b],
                     [t.e, t.d, t.f + 0.5 * t.d + 0.5 * t.e],
                     [0.0, 0.0, 1.0]])


def to_geotransform(affine: np.ndarray) -> GeoTransform:
    """Inverse of ``to_space_affine``."""
    b, a, e, d = affine[0, 0], affine[0, 1], affine[1, 0], affine[1, 1]
    return GeoTransform(a, b, affine[0, 2] - 0.5 * a - 0.5 * b, d, e, affine[1, 2] - 0.5 * d - 0.5 * e)


def read(path: Path, window: Window | None = None) -> dict[str, Any]:
    """The raster, or one window of it (read lazily: only that window's pixels)."""
    with rasterio.open(path) as src:
        data = src.read(window=window)
        if src.crs is None:
            raise ParameterError("crs", f"none in {path}", "a GeoTIFF with a coordinate reference system")
        crs = src.crs.to_string()
        has_mask = src.nodata is not None or any(
            rasterio.enums.MaskFlags.all_valid not in flags for flags in src.mask_flag_enums)
        valid = (src.dataset_mask(window=window) > 0)[None] if has_mask else None
        names = [d if d else f"band{i + 1}" for i, d in enumerate(src.descriptions)]
        meta = {"on_disk_dtype": src.dtypes[0], "nodata": src.nodata, "band_descriptions": list(src.descriptions)}
        transform = src.window_transform(window) if window is not None else src.transform
        affine = to_space_affine(transform)
    if window is None and valid is not None and not valid.any():
        raise NoDataError(f"{path}: every pixel is nodata")
    fill = float(meta["nodata"]) if meta["nodata"] is not None and np.isfinite(meta["nodata"]) else 0.0
    return {"format": "geotiff", "data": np.ascontiguousarray(data), "space": Space(data.shape[1:], affine, crs),
            "fill": fill, "valid": valid, "channels": tuple(names), "meta": meta}


def fit_to(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Values ready for a raster of ``dtype``: integers rounded and clipped to its range."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return data
    info = np.iinfo(dtype)
    return np.clip(np.round(data) if data.dtype.kind == "f" else data, info.min, info.max)


def write(path: Path, data: np.ndarray, space: Space, meta: dict[str, Any], fill: float, valid, channels) -> None:
    if space.ndim != 2:
        raise ParameterError("path", str(path), f"a format for {space.ndim}D samples (GeoTIFF holds 2D rasters)")
    if space.crs is None:
        raise ParameterError("crs", None, "a CRS on the sample's space to write a GeoTIFF")
    disk = meta.get("on_disk_dtype")
    dtype = np.dtype(disk) if disk else data.dtype
    data = fit_to(data, dtype)
    nodata = meta.get("nodata")
    if valid is not None:
        nodata = fill if nodata is None else nodata
        data = np.where(valid[None], data, nodata)
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": dtype.name,
               "crs": space.crs, "transform": to_geotransform(space.affine), "compress": "deflate"}
    if nodata is not None:
        profile["nodata"] = nodata
    if height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        for i, name in enumerate(channels or ()):
            dst.set_band_description(i + 1, name)
