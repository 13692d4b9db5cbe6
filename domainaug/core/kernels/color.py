"""CPU kernels of the colour and codec ops (``remote_sensing.color``): each is one parallel loop over
the pixels where torch would make a pass over memory per arithmetic step.

- ``jitter``: torchvision's brightness / contrast / saturation / hue steps, in a given order, on the
  red, green and blue rows of a ``(C, N)`` float32 array scaled by a value range; two passes (the
  contrast step needs the mean luma of the valid pixels after the steps before it).
- ``to_bytes`` / ``from_bytes``: float32 ``(C, N)`` rows to an interleaved ``(N, C)`` uint8 image
  (scaled, rounded, clipped; invalid pixels as a fill value) and back (invalid pixels keep their
  values), the conversions around a codec.

The arithmetic is float32, as the torch path of the same ops (which other dtypes and devices use).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from . import parallel_lock
from .pointwise import FASTMATH

__all__ = ["jitter", "to_bytes", "from_bytes", "STEP_CODES"]

_TASK = 1 << 13                      # pixels per parallel task (3 float32 blocks stay in L2)
#: Step names -> the codes the kernel reads.
STEP_CODES = {"brightness": 0, "contrast": 1, "saturation": 2, "hue": 3}
_F = np.float32
_WR, _WG, _WB = _F(0.299), _F(0.587), _F(0.114)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _load(rs, gs, bs, a, n, low, inv, r, g, b):
    for j in range(n):
        r[j] = (rs[a + j] - low) * inv
        g[j] = (gs[a + j] - low) * inv
        b[j] = (bs[a + j] - low) * inv


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _hue_channel(offset, hp, top, chroma):
    """HSV -> RGB without sectors: ``top - chroma * clamp(min(k, 4 - k), 0, 1)``, ``k = (offset + hp) mod 6``."""
    k = offset + hp
    k = k - _F(6.0) * np.floor(k / _F(6.0))
    return top - chroma * max(_F(0.0), min(k, min(_F(4.0) - k, _F(1.0))))


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def _steps(r, g, b, n, codes, factors, upto, mean, clip):
    """The first ``upto`` steps of ``codes`` (a code < 0: skipped) on a block of ``n`` pixels, each a
    loop that LLVM vectorises."""
    for k in range(upto):
        code, f = codes[k], factors[k]
        if code < 0:
            continue
        if code == 0:
            for j in range(n):
                r[j], g[j], b[j] = r[j] * f, g[j] * f, b[j] * f
        elif code == 1:
            m = (_F(1.0) - f) * mean
            for j in range(n):
                r[j], g[j], b[j] = f * r[j] + m, f * g[j] + m, f * b[j] + m
        elif code == 2:
            for j in range(n):
                gray = (_F(1.0) - f) * (_WR * r[j] + _WG * g[j] + _WB * b[j])
                r[j], g[j], b[j] = f * r[j] + gray, f * g[j] + gray, f * b[j] + gray
        else:
            shift = _F(6.0) * f
            for j in range(n):
                rr, gg, bb = r[j], g[j], b[j]
                top, bottom = max(rr, max(gg, bb)), min(rr, min(gg, bb))
                chroma = top - bottom
                inv = _F(1.0) / chroma if chroma > _F(0.0) else _F(0.0)
                h6 = (gg - bb) * inv if top == rr else (
                    _F(2.0) + (bb - rr) * inv if top == gg else _F(4.0) + (rr - gg) * inv)
                hp = h6 + shift
                r[j] = _hue_channel(_F(5.0), hp, top, chroma)
                g[j] = _hue_channel(_F(3.0), hp, top, chroma)
                b[j] = _hue_channel(_F(1.0), hp, top, chroma)
        if clip:
            for j in range(n):
                r[j] = min(max(r[j], _F(0.0)), _F(1.0))
                g[j] = min(max(g[j], _F(0.0)), _F(1.0))
                b[j] = min(max(b[j], _F(0.0)), _F(1.0))


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _gray_sums(rs, gs, bs, valid, has_valid, low, inv, codes, factors, upto, clip, sums, counts):
    size = rs.shape[0]
    tasks = (size + _TASK - 1) // _TASK
    for t in nb.prange(tasks):
        a = t * _TASK
        n = min(size, a + _TASK) - a
        r, g, b = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
        _load(rs, gs, bs, a, n, low, inv, r, g, b)
        _steps(r, g, b, n, codes, factors, upto, _F(0.0), clip)
        s, c = 0.0, 0
        for j in range(n):
            if not has_valid or valid[a + j]:
                s += _WR * r[j] + _WG * g[j] + _WB * b[j]
                c += 1
        sums[t], counts[t] = s, c


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _apply(rs, gs, bs, ro, go, bo, low, inv, span, codes, factors, mean, clip):
    size = rs.shape[0]
    tasks = (size + _TASK - 1) // _TASK
    for t in nb.prange(tasks):
        a = t * _TASK
        n = min(size, a + _TASK) - a
        r, g, b = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
        _load(rs, gs, bs, a, n, low, inv, r, g, b)
        _steps(r, g, b, n, codes, factors, 4, mean, clip)
        for j in range(n):
            ro[a + j] = r[j] * span + low
            go[a + j] = g[j] * span + low
            bo[a + j] = b[j] * span + low


def jitter(src: np.ndarray, out: np.ndarray, rgb: list[int], valid: np.ndarray | None, low: float, span: float,
           order: list[str], factors: dict[str, float], clip: bool) -> None:
    """``out[rgb]`` = the colour steps of ``factors`` (hue in turns), in ``order``, on ``src[rgb]``
    (``(C, N)`` float32) scaled by ``(low, span)``; a step at its neutral value is skipped. The
    contrast mean is over ``valid`` (``(N,)`` bool, or every pixel)."""
    neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    codes = np.array([STEP_CODES[s] if factors[s] != neutral[s] else -1 for s in order], dtype=np.int64)
    values = np.array([factors[s] for s in order], dtype=np.float32)
    rows, outs = [src[i] for i in rgb], [out[i] for i in rgb]
    inv = _F(1.0 / span)
    mean = _F(0.0)
    where = [k for k, s in enumerate(order) if s == "contrast"]
    with parallel_lock():
        if where and codes[where[0]] >= 0:
            tasks = (src.shape[1] + _TASK - 1) // _TASK
            sums, counts = np.zeros(tasks), np.zeros(tasks, dtype=np.int64)
            mask = valid if valid is not None else np.ones(1, dtype=bool)
            _gray_sums(rows[0], rows[1], rows[2], mask, valid is not None, _F(low), inv, codes, values, where[0], clip,
                       sums, counts)
            mean = _F(sums.sum() / max(1, counts.sum()))
        _apply(rows[0], rows[1], rows[2], outs[0], outs[1], outs[2], _F(low), inv, _F(span), codes, values, mean,
               clip)


@nb.njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _byte(x, low, scale):
    # + 0.5 and truncation: round half up of a value in [0, 255] (vectorises; rint does not)
    return np.uint8(min(max((x - low) * scale, _F(0.0)), _F(255.0)) + _F(0.5))


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _to_bytes(x0, x1, x2, k, valid, has_valid, fill, low, scale, out):
    size = x0.shape[0]
    tasks = (size + _TASK - 1) // _TASK
    for t in nb.prange(tasks):
        a, e = t * _TASK, min(size, (t + 1) * _TASK)
        if has_valid:
            for j in range(a, e):
                ok = valid[j]
                out[j * k] = _byte(x0[j] if ok else fill[0], low, scale)
                if k == 3:
                    out[j * k + 1] = _byte(x1[j] if ok else fill[1], low, scale)
                    out[j * k + 2] = _byte(x2[j] if ok else fill[2], low, scale)
        elif k == 3:
            for j in range(a, e):
                out[3 * j], out[3 * j + 1], out[3 * j + 2] = _byte(x0[j], low, scale), _byte(x1[j], low, scale), \
                    _byte(x2[j], low, scale)
        else:
            for j in range(a, e):
                out[j] = _byte(x0[j], low, scale)


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH, error_model="numpy")
def _from_bytes(coded, k, low, inv_scale, o0, o1, o2):
    size = o0.shape[0]
    tasks = (size + _TASK - 1) // _TASK
    for t in nb.prange(tasks):
        for j in range(t * _TASK, min(size, (t + 1) * _TASK)):
            o0[j] = _F(coded[j * k]) * inv_scale + low
            if k == 3:
                o1[j] = _F(coded[j * k + 1]) * inv_scale + low
                o2[j] = _F(coded[j * k + 2]) * inv_scale + low


def to_bytes(src: np.ndarray, rows: list[int], valid: np.ndarray | None, fill: np.ndarray, low: float,
             scale: float) -> np.ndarray:
    """``(N, len(rows))`` uint8 (1 or 3 rows): ``(src[rows] - low) * scale`` clipped to 0..255 and
    rounded (half up), ``fill`` (per row) where ``valid`` is False."""
    k = len(rows)
    if k not in (1, 3):
        raise ValueError(f"to_bytes codes 1 or 3 rows, got {k}")
    out = np.empty(src.shape[1] * k, dtype=np.uint8)
    x = [src[i] for i in rows] * (3 // k)
    with parallel_lock():
        _to_bytes(x[0], x[1], x[2], k, valid if valid is not None else np.ones(1, dtype=bool), valid is not None,
                  np.resize(np.asarray(fill, dtype=np.float32), 3), _F(low), _F(scale), out)
    return out.reshape(src.shape[1], k)


def from_bytes(coded: np.ndarray, rows: list[int], low: float, inv_scale: float, out: np.ndarray) -> None:
    """``out[rows] = coded * inv_scale + low``, ``coded`` ``(N, len(rows))`` uint8 (1 or 3 rows)."""
    k = len(rows)
    if k not in (1, 3):
        raise ValueError(f"from_bytes decodes 1 or 3 rows, got {k}")
    o = [out[i] for i in rows] * (3 // k)
    with parallel_lock():
        _from_bytes(np.ascontiguousarray(coded).reshape(-1), k, _F(low), _F(inv_scale), o[0], o[1], o[2])
