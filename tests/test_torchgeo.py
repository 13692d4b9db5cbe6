"""``TorchGeoTransform`` on sample dicts built exactly as TorchGeo's ``RasterDataset.__getitem__``
builds them (``rasterio.merge.merge`` of the query's bounds at the dataset's resolution): the
returned bounds and transform still place every pixel where rasterio says its content is.

TorchGeo itself cannot be installed beside this CPU torch (its torchvision wheels are CUDA builds),
so the formats come from its source: 0.10 (and 0.8/0.9) ``{"image", "bounds": 9-tensor,
"transform": 9-tensor, "crs": pyproj CRS}``, 0.7 ``{"image", "bounds": BoundingBox, "crs"}``. The
test with the real ``RasterDataset`` and ``RandomGeoSampler`` at the end skips without TorchGeo."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.merge
import torch
from rasterio.transform import from_origin

import domainaug as da
from domainaug import data
from domainaug.training.torchgeo import TorchGeoTransform

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data_real"
LANDSAT = SHARED / "remote_sensing" / "stars_landsat7_olinda" / "L7_ETMs.tif"
RGBN_BANDS = ("blue", "green", "red", "nir")
TMIN, TMAX = datetime(2000, 1, 1).timestamp(), datetime(2030, 1, 1).timestamp()


@dataclasses.dataclass(frozen=True)
class BoundingBox:
    """TorchGeo 0.7's ``torchgeo.datasets.utils.BoundingBox`` fields (the adapter reads attributes)."""

    minx: float
    maxx: float
    miny: float
    maxy: float
    mint: float
    maxt: float


def _crs(src: rasterio.DatasetReader) -> object:
    try:
        import pyproj  # TorchGeo 0.7+ keeps its index CRS as pyproj's
        return pyproj.CRS.from_user_input(src.crs)
    except ImportError:
        return src.crs


def torchgeo_sample(path: Path, row: int, col: int, height: int, width: int, version: str = "0.10") -> dict:
    """The dict ``RasterDataset.__getitem__`` returns for a query of ``height x width`` pixels at
    (row, col) of the file, at the file's resolution (``RandomGeoSampler`` queries are such boxes)."""
    with rasterio.open(path) as src:
        xres, yres = src.res
        xmin, ymax = src.transform * (col, row)
        xmax, ymin = xmin + width * xres, ymax - height * yres
        dest, _ = rasterio.merge.merge([src], bounds=(xmin, ymin, xmax, ymax), res=(xres, yres),
                                       resampling=rasterio.enums.Resampling.bilinear)
        crs = _crs(src)
    image = torch.from_numpy(dest).to(torch.float32)                    # RasterDataset.dtype for images
    if version == "0.7":
        return {"crs": crs, "bounds": BoundingBox(xmin, xmax, ymin, ymax, TMIN, TMAX), "image": image}
    bounds = torch.tensor([xmin, xmax, xres, ymin, ymax, yres, TMIN, TMAX, 1])   # GeoDataset._slice_to_tensor
    sample = {"bounds": bounds, "transform": torch.tensor(from_origin(xmin, ymax, xres, yres)), "image": image}
    if version == "0.10":
        sample["crs"] = crs
    return sample


def returned_transform(out: dict) -> rasterio.Affine:
    if "transform" in out:
        return rasterio.Affine(*out["transform"].double().tolist()[:6])
    b = out["bounds"]
    h, w = out["image"].shape[-2:]
    return from_origin(b.minx, b.maxy, (b.maxx - b.minx) / w, (b.maxy - b.miny) / h)


def assert_pixels_are_where_rasterio_says(out: dict, path: Path | tuple[np.ndarray, rasterio.Affine], *,
                                          flip_cols_of: tuple[int, int] | None = None, atol: float = 0.25) -> None:
    """Each output pixel centre's world coordinate, computed from the returned georeference, is
    where rasterio finds the same content in the file (or in ``(array, transform)``, a raster
    TorchGeo read); ``flip_cols_of=(col0, width)``: the content of the query window mirrored
    left-right, as ``Flip`` moves it."""
    transform = returned_transform(out)
    image = out["image"].cpu().numpy()
    h, w = image.shape[-2:]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    xs, ys = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    if isinstance(path, tuple):
        file, file_transform = path
    else:
        with rasterio.open(path) as src:
            file, file_transform = src.read().astype(np.float32), src.transform
    r, c = rasterio.transform.rowcol(file_transform, xs, ys)
    r, c = np.asarray(r).reshape(h, w), np.asarray(c).reshape(h, w)
    back_x, back_y = rasterio.transform.xy(file_transform, r.ravel(), c.ravel())
    # the returned grid lies on the file's pixel grid (float32 bounds, as TorchGeo's: within atol CRS units)
    np.testing.assert_allclose(back_x, xs, atol=atol)
    np.testing.assert_allclose(back_y, ys, atol=atol)
    if flip_cols_of is not None:
        col0, width = flip_cols_of
        c = 2 * col0 + width - 1 - c
    np.testing.assert_array_equal(image, file[:, r, c])


