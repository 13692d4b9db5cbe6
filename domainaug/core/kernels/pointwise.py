"""Point-wise kernels that torch runs as several passes over memory.

``power`` is the gamma curve ``lo + span * clamp((x - lo) / span, 0, 1) ** gamma``. In torch it
is 8 element-wise passes over memory (subtract, divide, clamp, log, scale, exp, scale, shift). The CPU
kernel does it in one vectorised loop, with ``x ** gamma = 2 ** (gamma * log2 x)`` written out (numba has no vector
``log``/``exp``): ``log2`` from the float's exponent bits plus an odd polynomial in
``(m - 1) / (m + 1)`` on the mantissa, ``2 ** y`` from a polynomial on the fraction and exponent bits
for the integer part. Bits move through two LLVM intrinsics (``simd.py``) that stay in int32 (numba's
own int32 arithmetic widens to int64, which halves the vector width). Both polynomials are below float32
rounding; what remains is the float32 rounding of ``(x - lo) / span`` (scaled by gamma) and of
``lo + span * v``, below torch's own float32 error (tests/test_pointwise.py bounds both). Other dtypes
and devices use the torch passes. Timings: docs/performance.md.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import torch

from . import parallel_lock
from .memory import empty
from .simd import exp2i, split_sqrt2

__all__ = ["power"]

_TASK = 1 << 16                  # elements per parallel task


def power(data: torch.Tensor, lo: torch.Tensor, span: torch.Tensor, gamma: float,
          out: torch.Tensor | None = None) -> torch.Tensor:
    """``lo + span * clamp((data - lo) / span, 0, 1) ** gamma`` per channel, as a new tensor.

    ``data`` is ``(C, *spatial)``; ``lo`` and ``span`` are numbers or tensors that broadcast per
    channel (``(C, 1, ..., 1)``), ``span > 0``; ``gamma > 0``. In the float32 CPU kernel, NaN inputs
    come out as ``lo`` (it is compiled assuming no NaN; nodata is merged back by the caller), and
    values below ``2 ** -190 * span`` above ``lo`` are computed as float32 subnormals (coarsely).
    ``out``: a tensor of ``data``'s shape and dtype to write into (a batch's slice), returned.
    """
    lo = torch.as_tensor(lo, dtype=data.dtype, device=data.device)
    span = torch.as_tensor(span, dtype=data.dtype, device=data.device)
    if data.device.type == "cpu" and data.dtype == torch.float32 and data.is_contiguous() and data.numel():
        c = data.shape[0]
        out = empty(tuple(data.shape), torch.float32) if out is None or not out.is_contiguous() else out
        lo64 = lo.detach().reshape(-1).double().expand(c).numpy()
        span64 = span.detach().reshape(-1).double().expand(c).numpy()
        mant, exp = math.frexp(float(gamma))
        g_hi = math.ldexp(round(mant * 2 ** 16), exp - 16)          # gamma's leading 16 bits
        with np.errstate(divide="ignore", over="ignore"):
            inv = (1.0 / span64).astype(np.float32)
            inv[~np.isfinite(inv)] = 0.0                      # a constant channel (span ~0) stays at lo
            scaled = inv * np.float32(2.0 ** 64)              # exact; inf only where inv >= 2 ** 64, and
        shift = np.where(np.isfinite(scaled), 64.0, 0.0)      # then no x is subnormal: (src - lo) >= 2 ** -149
        with parallel_lock():
            _power_kernel(data.detach().reshape(c, -1).numpy(), out.reshape(c, -1).numpy(), lo64.astype(np.float32),
                          np.where(shift > 0, scaled, inv).astype(np.float32), span64.astype(np.float32),
                          np.exp2(shift).astype(np.float32), shift.astype(np.float32), np.float32(gamma),
                          np.float32(g_hi), np.float32(gamma - g_hi))
        return out
    new = torch.sub(data, lo, out=out) if out is not None else data - lo     # one buffer, then in place
    new.div_(span).clamp_(0, 1)
    new.log_().mul_(gamma).exp_()                      # x ** gamma as exp(gamma log x): faster than pow_
    return new.mul_(span).add_(lo)


# Coefficients: minimax (Lawson) fits in float64, rounded to float32. log2 m = z * L(z ** 2) with
# z = (m - 1) / (m + 1), |z| <= 0.1716: 5.3e-9 absolute error; 2 ** (f / ln 2) = exp(f) = 1 + f * X(f),
# |f| <= ln 2 / 2: 1.8e-8 relative. (Taylor series need one term more each for the same error.)
_L0, _L1, _L2, _L3 = (np.float32(c) for c in (2.885390043258667, 0.961800754070282, 0.5765835046768188,
                                                0.4342788755893707))
_X1, _X2, _X3, _X4, _X5, _X6 = (np.float32(c) for c in (1.0, 0.4999999403953552, 0.16666430234909058,
                                                        0.04166800528764725, 0.008374195545911789,
                                                        0.0013843607157468796))
_LN2 = np.float32(math.log(2.0))
_F, _I = np.float32, np.int32


#: No approximate reciprocals/functions or reassociation: with them, a freshly compiled kernel and the
#: same kernel loaded from numba's cache differed by an ulp (the first process after an install and
#: every later one gave other gammas). FMA contraction stays: it is the same either way, and fast.
FASTMATH = {"nnan", "ninf", "nsz", "contract"}


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _power_kernel(src, out, lo, inv_span, span, top, e_shift, gamma, g_hi, g_lo):
    C, N = src.shape
    tasks = (N + _TASK - 1) // _TASK
    for t in nb.prange(C * tasks):
        c, k = t // tasks, t % tasks
        a, b = k * _TASK, min(N, (k + 1) * _TASK)
        _power_run(src[c, a:b], out[c, a:b], lo[c], inv_span[c], span[c], top[c], e_shift[c], gamma, g_hi, g_lo)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _power_run(src, dst, lo, inv_span, span, top, e_shift, gamma, g_hi, g_lo):
    """One loop that LLVM vectorises whole."""
    for j in range(src.shape[0]):
        # x = clamp((src - lo) / span, 0, 1) * 2 ** e_shift: the scale (folded into inv_span) makes
        # subnormal x normal, and is taken off the exponent
        x = min(max((src[j] - lo) * inv_span, _F(0.0)), top)
        e, m = split_sqrt2(x)
        e = e - e_shift
        z = (m - _F(1.0)) / (m + _F(1.0))
        z2 = z * z
        log2_m = z * (_L0 + z2 * (_L1 + z2 * (_L2 + z2 * _L3)))
        # log2 of the result, y = gamma * (e + log2 m) <= 0, as hi + small with hi = g_hi * e exact
        # (g_hi has 16 significant bits, |e| <= 191 has 8): a plain float32 y would lose gamma * |e| * 2 ** -24
        hi = g_hi * e
        small = g_lo * e + gamma * log2_m
        w = _I(hi + small - _F(0.5))                     # y rounded (a truncation vectorises)
        f = ((hi - _F(w)) + small) * _LN2                # hi - w is exact; |f| <= ~ln 2 / 2
        f = min(max(f, _F(-1.0)), _F(1.0))               # (only when y < -2 ** 31: the result is 0 then)
        p = _F(1.0) + f * (_X1 + f * (_X2 + f * (_X3 + f * (_X4 + f * (_X5 + f * _X6)))))
        v = p * exp2i(max(w, _I(-127))) if x > _F(0.0) else _F(0.0)   # 2 ** -127 and below: 0
        dst[j] = lo + span * v
