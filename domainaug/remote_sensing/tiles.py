"""Tiling of large rasters: windows read lazily as georeferenced Samples, and a writer that mosaics
processed tiles back into one GeoTIFF. Memory stays bounded by a few tiles whatever the raster size."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.params import check_positive_int
from ..core.sample import Role, Sample
from ..core.space import Space, as_crs, crs_equal, crs_name
from ..errors import DomainaugError, NoDataError, ParameterError, SpaceMismatchError
from ..io import assemble, atomic_path
from ..io.sources import as_source
from .spectral import set_bands

if TYPE_CHECKING:
    from rasterio.windows import Window

# rasterio (GDAL) and io.geotiff are imported by the functions that read or write, on first use.

__all__ = ["tiles", "tile_windows", "TileWriter", "classification_patches", "scene_stats"]

CACHE_BYTES = 16 * 2**20      # GDAL block cache while tiling: a few tiles, not the raster


def classification_patches(path: str | os.PathLike, label: str | os.PathLike, size: int, *,
                           min_labelled: float = 0.5, bands: Sequence[str] | None = None,
                           sensor: str | None = None) -> list[Sample]:
    """Patches for scene classification: ``size``-pixel tiles of ``path`` (read lazily with
    ``tiles``) whose class is the majority class of the labelled pixels of ``label`` (0 =
    unlabelled), stored 0-based in ``meta["target"]``; the label layer is dropped. Tiles with less
    than ``min_labelled`` of their pixels labelled, or cut by the raster edge, are skipped."""
    if not 0.0 < min_labelled <= 1.0:
        raise ParameterError("min_labelled", min_labelled, "a share in (0, 1]")
    out = []
    for tile in tiles(path, size, label=label, bands=bands, sensor=sensor):
        if tile["label"].shape[0] != 1:
            raise ParameterError("label", str(label), f"a class raster of one band; it has {tile['label'].shape[0]}")
        lab = tile["label"][0]
        labelled = lab[lab > 0]
        if tile.space.shape != (size, size) or labelled.numel() < min_labelled * lab.numel():
            continue
        tile.meta["target"] = int(torch.bincount(labelled.long()).argmax()) - 1
        out.append(tile.replace(layers={n: layer for n, layer in tile.layers.items() if n != "label"}))
    return out


def tile_windows(height: int, width: int, size: int | Sequence[int], overlap: int = 0) -> list[Window]:
    """Windows of ``size`` (rows, cols) every ``size - overlap`` pixels; the last row/column of tiles
    is moved back inside the raster so every tile has full size (smaller rasters give one tile)."""
    pair = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
    if len(pair) != 2:
        raise ParameterError("size", size, "a tile size or a (rows, cols) pair")
    th, tw = pair
    for name, v in (("size", th), ("size", tw)):
        check_positive_int(name, v)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < min(th, tw):
        raise ParameterError("overlap", overlap, f"an integer in [0, {min(th, tw)})")
    from rasterio.windows import Window

    def starts(n: int, t: int) -> list[int]:
        if n <= t:
            return [0]
        out = list(range(0, n - t + 1, t - overlap))
        return out if out[-1] == n - t else out + [n - t]

    return [Window(c, r, min(tw, width), min(th, height)) for r in starts(height, th) for c in starts(width, tw)]


def _read_window(path: str | os.PathLike, window: Window) -> dict:
    from ..io import geotiff
    try:
        return geotiff.read(as_source(path), window)
    except DomainaugError:
        raise
    except Exception as exc:                               # a truncated or corrupt file: name it and the window
        raise DomainaugError(f"{path}: cannot read window rows {int(window.row_off)}.."
                             f"{int(window.row_off + window.height)}"
                             f", cols {int(window.col_off)}..{int(window.col_off + window.width)}: "
                             f"{type(exc).__name__}: {exc}") from exc


def tiles(path: str | os.PathLike, size: int | Sequence[int], overlap: int = 0, *,
          label: str | os.PathLike | None = None,
          bands: Sequence[str] | None = None, sensor: str | None = None, equivalent_crs: bool = False,
          dtype: str | torch.dtype | None = None, fill: float | str | None = None,
          scene_stats: bool = False) -> Iterator[Sample]:
    """Yield tiles of a GeoTIFF (and its label raster) as Samples, reading one window at a time.

    ``path`` (and ``label``) may be remote: a URL or GDAL virtual path of a Cloud-Optimised GeoTIFF
    (``/vsicurl/https://...``, ``/vsis3/bucket/key.tif``, ``https://...``) is read window by window
    with HTTP range requests, never downloaded whole (``domainaug.io.sources``).

    Each tile's ``Space`` places it in the raster's CRS (kept pixels keep their world
    coordinates); ``meta["window"]`` is ``[row_off, col_off, height, width]``. ``bands`` names the
    channels (with ``sensor``) when the file has no band descriptions. ``equivalent_crs``,
    ``dtype`` and ``fill`` are those of ``domainaug.io.load`` (a statistic fill is taken per tile).
    With ``scene_stats``, the statistics of the whole file (``scene_stats(path)``, one extra pass)
    are in every tile's ``meta["scene_stats"]["image"]``, for ops given ``stats="scene"`` (no seams
    between tiles).
    """
    import rasterio
    import rasterio.errors
    try:
        with rasterio.open(path) as src:
            height, width = src.height, src.width
    except rasterio.errors.RasterioIOError as exc:
        raise DomainaugError(f"{path}: cannot read it as geotiff: {exc}") from exc
    windows = tile_windows(height, width, size, overlap)
    stats = _read_scene_stats(path, bands) if scene_stats else None
    for window in windows:
        with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):         # GDAL's block cache would grow to the raster
            image = _read_window(path, window)
            lab = _read_window(label, window) if label is not None else None
        if image.get("valid") is not None and not image["valid"].any():
            continue                                       # a tile of nodata only: nothing to learn from
        try:
            sample = assemble(image, lab, path, label, equivalent_crs, dtype=dtype, fill=fill)
        except NoDataError:                                # e.g. NaN everywhere in a float tile
            continue
        sample.meta.update(window=[int(window.row_off), int(window.col_off), int(window.height), int(window.width)],
                           raster_shape=[height, width])
        if bands is not None:
            sample = set_bands(sample, bands, sensor)
        if stats is not None:
            sample.meta["scene_stats"] = {"image": {b: dict(v) for b, v in stats.items()}}
        yield sample


class TileWriter:
    """Mosaic processed tiles into one GeoTIFF on the grid of ``like`` (the source raster).

    ``write(tile)`` places a tile by its world coordinates (it must lie on the grid: same CRS, pixel
    size and orientation, whole-pixel offset) and writes its interior: ``overlap // 2`` pixels are
    left to the neighbour on each side that has one, so tiles meet without seams. Tiles must keep
    the source grid (spatial warps such as dihedral turns and rotations do; crops and resampling
    do not). The file appears under its final name only when the writer is closed without error.

    The file is written as ``like`` is (``domainaug.io.geotiff``): dtype (or ``dtype``), nodata,
    compression, predictor, tiling, colour interpretation, tags, scales/offsets, CRS; band names
    are those of the tiles' channels. Invalid pixels (nodata, or brought in by a rotation) are
    written as ``like``'s nodata value or, when it has none, marked in an internal mask; never
    silent zeros. ``equivalent_crs`` accepts tiles whose CRS PROJ calls equal.
    """

    def __init__(self, path: str | os.PathLike, like: str | os.PathLike, overlap: int = 0, layer: str = "image",
                 count: int | None = None, dtype: str | None = None, *, equivalent_crs: bool = False) -> None:
        self.path, self.overlap, self.layer, self.equivalent_crs = Path(path), int(overlap), layer, equivalent_crs
        import rasterio

        from ..io import geotiff
        with rasterio.open(like) as src:
            self.source = geotiff.source_meta(src)
            self.space = Space((src.height, src.width), geotiff.to_space_affine(src.transform), as_crs(src.crs))
            count = count or src.count
        self.dtype = None if dtype is None else np.dtype(dtype)
        disk = self.dtype or np.dtype(self.source["on_disk_dtype"])
        self.nodata = None if self.source["nodata"] is None else geotiff.nodata_in(self.source["nodata"], disk)
        self.profile = geotiff.creation_profile(self.source, self.space, count, disk, self.nodata)
        self._masked: list[Window] | None = None             # windows written before a mask was needed
        self._written: list[Window] = []
        self._bands_done = False
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._dst = rasterio.open(self._tmp, "w", **self.profile)

    def write(self, tile: Sample) -> None:
        from rasterio.windows import Window

        from ..io import geotiff
        if self.layer in tile.grids:
            raise SpaceMismatchError(f"layer {self.layer!r} of the tile is on a grid of its own "
                                     f"({tile.space_of(self.layer).describe()}), not the tile's; put "
                                     f"ResampleToMatch(target=...) in the pipeline before writing the mosaic")
        if tile.space.crs != self.space.crs and not (self.equivalent_crs and crs_equal(tile.space.crs, self.space.crs)):
            raise SpaceMismatchError(f"tile CRS {crs_name(tile.space.crs)} differs from the mosaic's "
                                     f"{crs_name(self.space.crs)}" + ("; they are equivalent by PROJ: pass "
                                     "equivalent_crs=True to accept"
                                     if crs_equal(tile.space.crs, self.space.crs) else ""))
        offset = self.space.world_to_index(tile.space.index_to_world(np.zeros(2)))
        relative = self.space.inverse @ tile.space.affine
        if not np.allclose(relative[:2, :2], np.eye(2), atol=1e-6) or \
                not np.allclose(offset, np.round(offset), atol=1e-4):
            raise SpaceMismatchError("the tile is not on the mosaic's pixel grid (was it cropped, resampled or "
                                     f"rotated into another grid?): {tile.space.differences(self.space)} "
                                     "(tile vs mosaic)")
        r0, c0 = (int(v) for v in np.round(offset))
        h, w = tile.space.shape
        H, W = self.space.shape
        half = self.overlap // 2
        top = half if r0 > 0 else 0
        left = half if c0 > 0 else 0
        bottom = self.overlap - half if r0 + h < H else 0
        right = self.overlap - half if c0 + w < W else 0
        info = tile.layer_info(self.layer)
        if not self._bands_done:                              # before the first pixel: GDAL fixes colour then
            geotiff.finish_bands(self._dst, self.source, info.channels, self.profile["count"])
            self._bands_done = True
        data = tile[self.layer].cpu().numpy()[:, top:h - bottom, left:w - right]
        valid = None
        if tile.valid_name and info.role is Role.INTENSITY:
            valid = tile[tile.valid_name][0].cpu().numpy()[top:h - bottom, left:w - right]
        values, _, use_mask = geotiff.disk_values(data, info.role.value, self.source, fill=info.fill, valid=valid,
                                                  dtype=self.dtype)
        window = Window(c0 + left, r0 + top, data.shape[2], data.shape[1])
        self._dst.write(values, window=window)
        if use_mask and self._masked is None:                 # the first invalid pixel: every earlier window is valid
            self._masked = list(self._written)
            with geotiff.write_env():                         # the mask goes inside the TIFF
                for earlier in self._masked:
                    self._dst.write_mask(np.full((int(earlier.height), int(earlier.width)), 255, np.uint8),
                                         window=earlier)
        if self._masked is not None:
            mask = np.full(data.shape[1:], 255, np.uint8) if valid is None else np.where(valid, 255, 0).astype(np.uint8)
            with geotiff.write_env():
                self._dst.write_mask(mask, window=window)
        self._written.append(window)

    def close(self) -> Path:
        self._dst.close()
        self._atomic.__exit__(None, None, None)
        return self.path

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._dst.close()
            self._atomic.__exit__(exc_type, exc, tb)


def scene_stats(path: str | os.PathLike, bands: Sequence[str] | None = None,
                block: int = 1024) -> dict[str, dict[str, float]]:
    """Per-band ``{"min", "max", "mean", "std", "count"}`` over the valid pixels of a whole GeoTIFF
    (valid as ``tiles`` and ``load`` see them), read ``block`` rows and columns at a time. Keys are
    ``bands`` or the file's channel names; the result is JSON-ready (``stats=`` of spectral ops).

    Raises:
        NoDataError: the file has no valid pixel.
    """
    return _read_scene_stats(path, bands, block)


def _read_scene_stats(path: str | os.PathLike, bands: Sequence[str] | None = None,
                      block: int = 1024) -> dict[str, dict[str, float]]:
    import rasterio

    from ..io import geotiff
    with rasterio.open(path) as src:
        height, width = src.height, src.width
    shift: torch.Tensor | None = None
    total = squares = low = high = torch.zeros(0, dtype=torch.float64)       # set with ``shift``, from the first tile
    count = 0
    names: list[str] = []
    for window in tile_windows(height, width, check_positive_int("block", block)):
        with rasterio.Env(GDAL_CACHEMAX=CACHE_BYTES):
            image = geotiff.read(as_source(path), window)
        if image.get("valid") is not None and not image["valid"].any():
            continue
        try:
            sample = assemble(image, None, path)
        except NoDataError:
            continue
        names = [str(b) for b in bands] if bands is not None else list(sample.layer_info("image").channels or ())
        data = sample["image"].double().reshape(sample["image"].shape[0], -1)
        if sample.valid_name:
            data = data[:, sample[sample.valid_name].reshape(-1)]
        if shift is None:                       # sums about a first estimate of the mean: no cancellation
            shift = data.mean(1)
            total, squares = torch.zeros_like(shift), torch.zeros_like(shift)
            low, high = data.amin(1), data.amax(1)
        d = data - shift[:, None]
        count += data.shape[1]
        total, squares = total + d.sum(1), squares + (d * d).sum(1)
        low, high = torch.minimum(low, data.amin(1)), torch.maximum(high, data.amax(1))
    if shift is None:
        raise NoDataError(f"{path}: no valid pixel, so no scene statistics")
    if len(names) != len(shift):
        raise ParameterError("bands", names, f"{len(shift)} band names for {path}")
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    return {n: {"min": float(low[i]), "max": float(high[i]), "mean": float(shift[i] + mean[i]), "std": float(std[i]),
                "count": int(count)} for i, n in enumerate(names)}
