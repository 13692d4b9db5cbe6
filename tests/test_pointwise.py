"""The one-pass gamma curve (core.kernels.pointwise.power) against float64 pow."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.core.kernels.pointwise import power


def _data(seed=0, shape=(3, 37, 41, 29)):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32) * np.array([1.0, 1000.0, 1e-3], np.float32)[:, None, None, None]
    x -= np.array([0.0, 300.0, 0.0], np.float32)[:, None, None, None]
    x[:, 0, 0, :5] = x.reshape(3, -1).min(1)[:, None]          # exact minima: 0 ** gamma
    return torch.from_numpy(x)


def _reference(x, lo, span, gamma):
    x, lo, span = x.double(), lo.double(), span.double()
    return lo + span * ((x - lo) / span).clamp(0, 1) ** gamma


@pytest.mark.parametrize("gamma", [1e-3, 0.5, 0.7, 1.0, 1.5, 3.0, 10.0])
def test_power_is_within_a_few_ulp_of_float64_pow(gamma):
    x = _data()
    lo = x.amin((1, 2, 3), keepdim=True)
    span = x.amax((1, 2, 3), keepdim=True) - lo
    out = power(x, lo, span, gamma)
    ref = _reference(x, lo, span, gamma)
    assert out.dtype == torch.float32 and out.shape == x.shape
    # (x - lo) * (1 / span) carries ~1.5 ulp of float32 rounding, which x ** gamma scales by gamma;
    # lo + span * v is rounded on the scale of its larger term. (torch's float32 exp(gamma log x)
    # is off by 9 ulp at gamma 0.7 and 14 at 1.5 on a similar volume.)
    ulp = torch.finfo(torch.float32).eps * torch.maximum(ref.abs(), lo.double().abs()).clamp(min=1e-30)
    assert ((out.double() - ref).abs() / ulp).max() <= 6.0 + 1.5 * gamma


def test_power_matches_the_torch_path_and_keeps_the_input():
    x = _data(1)
    lo = x.amin((1, 2, 3), keepdim=True)
    span = x.amax((1, 2, 3), keepdim=True) - lo
    before = x.clone()
    kernel = power(x, lo, span, 0.8)
    strided = power(x.transpose(1, 2), lo, span, 0.8).transpose(1, 2)      # not contiguous: torch passes
    assert torch.equal(x, before)
    torch.testing.assert_close(kernel, strided, rtol=2e-6, atol=1e-6 * span.abs().max().item())


def test_power_edge_cases():
    x = torch.full((2, 5, 6), 7.5)
    x[1] = torch.linspace(0, 1, 30).view(5, 6)
    lo = torch.tensor([7.5, 0.0]).view(2, 1, 1)
    span = torch.tensor([torch.finfo(torch.float32).tiny, 1.0]).view(2, 1, 1)
    out = power(x, lo, span, 1.5)
    assert torch.equal(out[0], x[0])                                   # a constant channel stays put
    huge = power(x, lo, span, 1e9)                                     # y far below -2 ** 31: exactly 0 (then lo)
    assert torch.isfinite(huge).all()
    assert torch.equal(huge[1].flatten()[:-1], torch.zeros(29)) and huge[1].flatten()[-1] == 1.0
    assert torch.allclose(power(x, lo, span, 1.0)[1], x[1], rtol=3e-7, atol=0)


def test_gamma_transform_float32_and_float64_agree():
    x = _data(2)
    s32 = da.Sample.from_numpy(x.numpy(), spacing=(1.0, 1.0, 1.0))
    s64 = da.Sample.from_numpy(x.double().numpy(), spacing=(1.0, 1.0, 1.0))
    params = {"gamma": 1.3}
    a, b = da.Gamma().apply(s32, params)["image"], da.Gamma().apply(s64, params)["image"]
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-6 * 1000)


def test_power_of_subnormal_normalised_values():
    # a channel spanning 40 orders of magnitude: (x - lo) / span falls below float32's smallest normal
    x = torch.tensor([[0.0, 1e-10, 1e-3, 1.0, 1e30]])
    out = power(x, 0.0, 1e30, 0.01)
    ref = _reference(x, torch.tensor(0.0), torch.tensor(1e30, dtype=torch.float64), 0.01)
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=0)


def test_power_takes_numbers_and_tensors_that_require_grad():
    x = torch.rand(2, 8, 9, requires_grad=True)
    out = power(x, 0.0, 1.0, 2.0)
    torch.testing.assert_close(out, x.detach() ** 2, rtol=2e-6, atol=1e-7)


def test_power_of_a_channel_narrower_than_two_to_the_minus_64():
    # 1 / span >= 2 ** 64: the kernel cannot pre-scale such a channel by 2 ** 64 (it would overflow),
    # and needs no scaling either: its smallest non-zero (x - lo) / span is normal
    span = 1e-30
    x = torch.tensor([[0.0, 1e-45, 3e-38, 1e-33, 2.5e-31, 1e-30], [0.0, 0.1, 0.2, 0.5, 0.9, 1.0]])
    out = power(x, 0.0, torch.tensor([[span], [1.0]]), 0.6)
    ref = _reference(x, torch.tensor(0.0), torch.tensor([[span], [1.0]], dtype=torch.float64), 0.6)
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=0)
    assert out[0, 0] == 0 and out[0, -1] == torch.tensor(span)


def test_a_fresh_compile_and_the_cached_kernel_give_the_same_bits(tmp_path):
    """Seen in a fresh clone: with every fastmath flag, the first process (compiling the gamma kernel)
    and later ones (loading it from numba's cache) differed by an ulp, so offline outputs depended
    on which process made them. Two processes share an empty cache folder: the first compiles."""
    import os
    import subprocess
    import sys
    script = ("import numpy as np, torch\n"
              "from domainaug.core.kernels.pointwise import power\n"
              "x = torch.from_numpy(np.random.default_rng(0).random((2, 300, 301)).astype(np.float32) * 900)\n"
              "out = [power(x, x.amin(), x.amax() - x.amin(), g) for g in (0.6, 0.83, 1.27, 1.9)]\n"
              "np.save(__import__('sys').argv[1], torch.stack(out).numpy())\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    for name in ("fresh", "cached"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{name}.npy")], env=env, check=True, timeout=300)
    assert np.array_equal(np.load(tmp_path / "fresh.npy"), np.load(tmp_path / "cached.npy"))
