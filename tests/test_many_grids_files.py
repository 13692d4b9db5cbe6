"""Many grids from real files: a real T1 with a thick-slice copy of itself on its own grid, and
real Landsat bands split across two resolutions as per-band GeoTIFFs (issue "Many layers, many
grids, many dates", items 2 and 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import SimpleITK as sitk
import torch

from domainaug import Affine, Compose, Crop, Elastic, ResampleToMatch, replay
from domainaug import io as dio
from domainaug.core.kernels.resample import passes
from domainaug.errors import ParameterError, SampleError
from domainaug.remote_sensing import BandDropout, CloudShadow, SpectralJitter

FIXTURES = Path(__file__).resolve().parent.parent / "data_fixtures"
T1 = FIXTURES / "KmeansTest_T1UCharRaw.nii.gz"
SEG = FIXTURES / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"
L7 = FIXTURES / "L7_ETMs.tif"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def thick_flair(tmp_path) -> Path:
    """The real T1 resampled by SimpleITK to 6 mm slices on a lattice shifted by 1.3 mm: a
    'thick FLAIR' of the same head on a grid of its own."""
    image = sitk.ReadImage(str(T1), sitk.sitkFloat32)
    spacing = np.array(image.GetSpacing())
    size = np.array(image.GetSize())
    new_spacing = spacing * np.array([1.0, 1.0, 2.0])
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ np.array([1.3, -0.7, 1.1])
    out = sitk.Resample(image, [int(v) for v in np.ceil(size * spacing / new_spacing)], sitk.Transform(),
                        sitk.sitkLinear, origin.tolist(), new_spacing.tolist(), image.GetDirection(), 0.0,
                        sitk.sitkFloat32)
    path = tmp_path / "flair_6mm.nii.gz"
    sitk.WriteImage(out, str(path))
    return path


def correlation(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    x, y = a[mask].double(), b[mask].double()
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])


def test_real_t1_and_a_thick_copy_on_its_own_grid_stay_aligned_through_the_pipeline(thick_flair):
    sample = dio.load({"t1": T1, "flair": thick_flair, "label": SEG})
    assert list(sample.grids) == ["flair"] and sample.space_of("flair").shape[2] == 31
    pipeline = Compose([Affine(degrees=(-10, 10), scales=(0.9, 1.1)), Elastic(max_displacement=4.0),
                        Crop((96, 96, 48), mode="label"), ResampleToMatch("t1")])
    before = passes()
    out = pipeline(sample, gen(2))
    assert passes() - before == 1 and out.grids == {}
    brain = (out["label"][0] > 0)
    if out.valid_name:
        brain &= out[out.valid_name][0]
    assert int(brain.sum()) > 10000
    assert correlation(out["t1"][0], out["flair"][0], brain) > 0.9            # the same head, in register
    shifted = torch.roll(out["flair"][0], shifts=3, dims=0)                    # 6 mm off: clearly worse
    assert correlation(out["t1"][0], shifted, brain) < correlation(out["t1"][0], out["flair"][0], brain) - 0.1
    again = replay(sample, json.loads(json.dumps([r.to_dict() for r in out.history])))
    assert torch.equal(again["flair"], out["flair"]) and torch.equal(again["label"], out["label"])


def test_saving_a_layer_on_its_own_grid_writes_that_grid(thick_flair, tmp_path):
    sample = dio.load({"t1": T1, "flair": thick_flair})
    out = Compose([Affine(degrees=5.0), Crop((64, 64, 40))])(sample, gen(0))
    path = dio.save(out, tmp_path / "flair_aug.nii.gz", layer="flair")
    back = dio.load(path)
    assert back.space.same_grid(out.space_of("flair"), tolerance=1e-4)
    assert not back.space.same_grid(out.space, tolerance=1e-2)


@pytest.fixture
def landsat_band_files(tmp_path) -> list[Path]:
    """The real Landsat-7 fixture as per-band files: B1-B3 at 28.5 m, B4, B5, B7 averaged 2x2 to
    57 m (a product with bands at two resolutions, like Sentinel-2's 10 m and 20 m)."""
    with rasterio.open(L7) as src:
        data, profile, transform = src.read(), src.profile, src.transform
    paths = []
    for i, band in enumerate(["B1", "B2", "B3", "B4", "B5", "B7"]):
        arr = data[i].astype(np.float32)
        t = transform
        if band in ("B4", "B5", "B7"):
            h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
            arr = arr[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
            t = transform * rasterio.Affine.scale(2.0)
        p = dict(profile, count=1, dtype="float32", height=arr.shape[0], width=arr.shape[1], transform=t)
        p.pop("nodata", None)
        path = tmp_path / f"LE07_L2SP_214065_{band}.TIF"
        with rasterio.open(path, "w", **p) as dst:
            dst.write(arr, 1)
        paths.append(path)
    return paths


def test_band_files_on_two_grids_load_as_one_layer_per_grid(landsat_band_files):
    sample = dio.load(landsat_band_files)
    assert sample.layer_info("image").channels == ("B1", "B2", "B3")
    assert sample.layer_info("image_57").channels == ("B4", "B5", "B7")
    assert np.allclose(sample.space_of("image_57").spacing, 57.0) and np.allclose(sample.space.spacing, 28.5)
    assert sample.meta["band_groups"] == {"image": ["image", "image_57"]}
    with rasterio.open(landsat_band_files[3]) as src:                         # B4 as stored, on its own grid
        assert np.array_equal(sample["image_57"][0].numpy(), src.read(1))


def test_raster_ops_change_every_band_group_with_one_draw(landsat_band_files):
    sample = dio.load(landsat_band_files, sensor="landsat7")
    out = SpectralJitter(gain=(0.8, 1.2), bias=0.0)(sample, gen(4))
    params = out.history[-1].params
    assert "layers" not in params and sorted(params["gain"]) == ["B1", "B2", "B3", "B4", "B5", "B7"]
    for layer, bands in (("image", ("B1", "B2", "B3")), ("image_57", ("B4", "B5", "B7"))):
        for k, b in enumerate(bands):
            ratio = out[layer][k] / sample[layer][k].clamp(min=1e-6)
            assert torch.allclose(ratio[sample[layer][k] > 1], torch.tensor(params["gain"][b], dtype=ratio.dtype),
                                  rtol=1e-4), (layer, b)
    with pytest.raises(SampleError, match="CloudShadow"):
        CloudShadow()(sample, gen(0))
    with pytest.raises(ParameterError, match="B9"):                            # a band no target layer has
        SpectralJitter().run(sample, {"gain": {"B1": 1.1, "B9": 0.9}, "bias": {}})
    drop = BandDropout(bands=["B7"], max_bands=1)(sample, gen(0))               # a 57 m band of the group
    assert drop.history[-1].params["bands"] == ["B7"] and float(drop["image_57"][2].abs().max()) == 0.0
    assert torch.equal(drop["image"], sample["image"])


def test_band_files_fused_onto_the_fine_grid_and_written_back_georeferenced(landsat_band_files, tmp_path):
    sample = dio.load(landsat_band_files)
    out = Compose([Affine(degrees=(-30, 30)), Crop(128), ResampleToMatch("image")])(sample, gen(1))
    assert out.grids == {} and out["image_57"].shape == (3, 128, 128)
    path = dio.save(out, tmp_path / "b57_on_28m.tif", layer="image_57")
    with rasterio.open(path) as dst:
        assert dst.count == 3 and dst.crs.to_epsg() == 31985
        assert np.allclose(dst.transform.a, 28.5) and np.allclose(dst.transform.e, -28.5)
        corner = dst.transform * (0, 0)
    centre = out.space.index_to_world(np.zeros((1, 2)))[0]                      # the first pixel's centre
    assert np.allclose(np.array(corner) + [14.25, -14.25], centre, atol=1e-6)
