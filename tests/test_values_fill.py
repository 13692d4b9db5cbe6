"""Values and fill policies (issue "Honest values and metadata", parts 1 and 2): compute in float,
keep the on-disk type for files; fill outside the field of view with the layer's minimum."""

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import medical as md
from domainaug.testing import make_volume

T1 = "KmeansTest_T1UCharRaw.nii.gz"
SEG = "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"


def G(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def t1(fixtures):
    return dio.load(fixtures / T1)


# --- 1. values -------------------------------------------------------------------------------
def test_bias_field_on_an_integer_t1_is_float_and_not_clipped(t1):
    """Seen: BiasField(0.3) on a uint8 T1 returned uint8 with 22k voxels stuck at 255."""
    u8 = da.Sample.from_numpy(t1["image"].numpy().astype(np.uint8), affine=t1.space.affine)
    out = md.BiasField(coefficients=0.3)(u8, G(1))
    assert u8["image"].dtype == out["image"].dtype == torch.float32
    top = float(u8["image"].max())
    assert int((out["image"] == top).sum()) <= int((u8["image"] == top).sum())   # nothing piles up at the top
    assert float(out["image"].max()) != top                                      # values go past 255


def test_small_noise_on_uint8_changes_every_voxel_a_little(t1):
    """Seen: GaussianNoise(0.005) on uint8 changed 2.6% of voxels (rounding erased the rest)."""
    u8 = da.Sample.from_numpy(t1["image"].numpy().astype(np.uint8), affine=t1.space.affine)
    out = da.GaussianNoise(0.005)(u8, G(2))
    delta = (out["image"] - u8["image"]).abs()
    assert out["image"].dtype == torch.float32
    assert float((delta > 0).double().mean()) > 0.99
    assert float(delta.max()) < 0.05 * float(u8["image"].std()) * 5


def test_brain_preset_returns_float32(fixtures):
    """Seen: the brain-mri preset returned int16 batches."""
    s = dio.load(fixtures / T1, label=fixtures / SEG)
    out = md.preset("brain-mri")(s, G(3))
    assert out["image"].dtype == torch.float32 and out["label"].dtype == s["label"].dtype


def test_from_numpy_makes_integer_images_float32_and_dtype_picks_another_float():
    image = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    assert da.Sample.from_numpy(image)["image"].dtype == torch.float32
    assert da.Sample.from_numpy(image.astype(np.float64))["image"].dtype == torch.float64
    assert da.Sample.from_numpy(image, dtype="float64")["image"].dtype == torch.float64
    with pytest.raises(da.ParameterError, match="^dtype="):
        da.Sample.from_numpy(image, dtype="int16")


def test_integer_intensity_layers_become_float32_but_labels_stay_integer():
    layer = da.Layer(torch.arange(8, dtype=torch.int16).view(1, 2, 4))
    assert layer.data.dtype == torch.float32
    assert da.Layer(torch.zeros(1, 2, 4, dtype=torch.int16), da.Role.LABEL).data.dtype == torch.int16


@pytest.mark.parametrize("op", [da.BrightnessContrast(brightness=0.0, contrast=3.0), da.GaussianNoise(10.0),
                                md.BiasField(coefficients=2.0), da.Gamma(0.2)])
def test_float16_layers_never_become_inf(op):
    rng = np.random.default_rng(0)
    image = (60000 + rng.normal(0, 3000, (1, 12, 12, 8))).clip(0, 65504).astype(np.float16)
    s = da.Sample.from_numpy(image)
    out = op(s, G(4))["image"]
    assert out.dtype == torch.float16 and bool(torch.isfinite(out).all())


# --- 2. fill ---------------------------------------------------------------------------------
def ct_phantom():
    hu = np.full((64, 64, 8), -1024, np.int16)
    yy, xx = np.mgrid[0:64, 0:64]
    hu[(yy - 32) ** 2 + (xx - 32) ** 2 < 31 ** 2] = 40                   # soft tissue
    hu[(yy - 32) ** 2 + (xx - 32) ** 2 < 5 ** 2] = 1200                  # bone
    hu[:, :, :] = np.where(np.abs(yy - 32)[..., None] > 29, -1024, hu)   # air above and below
    hu[:3] = 40                                                          # tissue at the table side
    return hu


def test_rotated_ct_corners_are_air_not_water():
    """Seen: a 20 degree rotation of a chest CT filled the corners with 0 HU; after the CT window they
    were a grey frame."""
    s = da.Sample.from_numpy(ct_phantom(), spacing=(0.8, 0.8, 2.5))
    assert s.layer_info("image").fill == -1024.0
    out = da.Affine(degrees=(0.0, 0.0, 20.0))(s, G())
    assert float(out["image"].min()) >= -1024.0 and float(out["image"][:, :2, :2].max()) == -1024.0
    windowed = md.CTWindow("abdomen")(out, G())["image"]
    assert float(windowed[:, :2, :2].max()) == 0.0                       # black, as air is


def test_fill_can_be_a_number_minimum_or_mean():
    image = np.array([[1.0, 3.0], [5.0, 7.0]], np.float32)
    assert da.Sample.from_numpy(image).layer_info("image").fill == 1.0
    assert da.Sample.from_numpy(image, fill="mean").layer_info("image").fill == 4.0
    assert da.Sample.from_numpy(image, fill=-5).layer_info("image").fill == -5.0
    valid = np.array([[False, True], [True, True]])
    assert da.Sample.from_numpy(image, valid=valid).layer_info("image").fill == 3.0   # over valid voxels
    with pytest.raises(da.ParameterError, match="^fill="):
        da.Sample.from_numpy(image, fill="median")


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_infinite_fill_is_refused_naming_fill(fill):
    """Seen: a NaN fill passed to from_numpy leaked NaN into valid voxels after Affine, Elastic,
    GaussianBlur, Spike."""
    with pytest.raises(da.ParameterError, match="^fill=") as err:
        da.Sample.from_numpy(np.ones((8, 8, 8), np.float32), fill=fill)
    assert "float32" in str(err.value)


def test_a_fill_the_dtype_cannot_hold_is_a_parameter_error():
    """Seen: uint8 with fill -9999 raised a raw RuntimeError."""
    s = da.Sample.from_numpy(np.ones((8, 8), np.uint8), fill=-9999)    # float32 in memory holds it
    assert s.layer_info("image").fill == -9999.0
    with pytest.raises(da.ParameterError, match="^fill=.*float16"):
        da.Sample.from_numpy(np.ones((8, 8), np.float16), fill=-1e6)
    with pytest.raises(da.ParameterError, match="^fill=.*uint8"):
        da.Layer(torch.zeros(1, 4, 4, dtype=torch.uint8), da.Role.LABEL, fill=-9999)
    with pytest.raises(da.ParameterError, match="^fill=.*uint8"):
        da.Layer(torch.zeros(1, 4, 4, dtype=torch.uint8), da.Role.LABEL, fill=1.5)


@pytest.mark.parametrize("op", [da.Affine(degrees=30.0), da.Elastic(spacing=6.0, max_displacement=4.0),
                                da.GaussianBlur(2.0), md.Spike(intensity=0.5)])
def test_with_a_valid_layer_no_nan_reaches_a_valid_voxel(op):
    s = make_volume(shape=(20, 18, 16), with_valid=True)
    for seed in range(3):
        out = op(s, G(seed))
        valid = out["valid"][0] if out.valid_name else torch.ones(out.space.shape, dtype=torch.bool)
        assert bool(torch.isfinite(out["image"][:, valid]).all())


def test_a_regrid_past_the_voxel_limit_is_a_named_error(monkeypatch):
    """Found by the fuzz: Resample to 1.3e-5 of a grid with a 1e-5 axis and 0.5 mm axes asked for
    1.5e9 voxels (a 5.9 GB allocation) instead of naming the mistake."""
    s = da.Sample.from_numpy(np.ones((1, 1, 1), np.uint8), spacing=[0.5, 1e-5, 0.5])
    with pytest.raises(da.ShapeError, match="DOMAINAUG_MAX_VOXELS"):
        da.Resample(1.3e-5)(s, G())
    monkeypatch.setenv("DOMAINAUG_MAX_VOXELS", "100")
    with pytest.raises(da.ShapeError, match="over the limit of 100"):
        da.Pad((5, 5, 5))(da.Sample.from_numpy(np.ones((2, 2, 2), np.float32)), G())


def test_from_numpy_takes_a_crs_as_code_string_wkt_or_rasterio_crs():
    from rasterio.crs import CRS

    from domainaug.core.space import crs_equal
    image = np.ones((2, 4, 4), np.float32)
    for crs in (32633, "EPSG:32633", "epsg:32633", CRS.from_epsg(32633)):
        assert da.Sample.from_numpy(image, spacing=(10.0, 10.0), crs=crs).space.crs == "EPSG:32633"
    esri = CRS.from_epsg(32633).to_wkt(version="WKT1_ESRI")                 # no EPSG code at its root
    kept = da.Sample.from_numpy(image, spacing=(10.0, 10.0), crs=esri).space.crs
    assert kept == esri and crs_equal(kept, "EPSG:32633")                     # kept whole, equal by PROJ
    with pytest.raises(da.ParameterError, match="^crs="):
        da.Sample.from_numpy(image, spacing=(10.0, 10.0), crs=object())