def test_a_crop_moves_bounds_and_transform_with_the_pixels():
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 20, 30, 100, 120)
    assert_pixels_are_where_rasterio_says(sample, path)               # the dict is TorchGeo's, georeferenced
    adapter = TorchGeoTransform(da.Crop(size=(40, 50), mode="random"), bands=RGBN_BANDS, nodata=0)
    out = adapter(sample, torch.Generator().manual_seed(1))
    assert out["image"].shape == (4, 40, 50) and out["image"].dtype == torch.float32
    assert out["crs"] is sample["crs"] and out["bounds"].dtype == sample["bounds"].dtype
    assert_pixels_are_where_rasterio_says(out, path)
    b, t = out["bounds"].double(), out["transform"].double()
    assert not torch.equal(b[:6], sample["bounds"][:6].double())     # it did move
    # the bounds say what the transform says: [xmin, xmax, xres, ymin, ymax, yres, t...]
    np.testing.assert_allclose(b[:6], [t[2], t[2] + 50 * t[0], t[0], t[5] + 40 * t[4], t[5], -t[4]], atol=0.25)
    assert torch.equal(b[6:], sample["bounds"][6:]) and t[6:].tolist() == [0.0, 0.0, 1.0]
    assert json.loads(out["domainaug_records"])[0]["transform"] == "Crop"


def test_a_flip_and_crop_keep_the_world_of_the_content():
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 20, 30, 100, 120)
    adapter = TorchGeoTransform(da.Compose([da.Flip(axes=(1,)), da.Crop(size=(64, 64), mode="random")]))
    out = adapter(sample, torch.Generator().manual_seed(5))
    # Flip is a warp (the grid stays, content mirrors about the query's centre); Crop a regrid
    assert_pixels_are_where_rasterio_says(out, path, flip_cols_of=(30, 120))


@pytest.mark.parametrize("version", ["0.10", "0.8", "0.7"])
def test_every_torchgeo_format_gives_the_pipeline_the_file_window(version):
    """A rotation and a crop on a TorchGeo dict equal the same pipeline and seed on the window
    ``io.load``/``tiles`` read from the file: same grid, same values."""
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 8, 10, 96, 96, version)
    pipeline = da.Compose([da.Affine(degrees=(-30, 30)), da.Crop(size=(48, 48), mode="random")])
    adapter = TorchGeoTransform(pipeline, bands=RGBN_BANDS, nodata=0, res=5.0 if version == "0.7" else None)
    as_sample = adapter.to_sample(sample)
    with rasterio.open(path) as src:                                    # the window io.load/tiles would read
        window = rasterio.windows.Window(10, 8, 96, 96)
        values = torch.from_numpy(src.read(window=window).astype(np.float32))
        grid = da.io.geotiff.to_space_affine(src.window_transform(window))
    assert torch.equal(as_sample["image"], values)
    np.testing.assert_allclose(as_sample.space.affine, grid, atol=0.25)     # float32 bounds, as TorchGeo's
    assert as_sample.layer_info("image").channels == RGBN_BANDS
    assert as_sample.space.crs == ("EPSG:32618" if version != "0.8" else None)
    out = adapter(sample, torch.Generator().manual_seed(2))
    seed = int(torch.randint(0, 2**62, (), generator=torch.Generator().manual_seed(2)).item())
    expected = pipeline(as_sample, da.training.generator_for(seed))
    assert torch.equal(out["image"], expected["image"])
    np.testing.assert_allclose(returned_transform(out), da.io.geotiff.to_geotransform(expected.space.affine),
                               atol=0.25)
    # the returned georeference lies on the file's pixel grid
    assert_pixels_are_where_rasterio_says({**out, "image": torch.from_numpy(_file_values(path, out))}, path)
    if version == "0.7":
        assert isinstance(out["bounds"], BoundingBox) and (out["bounds"].mint, out["bounds"].maxt) == (TMIN, TMAX)
        assert out["bounds"].maxx - out["bounds"].minx == pytest.approx(48 * 5.0)
    else:
        assert out["bounds"].shape == (9,) and ("crs" in out) == (version == "0.10")


