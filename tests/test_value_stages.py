"""Value stages: a per-channel affine intensity op after an exact permutation rides along with the copy."""

import pytest
import torch

import domainaug as da
from domainaug import remote_sensing as rs
from domainaug.core.kernels import resample
from domainaug.testing import make_raster, make_volume

JITTER = rs.SpectralJitter(gain=(0.8, 1.2), bias=(-0.05, 0.05))


def unfused(steps, sample, params):
    out = sample
    for t, p in zip(steps, params):
        out = t.run(out, p)
    return out


@pytest.mark.parametrize("spatial", [da.Flip(axes=(0,)), da.Flip(axes=(1,)), da.Rot90(axes=(0, 1)),
                                     rs.RotationPolicy("dihedral")])
@pytest.mark.parametrize("nodata", [True, False])
@pytest.mark.parametrize("op", [JITTER, da.BrightnessContrast((-0.1, 0.1), (0.8, 1.2)), rs.Haze((0.02, 0.1))],
                         ids=["jitter", "brightness-contrast", "haze"])
def test_channel_affine_ops_after_a_permutation_are_one_pass_and_equal_the_unfused_result(spatial, nodata, op):
    sample = make_raster(shape=(24, 24))
    if not nodata:
        sample = sample.replace(layers={n: layer for n, layer in sample.layers.items() if n != "valid"})
    steps = [spatial, op]
    pipeline = da.Compose(steps)
    for seed in range(4):
        before = resample.passes()
        out = pipeline(sample, torch.Generator().manual_seed(seed))
        assert resample.passes() - before == 1
        ref = unfused(steps, sample, out.history[-1].params["children"])
        scale = float(sample["image"].abs().max())
        torch.testing.assert_close(out["image"], ref["image"], atol=1e-6 * scale, rtol=0)
        for name in ("label", "valid"):
            if name in sample.layer_names():
                assert torch.equal(out[name], ref[name])
        if nodata:      # nodata untouched: invalid pixels hold the fill
            assert torch.all(out["image"][:, ~out["valid"][0]] == sample.layer_info("image").fill)


def test_a_crop_or_a_warp_after_the_jitter_still_gives_the_unfused_result():
    sample = make_raster(shape=(24, 20))
    for steps in ([da.Flip(axes=(0,)), JITTER, rs.SpectralJitter(gain=1.1, bias=0.01)],   # 2nd needs the 1st's output
                  [da.Flip(axes=(0,)), JITTER, da.Crop(10)], [da.Rot90(axes=(0, 1)), JITTER, da.Affine(degrees=20)],
                  [da.Crop(10), JITTER]):
        out = da.Compose(steps)(sample, torch.Generator().manual_seed(1))
        ref = unfused(steps, sample, out.history[-1].params["children"])
        torch.testing.assert_close(out["image"], ref["image"], atol=1e-6 * float(sample["image"].abs().max()), rtol=0)


def test_integer_sourced_layers_are_float_and_still_right():
    sample = make_volume(dtype="int16")
    steps = [da.Flip(axes=(0,)), rs.SpectralJitter(bands=None, relative=False, gain=1.5, bias=3.0)]
    sample = rs.set_bands(sample, ["blue"])
    out = da.Compose(steps)(sample, torch.Generator().manual_seed(0))
    ref = unfused(steps, sample, out.history[-1].params["children"])
    assert out["image"].dtype == torch.float32 and torch.allclose(out["image"], ref["image"], rtol=1e-6)


def test_value_stages_replay_bit_for_bit():
    sample = make_raster(shape=(24, 24))
    pipeline = da.Compose([rs.RotationPolicy("dihedral"), JITTER])
    out = pipeline(sample, torch.Generator().manual_seed(3))
    again = da.replay(sample, [r.to_dict() for r in out.history])
    assert torch.equal(out["image"], again["image"])
