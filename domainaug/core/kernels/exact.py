"""The exact path: maps that are signed permutations of voxels with integer offsets (flip, rot90,
crop, pad and their compositions) are done by copying, with no interpolation."""

from __future__ import annotations

import numba as nb
import numpy as np
import torch

from ..maps import PendingMap
from . import parallel_lock
from .memory import empty
from .simd import TILE, transpose_tile16
from .spec import LayerSpec, apply_values

__all__ = ["exact_plan", "exact_full", "copy_exact"]


def exact_plan(pending: PendingMap):
    """``(perm, sign, offset)`` with ``src[perm[i]] = sign[i] * out[i] + offset[i]``, or ``None``."""
    if pending.n_fields:
        return None
    m = pending.source.inverse @ (pending.stages[0] if pending.stages else np.eye(pending.space.ndim + 1)) \
        @ pending.space.affine
    n = pending.space.ndim
    lin, off = m[:n, :n], m[:n, n]
    rounded = np.round(lin)
    if not (np.abs(lin - rounded).max() <= 1e-9 and np.abs(off - np.round(off)).max() <= 1e-6):   # (NaN too)
        return None
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None
    perm = [int(np.nonzero(rounded[:, i])[0][0]) for i in range(n)]       # src axis for out axis i
    sign = [int(rounded[perm[i], i]) for i in range(n)]
    offset = [int(round(off[perm[i]])) for i in range(n)]
    return perm, sign, offset


def exact_full(pending: PendingMap) -> bool:
    """True when ``pending`` is an exact voxel permutation covering the whole output with the whole
    source (flips, rot90, transposes; no crop or pad): statistics of the data are then the same
    before and after it, so a value stage may be computed from the source and fused into the copy."""
    plan = exact_plan(pending)
    if plan is None:
        return False
    lo, hi, _, _ = _exact_region(pending, plan)
    return sorted(pending.source.shape) == sorted(pending.space.shape) and \
        all(lo[i] == 0 and hi[i] == pending.space.shape[i] for i in range(pending.space.ndim))


def _exact_region(pending: PendingMap, plan):
    """Per output axis: the range ``lo..hi`` that comes from the source, where it starts in the
    source, and the output axes that run backwards."""
    perm, sign, offset = plan
    out_shape, src_shape = pending.space.shape, pending.source.shape
    lo, hi, src_lo, flips = [], [], [], []
    for i, (p, s, o) in enumerate(zip(perm, sign, offset)):
        # output j is in range when 0 <= s*j + o < n_src
        if s == 1:
            j_lo, j_hi = max(0, -o), min(out_shape[i], src_shape[p] - o)
        else:
            j_lo, j_hi = max(0, o - src_shape[p] + 1), min(out_shape[i], o + 1)
        lo.append(j_lo)
        hi.append(max(j_lo, j_hi))
        src_lo.append(min(s * j_lo + o, s * (max(j_lo, j_hi) - 1) + o))
        if s == -1:
            flips.append(i + 1)
    return lo, hi, src_lo, flips


