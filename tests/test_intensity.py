"""Intensity ops: references and nodata handling."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

import domainaug as da
from domainaug.core.values import affine_values, channel_quantiles
from domainaug.testing import make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def test_blur_matches_scipy_in_the_interior_with_anisotropic_spacing():
    sample = make_volume(shape=(24, 26, 22), spacing=(1.0, 2.0, 0.5))
    out = da.GaussianBlur(sigma=1.5).apply(sample, {"sigma": 1.5})["image"][0].numpy()
    image = sample["image"][0].numpy().astype(np.float64)
    ref = ndi.gaussian_filter(image, sigma=[1.5, 0.75, 3.0], truncate=3.0, mode="constant")
    inner = (slice(6, -6), slice(4, -4), slice(10, -10))
    np.testing.assert_allclose(out[inner], ref[inner], rtol=1e-4)


def test_intensity_ops_leave_nodata_untouched():
    sample = make_raster()
    valid = sample["valid"][0]
    for t in [da.Gamma((0.5, 2.0)), da.BrightnessContrast((-0.3, 0.3), (0.5, 1.5)), da.GaussianNoise((0.1, 0.3)),
              da.GaussianBlur((1.0, 20.0)), da.SaltPepper((0.1, 0.2))]:
        out = t(sample, G(1))
        assert torch.equal(out["image"][:, ~valid], sample["image"][:, ~valid]), type(t).__name__
        assert not torch.equal(out["image"][:, valid], sample["image"][:, valid]), type(t).__name__
        assert (out["image"][:, valid] != -9999.0).all(), type(t).__name__


def test_gamma_on_integer_source_computes_in_float_keeping_the_range():
    """Values policy: an int16 scan is float32 in memory, and gamma neither rounds nor clips."""
    sample = make_volume(dtype=np.int16)
    assert sample["image"].dtype == torch.float32
    out = da.Gamma(2.0)(sample, G())
    assert out["image"].dtype == torch.float32
    assert bool((out["image"] != out["image"].round()).any())          # not rounded back to integers
    assert out["image"].min() == sample["image"].min() and out["image"].max() == sample["image"].max()
    assert out["image"].float().mean() < sample["image"].float().mean()


def test_noise_has_the_requested_relative_std():
    sample = da.Sample.from_numpy(np.full((1, 64, 64, 16), 5.0, np.float32) + np.random.default_rng(0).normal(
        0, 2.0, (1, 64, 64, 16)).astype(np.float32))
    out = da.GaussianNoise(std=0.5).apply(sample, {"std": 0.5, "seed": 3})
    added = (out["image"] - sample["image"]).std().item()
    assert abs(added - 0.5 * sample["image"].std().item()) < 0.05


def test_all_invalid_passes_through_intensity_ops_but_statistics_refuse_it():
    """Mid-pipeline, an augmentation may hide a whole patch: intensity ops then have nothing to change
    (invalid voxels are never touched) instead of killing a training run; asking for statistics of
    no voxel is still an error (and loading a file with no valid pixel is one, see test_io)."""
    from domainaug.core.values import channel_stats
    sample = da.Sample.from_numpy(np.ones((4, 4), np.float32), valid=np.zeros((4, 4), bool))
    for t in (da.Gamma(0.5), da.BrightnessContrast(0.2, 1.5), da.GaussianNoise(0.1)):
        out = t(sample, G())
        assert torch.equal(out["image"], sample["image"]) and torch.equal(out["valid"], sample["valid"])
    with pytest.raises(da.NoDataError, match="VALID"):
        channel_stats(sample["image"], sample["valid"])


def test_noise_does_not_depend_on_the_thread_count():
    from domainaug.core.values import seeded_noise
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = seeded_noise(7, (3, 700, 700), "cpu", torch.float32, "normal")
        torch.set_num_threads(1)
        b = seeded_noise(7, (3, 700, 700), "cpu", torch.float32, "normal")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b) and abs(float(a.std()) - 1.0) < 0.01


def test_anisotropic_blur_in_mm_matches_scipy():
    sample = make_volume(shape=(24, 26, 22), spacing=(1.0, 2.0, 0.5))
    out = da.GaussianBlur(1.0, axis_scale=(1.0, 0.0, 3.0)).apply(sample, {"sigma": 1.0})["image"][0].numpy()
    ref = ndi.gaussian_filter(sample["image"][0].numpy().astype(np.float64), sigma=[1.0, 0.0, 6.0], truncate=3.0,
                              mode="constant")
    inner = (slice(4, -4), slice(None), slice(19, -19))
    np.testing.assert_allclose(out[inner], ref[inner], rtol=1e-4)
    with pytest.raises(da.ParameterError, match="^axis_scale="):
        da.GaussianBlur(1.0, axis_scale=(1.0, 2.0)).apply(sample, {"sigma": 1.0})


class _Returns(da.IntensityTransform):
    """transform_layer returns its input (or a view of it) untouched, or doubled."""

    def __init__(self, how):
        self.how = how
        self._set_layers(None)
        self._set_p(1.0)

    def sample_params(self, sample, generator):
        return {}

    def transform_layer(self, data, valid, params, sample, name):
        return {"same": data, "view": data[:, :], "double": data * 2}[self.how]


@pytest.mark.parametrize("how", ["same", "view", "double"])
def test_nodata_merge_never_writes_into_the_input(how):
    # the valid/nodata merge runs in place only in a buffer the transform made itself
    sample = make_raster(shape=(40, 36), nodata_border=6)
    before = sample["image"].clone()
    out = _Returns(how)(sample, torch.Generator())["image"]
    assert torch.equal(sample["image"], before)
    valid = sample["valid"][0]
    expected = before * 2 if how == "double" else before
    assert torch.equal(out[:, valid], expected[:, valid]) and torch.equal(out[:, ~valid], before[:, ~valid])
    assert out.untyped_storage().data_ptr() != sample["image"].untyped_storage().data_ptr()   # (read-only inputs)


def test_affine_values_is_addcmul_into_a_fresh_buffer():
    x = torch.rand(3, 1100, 1000)                        # 13 MB: a pooled buffer
    gain, bias = torch.rand(3, 1, 1), torch.rand(3, 1, 1)
    a = affine_values(x, gain, bias)
    b = affine_values(x, gain, bias)
    assert torch.equal(a, torch.addcmul(bias, x, gain)) and a.data_ptr() != b.data_ptr() != x.data_ptr()


class _Keeps(_Returns):
    """transform_layer returns a tensor the transform keeps (a template)."""

    def transform_layer(self, data, valid, params, sample, name):
        if not hasattr(self, "template"):
            self.template = torch.full_like(data, 7.0)
        return self.template


def test_nodata_merge_never_writes_into_a_tensor_the_transform_keeps():
    sample = make_raster(shape=(40, 36), nodata_border=6)
    t = _Keeps("same")
    out = t(sample, torch.Generator())["image"]
    assert torch.equal(t.template, torch.full_like(t.template, 7.0))
    assert out.untyped_storage().data_ptr() != t.template.untyped_storage().data_ptr()


@pytest.mark.parametrize("op", [lambda: da.BrightnessContrast(), lambda: da.Gamma()])
def test_intensity_ops_keep_gradients_with_nodata(op):
    sample = make_raster(shape=(40, 36), nodata_border=6)
    image = sample["image"].clone().requires_grad_()
    sample = sample.with_layers(image=da.Layer(image, da.Role.INTENSITY, fill=sample.layer_info("image").fill))
    out = op()(sample, torch.Generator())["image"]
    out.sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()


@pytest.mark.parametrize("shape", [(1, 96, 96, 40), (3, 300, 290), (2, 7, 5)])
@pytest.mark.parametrize("with_valid", [False, True])
def test_channel_statistics_do_not_depend_on_the_thread_count(shape, with_valid):
    """torch's float32 mean differs in its last bits between 1, 2 and 3 threads; a DataLoader worker
    (often 1 thread) and the main process must still give the same augmentation."""
    from domainaug.core.values import channel_stats
    x = torch.from_numpy(np.random.default_rng(1).normal(1000, 3, shape).astype(np.float32))
    valid = torch.rand((1,) + shape[1:], generator=torch.Generator().manual_seed(2)) > 0.2 if with_valid else None
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(channel_stats(x, valid))
    finally:
        torch.set_num_threads(before)
    for r in results[1:]:
        assert all(torch.equal(r[k], results[0][k]) for k in r)
    ref = x.double().numpy().reshape(shape[0], -1)[:, valid.reshape(-1).numpy()] if with_valid else \
        x.double().numpy().reshape(shape[0], -1)
    np.testing.assert_allclose(results[0]["mean"].reshape(-1).numpy(), ref.mean(1), rtol=1e-7)
    np.testing.assert_allclose(results[0]["std"].reshape(-1).numpy(), ref.std(1), rtol=1e-5)


def test_quantiles_of_more_than_2_to_the_24_values():
    lo, hi = channel_quantiles(torch.arange(2**24 + 5, dtype=torch.float32)[None], None, [1.0, 99.0])
    assert float(lo) == pytest.approx(0.01 * 2**24, rel=1e-3) and float(hi) == pytest.approx(0.99 * 2**24, rel=1e-3)
