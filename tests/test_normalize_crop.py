"""NormalizeIntensity / RescaleIntensity, CropForeground / CropOrPad, MONAI-style patch sampling, and
label layers of several channels: references against MONAI and TorchIO on the shipped T1, and properties."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import data
from domainaug.errors import NoDataError, ParameterError
from domainaug.testing import make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


@pytest.fixture(scope="module")
def t1() -> da.Sample:
    return dio.load(data.path("KmeansTest_T1UCharRaw.nii.gz"),
                    label=data.path("KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))


# --- NormalizeIntensity / RescaleIntensity -----------------------------------------------------------
def test_zscore_is_mean_0_std_1_over_valid_voxels_and_leaves_invalid_ones():
    sample = make_raster()
    valid = sample["valid"][0]
    out = da.NormalizeIntensity()(sample, G())
    x = out["image"][:, valid].double()
    np.testing.assert_allclose(x.mean(1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(1, unbiased=False).numpy(), 1, atol=1e-5)
    assert torch.equal(out["image"][:, ~valid], sample["image"][:, ~valid])     # nodata stays nodata
    shifted = sample["image"].clone()
    shifted[1][valid] += 500                                # a band on another scale
    sample = sample.with_layers(image=replace(sample.layer_info("image"), data=shifted))
    pooled = da.NormalizeIntensity(channel_wise=False)(sample, G())["image"][:, valid].double()
    assert abs(float(pooled.mean())) < 1e-5 and abs(float(pooled.std(unbiased=False)) - 1) < 1e-5
    assert float(pooled.mean(1).abs().max()) > 0.5            # one mean for all bands: the bands differ


def test_zscore_matches_monai_and_torchio_on_the_shipped_t1(t1):
    monai = pytest.importorskip("monai.transforms")
    tio = pytest.importorskip("torchio")
    image = t1["image"]
    ours = da.NormalizeIntensity()(t1, G())["image"]
    torch.testing.assert_close(ours, torch.as_tensor(monai.NormalizeIntensity()(image.clone())).float(),
                               atol=1e-5, rtol=0)
    ref = tio.ZNormalization()(tio.ScalarImage(tensor=image.clone(), affine=np.eye(4))).data
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)      # TorchIO's std has ddof=1
    nonzero = da.NormalizeIntensity(nonzero=True)(t1, G())["image"]
    torch.testing.assert_close(nonzero, torch.as_tensor(monai.NormalizeIntensity(nonzero=True)(image.clone())).float(),
                               atol=1e-5, rtol=0)
    assert bool((nonzero[image == 0] == 0).all())
    # statistics inside a mask layer (any label > 0), every voxel normalised with them: TorchIO's masking_method
    masked = da.NormalizeIntensity(mask="label")(t1, G())["image"]
    subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)),
                          label=tio.LabelMap(tensor=t1["label"].clone(), affine=np.eye(4)))
    ref = tio.ZNormalization(masking_method="label")(subject)["image"].data
    torch.testing.assert_close(masked, ref, atol=1e-4, rtol=1e-4)
    inside = masked[t1["label"] > 0].double()
    assert abs(float(inside.mean())) < 1e-5 and abs(float(inside.std(unbiased=False)) - 1) < 1e-5


def test_zscore_with_fixed_values_and_a_two_channel_mask():
    sample = make_volume()
    out = da.NormalizeIntensity(subtrahend=200.0, divisor=50.0)(sample, G())["image"]
    torch.testing.assert_close(out, (sample["image"] - 200) / 50)
    lab = sample["label"]
    two = torch.cat([torch.zeros_like(lab), lab])          # the mask is in channel 1 only: it must still count
    masked = sample.with_layers(mask=da.Layer(two, da.Role.LABEL))
    out = da.NormalizeIntensity(mask="mask")(masked, G())["image"]
    inside = out[lab > 0].double()
    assert abs(float(inside.mean())) < 1e-5
    with pytest.raises(ParameterError, match="^subtrahend="):
        da.NormalizeIntensity(subtrahend=[1.0, 2.0])(sample, G())          # 2 values for 1 channel
    empty = sample.with_layers(mask=da.Layer(torch.zeros_like(lab), da.Role.LABEL))
    with pytest.raises(NoDataError, match="mask layer 'mask'"):
        da.NormalizeIntensity(mask="mask")(empty, G())
    with pytest.raises(ParameterError, match="^mask="):
        da.NormalizeIntensity(mask="brain")(sample, G())


def test_rescale_matches_monai_and_torchio_percentiles_on_the_shipped_t1(t1):
    monai = pytest.importorskip("monai.transforms")
    tio = pytest.importorskip("torchio")
    image = t1["image"]
    ours = da.RescaleIntensity(out=(0, 1), percentiles=(0.5, 99.5))(t1, G())["image"]
    ref = monai.ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(image.clone())
    torch.testing.assert_close(ours, torch.as_tensor(ref).float(), atol=1e-5, rtol=0)
    ref = tio.RescaleIntensity(out_min_max=(0, 1), percentiles=(0.5, 99.5))(
        tio.ScalarImage(tensor=image.clone(), affine=np.eye(4))).data
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    window = da.RescaleIntensity(out=(-1, 1), in_range=(20, 120), clip=False)(t1, G())["image"]
    ref = monai.ScaleIntensityRange(20, 120, -1.0, 1.0, clip=False)(image.clone())
    torch.testing.assert_close(window, torch.as_tensor(ref).float(), atol=1e-5, rtol=0)
    assert float(window.max()) > 1                            # not clipped when asked not to


def test_rescale_of_nodata_raster_keeps_nodata_and_reaches_the_range():
    sample = make_raster()
    valid = sample["valid"][0]
    out = da.RescaleIntensity(out=(-1, 1))(sample, G())["image"]
    np.testing.assert_allclose(out[:, valid].amin(1).numpy(), -1, atol=1e-6)
    np.testing.assert_allclose(out[:, valid].amax(1).numpy(), 1, atol=1e-6)
    assert torch.equal(out[:, ~valid], sample["image"][:, ~valid])


def test_normalize_and_rescale_are_kept_by_inference():
    pipeline = da.Compose([da.Affine(degrees=(-10, 10)), da.NormalizeIntensity(), da.RescaleIntensity(),
                           da.Gamma()])
    kept = pipeline.inference()
    assert [type(t).__name__ for t in kept.transforms] == ["NormalizeIntensity", "RescaleIntensity"]
