"""Patch-based inference: patch grid, blending, georeference and validity, against MONAI."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.errors import ParameterError, ShapeError
from domainaug.inference import blend_weights, patch_grid, sliding_window_inference
from domainaug.testing import make_raster, make_volume


def identity(batch):
    return batch.clone()


def mean_conv(channels_out=2):
    """A fixed 3x3x3 mean filter (and twice it), zero-padded: what a small network does at patch borders."""
    conv = torch.nn.Conv3d(1, channels_out, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(1 / 27)
        conv.weight[1:] *= 2
        conv.bias.zero_()
    return conv


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_identity_predictor_returns_the_input_exactly(blend):
    sample = make_volume(shape=(30, 41, 27))
    out = sliding_window_inference(sample, identity, (16, 20, 12), overlap=0.5, blend=blend, batch_size=3)
    assert torch.equal(out["prediction"], sample["image"])
    assert out.space == sample.space and set(sample.layer_names()) < set(out.layer_names())
    # smaller than the patch along two axes: padded, and the padding cut off again
    small = torch.rand(2, 9, 30, 7)
    assert torch.equal(sliding_window_inference(small, identity, (16, 16, 16), blend=blend), small)
    raster = torch.rand(3, 50, 37)
    assert torch.equal(sliding_window_inference(raster, identity, (16, 16), overlap=0.3, blend=blend), raster)


def test_input_is_never_written_and_batches_are_bounded():
    image = torch.rand(1, 40, 40, 40)
    before = image.clone()
    seen = []

    def model(batch):
        seen.append(tuple(batch.shape))
        return batch.mul_(2)             # a model that writes into its input: only its batch copy changes

    out = sliding_window_inference(image, model, 24, overlap=0.25, batch_size=3, blend="constant")
    assert torch.equal(image, before)
    torch.testing.assert_close(out, 2 * image)
    starts = patch_grid((40, 40, 40), (24, 24, 24), 0.25)
    assert len(starts) == 8 and [s[0] for s in seen] == [3, 3, 2]
    assert all(s[1:] == (1, 24, 24, 24) for s in seen)


def test_patch_positions_and_weights_are_monais():
    monai_utils = pytest.importorskip("monai.data.utils")
    from monai.inferers.utils import _get_scan_interval
    for shape, patch, overlap in [((160, 192, 160), (96, 96, 96), 0.25), ((50, 70, 41), (32, 48, 24), 0.4),
                                  ((64, 33), (64, 16), 0.0), ((100, 101), (30, 30), 0.9)]:
        interval = _get_scan_interval(shape, patch, len(shape), [overlap] * len(shape))
        theirs = [tuple(s.start for s in sl) for sl in monai_utils.dense_patch_slices(shape, patch, interval)]
        assert patch_grid(shape, patch, overlap) == theirs
    for patch, scale in [((96, 96, 96), 0.125), ((32, 48, 24), 0.2), ((17, 30), 0.3)]:
        ref = monai_utils.compute_importance_map(patch, mode="gaussian", sigma_scale=scale)
        torch.testing.assert_close(blend_weights(patch, "gaussian", scale, dtype=torch.float32), ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("shape,patch,overlap", [((50, 70, 41), (32, 48, 24), 0.4), ((20, 30, 16), (32, 24, 24), 0.25),
                                                 ((64, 64, 64), (32, 32, 32), 0.0)])
def test_a_small_conv_model_gives_monais_output(blend, shape, patch, overlap):
    inferers = pytest.importorskip("monai.inferers")
    conv = mean_conv()
    image = torch.rand((1, 1) + shape, generator=torch.Generator().manual_seed(0))
    ours = sliding_window_inference(image[0], conv, patch, overlap=overlap, blend=blend, sigma_scale=0.2,
                                    batch_size=3)
    with torch.no_grad():
        ref = inferers.sliding_window_inference(image, patch, 3, conv, overlap=overlap, mode=blend, sigma_scale=0.2)
    assert ours.shape == (2,) + shape
    torch.testing.assert_close(ours, ref[0], rtol=0, atol=1e-5)


def test_raster_keeps_transform_crs_and_nodata():
    sample = make_raster(shape=(70, 53))
    out = sliding_window_inference(sample, identity, 32, overlap=0.25, name="pred", fill=-1.0)
    assert out.space == sample.space and out.space.crs == sample.space.crs
    np.testing.assert_array_equal(out.space.affine, sample.space.affine)
    valid = sample["valid"][0]
    pred = out["pred"]
    assert torch.equal(pred[:, valid], sample["image"][:, valid])
    assert (pred[:, ~valid] == -1.0).all() and torch.equal(out["valid"], sample["valid"])
    assert out.layer_info("pred").role is da.Role.INTENSITY and pred.dtype == torch.float32


def test_patch_size_in_world_units_on_anisotropic_voxels():
    sample = make_volume(shape=(30, 30, 30), spacing=(1.0, 1.5, 2.0))
    seen = []

    def model(batch):
        seen.append(tuple(batch.shape[2:]))
        return batch.clone()

    out = sliding_window_inference(sample, model, 24.0, units="world", overlap=0.5)
    assert set(seen) == {(24, 16, 12)}
    assert torch.equal(out["prediction"], sample["image"])


def test_batched_tensor_is_each_element_alone():
    conv = mean_conv(1)
    x = torch.rand(3, 1, 30, 20, 25)
    both = sliding_window_inference(x, conv, (16, 16, 16), batch_size=2)
    one = sliding_window_inference(x[1], conv, (16, 16, 16))
    assert both.shape == (3, 1, 30, 20, 25)
    torch.testing.assert_close(both[1], one, rtol=0, atol=1e-6)     # a conv's sums differ by batch size
    arr = sliding_window_inference(x[0].numpy(), conv, (16, 16, 16))
    assert isinstance(arr, np.ndarray)


def test_bad_calls_are_named():
    sample = make_volume()
    with pytest.raises(ShapeError, match=r"predict returned \(1, 1, 4, 4, 4\)"):
        sliding_window_inference(sample, lambda b: b[:, :, :4, :4, :4], 8)
    with pytest.raises(ParameterError, match="labels cannot be averaged"):
        sliding_window_inference(sample, lambda b: (b > 0).long(), 8)
    with pytest.raises(ParameterError, match="overlap=1.0"):
        sliding_window_inference(sample, identity, 8, overlap=1.0)
    with pytest.raises(ParameterError, match="layer='label'"):
        sliding_window_inference(sample, identity, 8, layer="label")
    with pytest.raises(ParameterError, match="units='world'"):
        sliding_window_inference(sample["image"], identity, 8.0, units="world")
    with pytest.raises(ParameterError, match="blend='hann'"):
        sliding_window_inference(sample, identity, 8, blend="hann")


def test_the_torch_blend_path_matches_the_cpu_kernel():
    from domainaug.core.kernels.blend import blend_into
    g = torch.Generator().manual_seed(0)
    fast, fast_w = torch.zeros(2, 20, 18, 16), torch.zeros(20, 18, 16)
    slow, slow_w = torch.zeros(2, 20, 18, 17)[..., :16], torch.zeros(20, 18, 17)[..., :16]   # not contiguous: torch
    w = blend_weights((10, 10, 10), "gaussian")
    for start in [(0, 0, 0), (5, 4, 3), (10, 8, 6)]:
        pred = torch.rand((2, 10, 10, 10), generator=g)
        blend_into(fast, fast_w, pred, w, start)
        blend_into(slow, slow_w, pred, w, start)
    torch.testing.assert_close(slow, fast, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(slow_w, fast_w, rtol=1e-6, atol=0)