def copy_exact(specs: list[LayerSpec], pending: PendingMap, plan,
               out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Every layer through the exact ``plan`` (see ``resample_layers``; ``out``: tensors to write into)."""
    perm, sign, offset = plan
    out_shape = pending.space.shape
    lo, hi, src_lo, flips = _exact_region(pending, plan)
    full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(len(perm)))
    rows_kept = perm[-1] == len(perm) - 1 and sign[-1] == 1     # output rows are source rows: memcpy speed
    cpu = specs[0].data.device.type == "cpu"
    valid_src = next((s.data for s in specs if s.kind == "valid"), None)
    results = []
    dsts: list[torch.Tensor | None] = list(out) if out is not None else [None] * len(specs)
    for spec, dst in zip(specs, dsts):
        # torch for plain copies and crops; the blocked numba copy (faster than torch.flip) for
        # transposes, mirrors and value stages, which ride along with the copy; torch for float16/bfloat16
        numba_ok = spec.data.dtype not in (torch.float16, torch.bfloat16)
        if cpu and numba_ok and (not rows_kept or flips or spec.gain is not None):
            results.append(_exact_cpu(spec, plan, lo, hi, out_shape, valid_src, dst))
        else:
            results.append(_exact_torch(spec, perm, lo, hi, src_lo, flips, out_shape))
    valid = next((r for r, s in zip(results, specs) if s.kind == "valid"), None)
    if not cpu:
        results = [apply_values(r, s, valid) for r, s in zip(results, specs)]
    if valid is not None and not full:  # new voxels hold the fill (a permutation keeps canonical nodata)
        results = [torch.where(valid, r, torch.full_like(r, s.fill)) if s.kind == "intensity" else r
                   for r, s in zip(results, specs)]
    return results if out is None else [d if r is d else d.copy_(r) for d, r in zip(out, results)]


def _exact_cpu(spec: LayerSpec, plan, lo, hi, out_shape, valid_src: torch.Tensor | None = None,
               dst: torch.Tensor | None = None) -> torch.Tensor:
    """One contiguous output from signed source strides, for transposes and mirrored rows (a blocked
    copy; torch would write them in the source's layout and need a second copy). A value stage
    (``spec.gain``) is applied in the same pass, on voxels ``valid_src`` marks valid."""
    perm, sign, offset = plan
    src = spec.data.contiguous()
    strides = src.stride()[1:]
    n = len(perm)
    fill = False if spec.kind == "valid" else spec.fill
    full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(n))
    if dst is not None and dst.is_contiguous():     # (written whole below, or filled first)
        out = dst if full else dst.fill_(fill)
    else:
        out = empty((src.shape[0],) + tuple(out_shape), src.dtype) if full else \
            torch.full((src.shape[0],) + tuple(out_shape), fill, dtype=src.dtype)
    step = [sign[i] * strides[perm[i]] for i in range(n)]                     # source step per output axis
    start = sum(strides[perm[i]] * (sign[i] * lo[i] + offset[i]) for i in range(n))
    lo3, hi3, step3 = ([0] + lo, [1] + hi, [0] + step) if n == 2 else (lo, hi, step)
    shape3 = (1,) + tuple(out_shape) if n == 2 else tuple(out_shape)
    view = (lambda t: t.view(torch.uint8)) if src.dtype == torch.bool else (lambda t: t)
    if all(h > low for low, h in zip(lo3, hi3)):
        # transposes: 16 x 16 tiles (in registers where the output's columns are source rows, else
        # scalar; 8 x 8 was the best scalar tile); rows kept or mirrored: 8 whole rows
        tile = (8, 1 << 30) if abs(step3[2]) == 1 else (TILE, TILE) if abs(step3[1]) == 1 else (8, 8)
        geometry = (np.array(shape3, np.int64), np.array(lo3, np.int64), np.array(hi3, np.int64),
                    np.array(step3, np.int64), int(start), tile[0], tile[1])
        flat_src, flat_out = view(src).reshape(src.shape[0], -1).numpy(), view(out).reshape(out.shape[0], -1).numpy()
        with parallel_lock():
            if spec.gain is None or spec.bias is None:        # (a value stage sets both)
                _permute_copy(flat_src, flat_out, *geometry)
            else:
                dtype = flat_src.dtype
                valid = np.ones((1, 1), np.uint8) if valid_src is None else \
                    valid_src.contiguous().view(torch.uint8).reshape(1, -1).numpy()
                _permute_affine(flat_src, flat_out, valid, valid_src is not None, spec.gain.astype(dtype),
                                spec.bias.astype(dtype), *geometry)
    return out


@nb.njit(cache=True, inline="always")
def _row(d, a, v, s, st, n, affine, has_valid, g, b):
    """``d[x] = a[s + x * st]`` (``st`` = +-1) for ``x < n``, through ``g * . + b`` when ``affine``
    (on voxels ``v`` marks valid when ``has_valid``). Unsigned indices with the step known inside
    each loop: the loops vectorise (a reversed view's runtime stride keeps mirrored rows scalar; a
    signed index adds a wrap-around test per element)."""
    u = np.uint64
    if st == 1:
        if not affine:
            for x in range(n):
                d[x] = a[u(s + x)]
        elif has_valid:
            for x in range(n):
                q = u(s + x)
                d[x] = a[q] * g + b if v[q] else a[q]
        else:
            for x in range(n):
                d[x] = a[u(s + x)] * g + b
    else:
        if not affine:
            for x in range(n):
                d[x] = a[u(s - x)]
        elif has_valid:
            for x in range(n):
                q = u(s - x)
                d[x] = a[q] * g + b if v[q] else a[q]
        else:
            for x in range(n):
                d[x] = a[u(s - x)] * g + b


@nb.njit(parallel=True, cache=True)
def _permute_copy(src, out, shape, lo, hi, step, start, by, bx):
    """``out[c, z, y, x] = src[c, start + (z-lo0)*s0 + (y-lo1)*s1 + (x-lo2)*s2]`` over the region
    ``lo..hi``, in ``by`` x ``bx`` tiles (small square tiles keep a transpose's reads in cache).
    Full 16 x 16 tiles of a transpose whose output columns are source rows (``|step[1]| == 1``) move
    in registers (``transpose_tile16``), close to the speed of a plain copy (docs/performance.md)."""
    _permute_affine(src, out, np.ones((1, 1), np.uint8), False, np.ones(0, src.dtype), np.zeros(0, src.dtype),
                    shape, lo, hi, step, start, by, bx)


@nb.njit(parallel=True, cache=True)
def _permute_affine(src, out, valid, has_valid, gain, bias, shape, lo, hi, step, start, by, bx):
    """``_permute_copy`` with the value stage ``gain[c] * x + bias[c]`` on valid voxels (none when
    ``gain`` is empty: a plain copy)."""
    H, W = shape[1], shape[2]
    ny = (hi[1] - lo[1] + by - 1) // by
    affine = gain.shape[0] > 0
    for task in nb.prange(src.shape[0] * (hi[0] - lo[0]) * ny):
        c = task // ((hi[0] - lo[0]) * ny)
        rest = task - c * (hi[0] - lo[0]) * ny
        z = lo[0] + rest // ny
        y_lo = lo[1] + (rest - (rest // ny) * ny) * by
        y_hi = min(hi[1], y_lo + by)
        g = gain[c] if affine else src[0, 0]
        b = bias[c] if affine else src[0, 0]
        tile_valid = np.empty(TILE * TILE, valid.dtype)
        for x_lo in range(lo[2], hi[2], min(bx, hi[2] - lo[2])):
            x_hi = min(hi[2], x_lo + bx)
            n = x_hi - x_lo
            if n == TILE and y_hi - y_lo == TILE and (step[1] == 1 or step[1] == -1):
                s = start + (z - lo[0]) * step[0] + (y_lo - lo[1]) * step[1] + (x_lo - lo[2]) * step[2]
                o = (z * H + y_lo) * W + x_lo                 # out[y_lo + k, x_lo + i] = src[s + i*step2 + k*step1]
                if step[1] == 1:
                    transpose_tile16(src[c], s, step[2], out[c], o, W)
                    if has_valid:                         # the tile's validity, transposed alike
                        transpose_tile16(valid[0], s, step[2], tile_valid, 0, TILE)
                else:                                     # read each run upwards: its rows land bottom-up
                    transpose_tile16(src[c], s - (TILE - 1), step[2], out[c], o + (TILE - 1) * W, -W)
                    if has_valid:
                        transpose_tile16(valid[0], s - (TILE - 1), step[2], tile_valid, (TILE - 1) * TILE, -TILE)
                if affine:                                # the value stage on the tile, while it is in L1
                    for k in range(TILE):
                        d = out[c, o + k * W:o + k * W + TILE]
                        if has_valid:
                            for i in range(TILE):
                                d[i] = d[i] * g + b if tile_valid[k * TILE + i] else d[i]
                        else:
                            for i in range(TILE):
                                d[i] = d[i] * g + b
                continue
            for y in range(y_lo, y_hi):
                s = start + (z - lo[0]) * step[0] + (y - lo[1]) * step[1] + (x_lo - lo[2]) * step[2]
                o = (z * H + y) * W + x_lo
                d = out[c, o:o + n]
                if step[2] == 1 or step[2] == -1:         # rows, kept or mirrored: vectorised
                    _row(d, src[c], valid[0], s, step[2], n, affine, has_valid, g, b)
                else:                                     # a transpose tile: short strided runs
                    st = step[2]
                    if not affine:
                        for x in range(n):
                            d[x] = src[c, s + x * st]
                    elif has_valid:
                        for x in range(n):
                            q = s + x * st
                            d[x] = src[c, q] * g + b if valid[0, q] else src[c, q]
                    else:
                        for x in range(n):
                            d[x] = src[c, s + x * st] * g + b


def _exact_torch(spec: LayerSpec, perm, lo, hi, src_lo, flips, out_shape) -> torch.Tensor:
    data = spec.data.permute(0, *[1 + p for p in perm])
    region = data
    for i in range(len(perm)):
        region = region.narrow(i + 1, src_lo[i], hi[i] - lo[i]) if hi[i] > lo[i] else region.narrow(i + 1, 0, 0)
    if flips:
        region = torch.flip(region, flips)
    full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(len(perm)))
    if full:  # a fresh contiguous tensor either way
        return region.contiguous() if flips else region.clone(memory_format=torch.contiguous_format)
    fill = False if spec.kind == "valid" else spec.fill
    out = torch.full((spec.data.shape[0],) + tuple(out_shape), fill, dtype=spec.data.dtype,
                     device=spec.data.device)
    out[(slice(None),) + tuple(slice(lo[i], hi[i]) for i in range(len(perm)))] = region
    return out