def _file_values(path: Path, out: dict) -> np.ndarray:
    """The file's pixels under the returned grid (what an unaugmented crop would hold)."""
    transform = returned_transform(out)
    with rasterio.open(path) as src:
        col, row = ~src.transform * (transform.c + transform.a / 2, transform.f + transform.e / 2)
        h, w = out["image"].shape[-2:]
        return src.read(window=rasterio.windows.Window(int(col), int(row), w, h)).astype(np.float32)


def test_nodata_is_honoured():
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 0, 0, 64, 64)                    # the raster's left columns are nodata 0
    invalid = (sample["image"] == 0).any(0)
    assert bool(invalid.any()) and bool((~invalid).any())
    adapter = TorchGeoTransform(da.BrightnessContrast(brightness=0.3, contrast=0.0), nodata=0)
    out = adapter(sample, torch.Generator().manual_seed(0))
    assert torch.equal(out["image"][:, invalid], sample["image"][:, invalid])     # nodata kept as it is
    assert not torch.equal(out["image"][:, ~invalid], sample["image"][:, ~invalid])
    # pixels a rotation brings in from outside hold the nodata value, never a new number
    rotated = TorchGeoTransform(da.Affine(degrees=40), nodata=0)(torchgeo_sample(path, 40, 60, 64, 64),
                                                                   torch.Generator().manual_seed(0))
    assert bool((rotated["image"] == 0).all(0)[0, 0])


def test_a_mask_moves_with_the_image_and_keeps_its_values_and_dtype():
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 20, 30, 64, 64)
    sample["mask"] = (sample["image"][3] > sample["image"][2]).long() * 3     # TorchGeo's [H, W] long mask
    adapter = TorchGeoTransform(da.Compose([da.Affine(degrees=(-20, 20), scales=(0.9, 1.1)), da.Flip(axes=(0,))]))
    out = adapter(sample, torch.Generator().manual_seed(4))
    assert out["mask"].shape == (64, 64) and out["mask"].dtype == torch.long
    assert set(out["mask"].unique().tolist()) <= {0, 3}
    assert not torch.equal(out["mask"], sample["mask"])


def test_a_batch_in_on_after_batch_transfer():
    path = data.path(data.RGBN)
    samples = [torchgeo_sample(path, r, c, 64, 64) for r, c in ((0, 10), (50, 100), (120, 200))]
    batch = {"image": torch.stack([s["image"] for s in samples]), "bounds": torch.stack([s["bounds"] for s in samples]),
             "transform": torch.stack([s["transform"] for s in samples]), "crs": [s["crs"] for s in samples]}
    adapter = TorchGeoTransform(da.Compose([da.Flip(axes=(1,)), da.Crop(size=(32, 32), mode="random")]), nodata=0)
    out = adapter(batch, torch.Generator().manual_seed(0))
    assert out["image"].shape == (3, 4, 32, 32) and out["bounds"].shape == (3, 9) and out["transform"].shape == (3, 9)
    assert out["crs"] == batch["crs"] and len(out["domainaug_records"]) == 3
    for i, (_, c) in enumerate(((0, 10), (50, 100), (120, 200))):
        element = {"image": out["image"][i], "bounds": out["bounds"][i], "transform": out["transform"][i]}
        assert_pixels_are_where_rasterio_says(element, path, flip_cols_of=(c, 64))
    first = [json.loads(r)[0]["params"] for r in out["domainaug_records"]]
    assert len({json.dumps(p) for p in first}) > 1                # each element has its own draw


def test_a_time_series_moves_every_date_with_one_draw():
    """TorchGeo 0.9+ ``time_series=True``: ``image`` ``[T, C, H, W]`` of one place; every date gets the
    same crop and flip (layers ``image_t<k>`` of one Sample)."""
    path = data.path(data.RGBN)
    first = torchgeo_sample(path, 20, 30, 64, 64)
    series = dict(first, image=torch.stack([first["image"], first["image"] * 0.5, first["image"] + 1.0]))
    adapter = TorchGeoTransform(da.Compose([da.Flip(axes=(1,)), da.Crop(size=(32, 32), mode="random")]))
    assert adapter.to_sample(series).layer_names() == ["image_t0", "image_t1", "image_t2"]
    out = adapter(series, torch.Generator().manual_seed(3))
    assert out["image"].shape == (3, 4, 32, 32) and out["bounds"].shape == (9,)
    torch.testing.assert_close(out["image"][1], out["image"][0] * 0.5)
    torch.testing.assert_close(out["image"][2], out["image"][0] + 1.0)
    assert_pixels_are_where_rasterio_says({**out, "image": out["image"][0]}, path, flip_cols_of=(30, 64))


