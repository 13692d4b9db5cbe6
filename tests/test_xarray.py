"""``Sample.from_xarray`` / ``Sample.to_xarray`` against real rioxarray: the shipped raster opened with
``rioxarray.open_rasterio`` is the sample ``io.load`` gives, and the DataArray comes back identical."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

import domainaug as da
from domainaug import data
from domainaug.io import load

xr = pytest.importorskip("xarray")
rioxarray = pytest.importorskip("rioxarray")


def assert_same(a: da.Sample, b: da.Sample) -> None:
    assert a.space.same_grid(b.space, tolerance=0) and a.space.crs == b.space.crs
    assert a.layer_names() == b.layer_names()
    for name in a.layer_names():
        la, lb = a.layer_info(name), b.layer_info(name)
        assert la.data.dtype == lb.data.dtype and torch.equal(la.data, lb.data), name
        assert (la.role, la.fill, la.channels) == (lb.role, lb.fill, lb.channels), name


@pytest.mark.parametrize("masked", [False, True])
def test_open_rasterio_gives_the_sample_load_gives(masked):
    path = data.path(data.RGBN)
    array = rioxarray.open_rasterio(path, mask_and_scale=masked)     # masked: float32 with NaN at nodata 0
    sample = da.Sample.from_xarray(array)
    assert_same(sample, load(path))
    assert sample.space.crs == "EPSG:32618" and sample.layer_info("image").fill == 0.0
    assert sample.meta["path"] == str(path) and sample.meta["layers"]["image"]["format"] == "xarray"


def test_to_xarray_gives_the_dataarray_back_identical():
    array = rioxarray.open_rasterio(data.path(data.RGBN)).load()
    back = da.Sample.from_xarray(array).to_xarray()
    xr.testing.assert_identical(back, array)                # values, dtype, coords, attrs, spatial_ref
    assert back.dtype == np.uint8 and back.rio.transform() == array.rio.transform()
    assert back.rio.crs == array.rio.crs and back.rio.nodata == 0
    masked = rioxarray.open_rasterio(data.path(data.RGBN), mask_and_scale=True).load()
    back = da.Sample.from_xarray(masked).to_xarray()
    assert back.dtype == np.float32 and np.isnan(back.rio.nodata)
    np.testing.assert_array_equal(back.values, masked.values)        # NaN where it was NaN
    assert back.rio.transform() == masked.rio.transform() and back.rio.crs == masked.rio.crs


def test_a_loaded_file_to_xarray_holds_what_open_rasterio_holds():
    path = data.path(data.RGBN)
    ours, theirs = load(path).to_xarray(), rioxarray.open_rasterio(path).load()
    xr.testing.assert_equal(ours, theirs)                   # values, dtype, dims and coordinates
    assert ours.dtype == theirs.dtype and ours.rio.transform() == theirs.rio.transform()
    assert ours.rio.crs == theirs.rio.crs and ours.rio.nodata == theirs.rio.nodata == 0
    named = da.remote_sensing.set_bands(load(path), ["B", "G", "R", "N"]).to_xarray()
    assert named.attrs["long_name"] == ("B", "G", "R", "N") and list(named.band.values) == [1, 2, 3, 4]
    assert da.Sample.from_xarray(named).layer_info("image").channels == ("B", "G", "R", "N")


def test_an_augmented_sample_round_trips_and_its_grid_is_rasterios():
    path = data.path(data.RGBN)
    sample = da.Sample.from_xarray(rioxarray.open_rasterio(path))
    pipeline = da.Compose([da.Flip(axes=(1,)), da.Crop(size=(60, 80), mode="random")])
    out = pipeline(sample, torch.Generator().manual_seed(3))
    array = out.to_xarray()
    assert array.shape == (4, 60, 80) and array.dtype == np.uint8
    assert_same(da.Sample.from_xarray(array), out)          # sample -> DataArray -> sample, exactly
    # the crop's grid is the window of the file it covers: coordinates and transform are rasterio's
    with rasterio.open(path) as src:
        row, col = src.index(float(array.x[0]), float(array.y[0]))
        window = Window(col, row, 80, 60)
        assert array.rio.transform() == src.window_transform(window)
        xs, ys = rasterio.transform.xy(src.window_transform(window), [0, 59], [0, 79])
        np.testing.assert_allclose([array.x[0], array.x[-1], array.y[0], array.y[-1]], [xs[0], xs[1], ys[0], ys[1]])
        # flipped columns: column j of the output is column (W - 1 - j) of the file, mirrored about the raster
        flipped = src.read(window=Window(src.width - col - 80, row, 80, 60))[:, :, ::-1]
    np.testing.assert_array_equal(array.values, flipped)


def test_band_names_from_the_coordinate_or_long_name_and_nodata_from_fill_value():
    values = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    values[:, 0, 0] = -9999
    base = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": ["red", "nir"], "y": [25.0, 15.0, 5.0],
                                                                    "x": [5.0, 15.0, 25.0, 35.0]})
    array = base.rio.write_crs("EPSG:32633").rio.write_nodata(-9999)
    sample = da.Sample.from_xarray(array)
    assert sample.layer_info("image").channels == ("red", "nir")
    np.testing.assert_allclose(sample.space.index_to_world(np.array([[0, 0], [2, 3]])), [[5, 25], [35, 5]])
    assert not bool(sample["valid"][0, 0, 0]) and int(sample["valid"].sum()) == 11
    assert sample.layer_info("image").fill == -9999.0
    back = sample.to_xarray()
    assert list(back.band.values) == ["red", "nir"] and back.rio.nodata == -9999 and back.dtype == np.int16
    np.testing.assert_array_equal(back.values, values)
    named = base.assign_coords(band=[1, 2]).rio.write_crs("EPSG:32633")
    named.attrs["long_name"] = ("B04", "B08")
    assert da.Sample.from_xarray(named).layer_info("image").channels == ("B04", "B08")
    assert da.Sample.from_xarray(named.drop_attrs()).layer_info("image").channels == ("band1", "band2")


def test_a_2d_dataarray_and_a_label():
    path = data.path(data.RGBN)
    red = rioxarray.open_rasterio(path).sel(band=3, drop=True)
    assert red.dims == ("y", "x")
    sample = da.Sample.from_xarray(red, label=(red > 100).astype(np.uint8))
    assert sample["image"].shape == (1, 212, 276) and sample["label"].dtype == torch.uint8
    back = sample.to_xarray()
    assert back.dims == ("y", "x")
    xr.testing.assert_identical(back, red.load())


def test_what_cannot_be_a_raster_sample_is_named():
    array = rioxarray.open_rasterio(data.path(data.RGBN))
    with pytest.raises(da.ParameterError, match=r"^da='xarray.Dataset' is invalid: .*DataArray"):
        da.Sample.from_xarray(array.to_dataset(name="rgbn"))
    with pytest.raises(da.ParameterError, match=r"at most one band dimension"):
        da.Sample.from_xarray(array.expand_dims(time=2))
    rotated = da.Sample.from_numpy(np.zeros((1, 4, 4), np.float32),
                                   affine=np.array([[0.6, 0.8, 0], [-0.8, 0.6, 0], [0, 0, 1.0]]), crs=32633)
    with pytest.raises(da.ParameterError, match=r"rows run along y and columns along x"):
        rotated.to_xarray()
    with pytest.raises(da.ParameterError, match=r"^layer='nope'"):
        da.Sample.from_xarray(array).to_xarray("nope")


def test_the_docs_snippet_runs(doc_blocks):
    code = doc_blocks("remote-sensing.md", "## xarray, objects and remote files")[0]
    exec(compile(code, "docs/remote-sensing.md (xarray)", "exec"), {})
