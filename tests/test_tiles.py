"""Tiling: lazy windows in the right place, seamless mosaics, bounded memory."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

import domainaug as da
from domainaug import remote_sensing as rs


def _peak_rss_growth(fn) -> float:
    status = lambda: dict(l.split(":", 1) for l in Path("/proc/self/status").read_text(encoding="utf-8").splitlines() if ":" in l)  # noqa
    Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
    before = int(status()["VmRSS"].split()[0])
    fn()
    return (int(status()["VmHWM"].split()[0]) - before) / 1024


def test_tiles_sit_where_their_pixels_are(fixtures):
    path = fixtures / "L7_ETMs.tif"
    seen = np.zeros((352, 349), int)
    with rasterio.open(path) as src:
        full = src.read()
        for tile in rs.tiles(path, 128, overlap=16):
            r, c, h, w = tile.meta["window"]
            assert tile.space.shape == (h, w) == (128, 128)
            assert torch.equal(tile["image"], torch.from_numpy(full[:, r:r + h, c:c + w]))
            assert np.allclose(tile.space.index_to_world([5, 7]), src.xy(r + 5, c + 7))
            seen[r:r + h, c:c + w] += 1
    assert seen.min() >= 1


def test_mosaic_of_a_pixelwise_op_equals_the_op_on_the_whole_raster(fixtures, tmp_path):
    path = fixtures / "rgbn_suba.tif"
    names = ["blue", "green", "red", "nir"]
    op = rs.SpectralJitter(gain=1.7, bias=0.0)
    params = {"gain": {n: 1.7 for n in names}, "bias": {n: 0.0 for n in names}}
    with rs.TileWriter(tmp_path / "mosaic.tif", like=path, overlap=20) as writer:
        for tile in rs.tiles(path, 96, overlap=20, bands=names):
            writer.write(op.apply(tile, params))
    whole = op.apply(rs.set_bands(da.io.load(path), names), params)
    da.io.save(whole, tmp_path / "whole.tif")                       # the on-disk type is applied at save, once
    with rasterio.open(tmp_path / "mosaic.tif") as dst, rasterio.open(tmp_path / "whole.tif") as ref, \
            rasterio.open(path) as src:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.nodata == src.nodata
        assert dst.dtypes == src.dtypes and dst.colorinterp == src.colorinterp and dst.descriptions == tuple(names)
        assert np.array_equal(dst.read(), ref.read())


def test_a_failed_mosaic_leaves_no_file(fixtures, tmp_path):
    path = fixtures / "L7_ETMs.tif"
    with pytest.raises(da.SpaceMismatchError, match="pixel grid"):
        with rs.TileWriter(tmp_path / "m.tif", like=path) as writer:
            for tile in rs.tiles(path, 100):
                writer.write(da.Resample(57.0)(tile, torch.Generator().manual_seed(0)) if tile.meta["window"][0]
                             else tile)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_bounded_by_a_few_tiles(tmp_path):
    """A 4x4096x4096 raster (64 MB) tiled by 256: peak growth stays far below the raster. The same
    run on a small raster first takes the one-off costs (kernel compilation, thread pools, GDAL
    drivers), which are not the tiler's."""
    def make(path, n):
        profile = dict(driver="GTiff", width=n, height=n, count=4, dtype="uint8", crs="EPSG:32633", tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate",
                       transform=rasterio.transform.from_origin(500000, 4200000, 10, 10))
        row = (np.arange(n, dtype=np.uint16)[None, None, :] % 251).astype(np.uint8)
        with rasterio.open(path, "w", **profile) as dst:
            for r in range(0, n, 256):
                dst.write(np.broadcast_to(row, (4, 256, n)), window=rasterio.windows.Window(0, r, n, 256))
        return path

    big, small = make(tmp_path / "big.tif", 4096), make(tmp_path / "small.tif", 1024)
    raster_mb = 4 * 4096 * 4096 / 2**20

    def run(path):
        with rs.TileWriter(tmp_path / "out.tif", like=path) as writer:
            for k, tile in enumerate(rs.tiles(path, 256)):
                writer.write(rs.RotationPolicy("dihedral")(tile, torch.Generator().manual_seed(k)))

    run(small)
    growth = _peak_rss_growth(lambda: run(big))
    assert growth < raster_mb / 3, (growth, raster_mb)


def test_all_nan_tiles_are_skipped(tmp_path):
    data = np.ones((1, 64, 64), np.float32)
    data[:, :32] = np.nan
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="float32", crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(0, 640, 10, 10))
    with rasterio.open(tmp_path / "nan.tif", "w", **profile) as dst:
        dst.write(data)
    windows = [t.meta["window"][0] for t in rs.tiles(tmp_path / "nan.tif", 32)]
    assert windows == [32, 32]


def test_tile_writer_rounds_and_clips_floats_into_integers(fixtures, tmp_path):
    path = fixtures / "L7_ETMs.tif"
    with rs.TileWriter(tmp_path / "m.tif", like=path) as writer:
        for tile in rs.tiles(path, 200):
            writer.write(tile.with_layers(image=da.Layer(tile["image"].float() * 1.5 + 0.4, da.Role.INTENSITY)))
    with rasterio.open(tmp_path / "m.tif") as dst, rasterio.open(path) as src:
        expected = np.clip(np.round(src.read().astype(np.float32) * 1.5 + 0.4), 0, 255)
        assert np.array_equal(dst.read(), expected.astype(np.uint8))