@pytest.mark.skipif(not LANDSAT.is_file(), reason="../shared/data_real is absent")
def test_a_landsat_scene_from_shared_data():
    sample = torchgeo_sample(LANDSAT, 100, 80, 128, 128)
    adapter = TorchGeoTransform(da.Compose([da.Flip(axes=(1,)), da.Crop(size=(64, 64), mode="random")]),
                                bands=("B1", "B2", "B3", "B4", "B5", "B7"))
    for seed in range(3):
        out = adapter(sample, torch.Generator().manual_seed(seed))
        assert_pixels_are_where_rasterio_says(out, LANDSAT, flip_cols_of=(80, 128), atol=1.0)


def test_what_torchgeo_bounds_cannot_say_is_refused():
    path = data.path(data.RGBN)
    sample = torchgeo_sample(path, 20, 30, 40, 60)
    # a quarter turn of a 40 x 60 patch: a 60 x 40 north-up grid, its footprint turned about its centre
    turned = TorchGeoTransform(da.Rot90(k=1))(sample)
    assert turned["image"].shape == (4, 60, 40)
    b0, b1 = sample["bounds"].double(), turned["bounds"].double()
    np.testing.assert_allclose([(b1[0] + b1[1]) / 2, (b1[3] + b1[4]) / 2], [(b0[0] + b0[1]) / 2, (b0[3] + b0[4]) / 2])
    np.testing.assert_allclose([b1[1] - b1[0], b1[4] - b1[3]], [40 * 5.0, 60 * 5.0])
    assert any(np.array_equal(np.rot90(sample["image"].numpy(), k, axes=(1, 2)), turned["image"].numpy())
               for k in (1, -1))                                     # exact: pixels permuted, never interpolated
    # a rotated grid (a transform with shear terms) has no TorchGeo bounds: named, not written wrong
    rotated = dict(sample, transform=torch.tensor([4.0, 3.0, 792928.0, 3.0, -4.0, 2050112.0, 0.0, 0.0, 1.0]))
    with pytest.raises(da.SpaceMismatchError, match="not north-up"):
        TorchGeoTransform(da.Flip(axes=(0,)))(rotated)
    with pytest.raises(da.ParameterError, match=r"^bands=\['a', 'b'\] is invalid: expected 4 band names"):
        TorchGeoTransform(da.Flip(axes=(0,)), bands=("a", "b"))(sample)
    with pytest.raises(da.ParameterError, match="'bounds' or 'transform'"):
        TorchGeoTransform(da.Flip(axes=(0,)))({"image": sample["image"]})
    assert TorchGeoTransform(da.Flip(axes=(0,)), nodata=np.float32(0), res=np.float64(5)).nodata == 0.0
    with pytest.raises(da.ParameterError, match="^nodata="):
        TorchGeoTransform(da.Flip(axes=(0,)), nodata="0")          # type: ignore[arg-type]
    with pytest.raises(da.ParameterError, match="^pipeline="):
        TorchGeoTransform(lambda s: s)                            # type: ignore[arg-type]


def test_with_the_real_raster_dataset_and_random_geo_sampler(tmp_path):
    pytest.importorskip("torchgeo")
    from torchgeo.datasets import RasterDataset
    from torchgeo.samplers import RandomGeoSampler

    shutil.copy(data.path(data.RGBN), tmp_path / data.RGBN)

    class RGBN(RasterDataset):
        filename_glob = "rgbn_*.tif"
        all_bands = RGBN_BANDS

    dataset = RGBN(paths=[str(tmp_path)])
    pipeline = da.Compose([da.Flip(axes=(1,)), da.Crop(size=(32, 32), mode="random")])
    adapter = TorchGeoTransform.for_dataset(pipeline, dataset)
    assert adapter.bands == RGBN_BANDS and adapter.nodata == 0.0
    for k, query in enumerate(RandomGeoSampler(dataset, size=64, length=4)):
        before = dataset[query]                   # what TorchGeo read (queries need not be pixel-aligned)
        out = adapter(before, torch.Generator().manual_seed(k))
        assert out["image"].shape == (4, 32, 32)
        reference = (before["image"].numpy(), returned_transform(before))
        assert_pixels_are_where_rasterio_says(out, reference, flip_cols_of=(0, 64))
    dataset.transforms = adapter                  # and as the dataset's transforms
    sample = dataset[next(iter(RandomGeoSampler(dataset, size=64, length=1)))]
    assert sample["image"].shape == (4, 32, 32) and "domainaug_records" in sample


def test_the_docs_snippet_runs(doc_blocks):
    exec(compile(doc_blocks("training.md", "## TorchGeo")[0], "docs/training.md (TorchGeo)", "exec"), {})
