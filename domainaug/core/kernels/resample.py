"""The one resampler: every layer of a sample, from one pending coordinate map, in one pass.

Interpolation is decided by the layer's role (and its ``interpolation`` attribute):

- INTENSITY: ``linear`` (default), ``cubic`` (Catmull-Rom, a=-0.5) or ``nearest``; border voxels
  are clamped; outside the field of view the layer's ``fill``. Where the sample has a VALID layer,
  only valid source voxels contribute (normalised weights), so nodata never leaks into data.
- LABEL: ``nearest`` (default, see ``DEFAULT_LABEL_INTERPOLATION``) or ``argmax``
  (one-hot-linear-argmax: the label with the largest summed linear weight among the 8 (3D) or 4
  (2D) neighbours, so no new value is ever produced and the cost does not depend on the number of
  labels; smoother boundaries, but it can erode 1-voxel-thin structures).
- VALID: true where the point lies in the field of view and the linear weight of valid source
  voxels is at least 1/2.

A point is in the field of view when it lies within the voxels' extent, ``[-0.5, n - 0.5]`` in
index units along every axis (as in ITK).

The map itself is evaluated exactly at the nodes of a coarse lattice aligned with the output grid
(``coordinate_lattice``: the corners for an affine map, a few voxels apart with fields) and
interpolated linearly in between; no full-size sampling grid is materialised. Paths, chosen by the
data's device (never by a flag): on the CPU a parallel numba kernel; on other devices the same
arithmetic in torch over slabs. A map that is an exact signed permutation of voxels with integer
offsets (flip, rot90, crop, pad and their compositions) is done by copying, with no interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import torch

from ..maps import PendingMap, coordinate_lattice
from . import parallel_lock
from .memory import empty, empty_like_numpy
from .simd import TILE, transpose_tile16

__all__ = ["resample_layers", "LayerSpec", "passes", "cast", "exact_full"]

INTENSITY_MODES = {"linear": 0, "cubic": 1, "nearest": 2}
LABEL_MODES = {"nearest": 0, "argmax": 1}
_EPS = 1e-6
#: Output tile width of the CPU kernel. A rotated map walks a full-width output row across up to W
#: source rows (one cache line and one 4 KiB page each); tiles keep a row's source lines in cache for
#: the next row. 12x1024x1024 bilinear, mean over 8 angles: 29 ms with full rows, 22 ms with 256
#: (64: 33 ms, 128: 26 ms; per-angle numbers in the issue notes; benchmarks/bench_rs.py).
TILE_W = 256

_counter = {"passes": 0}


def passes() -> int:
    """How many resampling passes have run in this process (for tests of lazy fusion)."""
    return _counter["passes"]


@dataclass(frozen=True)
class LayerSpec:
    """What the resampler needs to know about one layer."""

    data: torch.Tensor          # (C, *spatial)
    kind: str                   # "intensity" | "label" | "valid"
    mode: str                   # an INTENSITY_MODES or LABEL_MODES key ("valid" for VALID)
    fill: float
    gain: np.ndarray | None = None   # a value stage (C,): x -> gain * x + bias on valid voxels
    bias: np.ndarray | None = None


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Exact path: signed permutations with integer offsets.
# ---------------------------------------------------------------------------------------------
def _exact_plan(pending: PendingMap):
    """``(perm, sign, offset)`` with ``src[perm[i]] = sign[i] * out[i] + offset[i]``, or ``None``."""
    if pending.n_fields:
        return None
    m = pending.source.inverse @ (pending.stages[0] if pending.stages else np.eye(pending.space.ndim + 1)) \
        @ pending.space.affine
    n = pending.space.ndim
    lin, off = m[:n, :n], m[:n, n]
    rounded = np.round(lin)
    if not np.allclose(lin, rounded, rtol=0, atol=1e-9) or not np.allclose(off, np.round(off), rtol=0, atol=1e-6):
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
    plan = _exact_plan(pending)
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
        lo.append(j_lo), hi.append(max(j_lo, j_hi))
        src_lo.append(min(s * j_lo + o, s * (max(j_lo, j_hi) - 1) + o))
        if s == -1:
            flips.append(i + 1)
    return lo, hi, src_lo, flips


def _exact(specs: list[LayerSpec], pending: PendingMap, plan) -> list[torch.Tensor]:
    perm, sign, offset = plan
    out_shape = pending.space.shape
    lo, hi, src_lo, flips = _exact_region(pending, plan)
    full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(len(perm)))
    rows_kept = perm[-1] == len(perm) - 1 and sign[-1] == 1     # output rows are source rows: memcpy speed
    cpu = specs[0].data.device.type == "cpu"
    valid_src = next((s.data for s in specs if s.kind == "valid"), None)
    results = []
    for spec in specs:
        # torch for plain copies and crops; the blocked numba copy for transposes, mirrors (torch.flip
        # of whole rows ran 1.6x slower) and value stages, which ride along with the copy
        # (float16/bfloat16 have no numpy/numba copy: torch)
        numba_ok = spec.data.dtype not in (torch.float16, torch.bfloat16)
        if cpu and numba_ok and (not rows_kept or flips or spec.gain is not None):
            results.append(_exact_cpu(spec, plan, lo, hi, out_shape, valid_src))
        else:
            results.append(_exact_torch(spec, perm, lo, hi, src_lo, flips, out_shape))
    valid = next((r for r, s in zip(results, specs) if s.kind == "valid"), None)
    if not cpu:
        results = [_apply_values(r, s, valid) for r, s in zip(results, specs)]
    if valid is not None and not full:  # new voxels hold the fill (a permutation keeps canonical nodata)
        results = [torch.where(valid, r, torch.full_like(r, s.fill)) if s.kind == "intensity" else r
                   for r, s in zip(results, specs)]
    return results


def _apply_values(out: torch.Tensor, spec: LayerSpec, valid: torch.Tensor | None) -> torch.Tensor:
    """The layer's value stage applied after resampling (paths other than the CPU exact copy)."""
    if spec.gain is None:
        return out
    shape = (-1,) + (1,) * (out.dim() - 1)
    gain = torch.as_tensor(spec.gain, dtype=out.dtype, device=out.device).view(shape)
    bias = torch.as_tensor(spec.bias, dtype=out.dtype, device=out.device).view(shape)
    new = out * gain + bias
    return new if valid is None else torch.where(valid, new, out)


def _exact_cpu(spec: LayerSpec, plan, lo, hi, out_shape, valid_src: torch.Tensor | None = None) -> torch.Tensor:
    """One contiguous output from signed source strides, for transposes and mirrored rows (a blocked
    copy; torch would write them in the source's layout and need a second copy). A value stage
    (``spec.gain``) is applied in the same pass, on voxels ``valid_src`` marks valid."""
    perm, sign, offset = plan
    src = spec.data.contiguous()
    strides = src.stride()[1:]
    n = len(perm)
    fill = False if spec.kind == "valid" else spec.fill
    full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(n))
    out = empty((src.shape[0],) + tuple(out_shape), src.dtype) if full else \
        torch.full((src.shape[0],) + tuple(out_shape), fill, dtype=src.dtype)
    step = [sign[i] * strides[perm[i]] for i in range(n)]                     # source step per output axis
    start = sum(strides[perm[i]] * (sign[i] * lo[i] + offset[i]) for i in range(n))
    lo3, hi3, step3 = ([0] + lo, [1] + hi, [0] + step) if n == 2 else (lo, hi, step)
    shape3 = (1,) + tuple(out_shape) if n == 2 else tuple(out_shape)
    view = (lambda t: t.view(torch.uint8)) if src.dtype == torch.bool else (lambda t: t)
    if all(h > l for l, h in zip(lo3, hi3)):
        # transposes: 16 x 16 tiles (in registers where the output's columns are source rows, else
        # scalar; 8 x 8 was the best scalar tile); rows kept or mirrored: 8 whole rows
        tile = (8, 1 << 30) if abs(step3[2]) == 1 else (TILE, TILE) if abs(step3[1]) == 1 else (8, 8)
        geometry = (np.array(shape3, np.int64), np.array(lo3, np.int64), np.array(hi3, np.int64),
                    np.array(step3, np.int64), int(start), tile[0], tile[1])
        flat_src, flat_out = view(src).reshape(src.shape[0], -1).numpy(), view(out).reshape(out.shape[0], -1).numpy()
        with parallel_lock():
            if spec.gain is None:
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
    each loop: the loops vectorise (a reversed view's runtime stride kept mirrored rows scalar, at
    ~2.3x a copy; a signed index adds a wrap-around test per element)."""
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
    in registers (``transpose_tile16``): 12x1024x1024 float32 in ~4 ms instead of 10-16 ms (a copy:
    ~2.5 ms)."""
    _permute_affine(src, out, np.ones((1, 1), np.uint8), False, np.ones(0, src.dtype), np.zeros(0, src.dtype),
                    shape, lo, hi, step, start, by, bx)


@nb.njit(parallel=True, cache=True)
def _permute_affine(src, out, valid, has_valid, gain, bias, shape, lo, hi, step, start, by, bx):
    """``_permute_copy`` with the value stage ``gain[c] * x + bias[c]`` on valid voxels (none when
    ``gain`` is empty: a plain copy)."""
    D, H, W = shape[0], shape[1], shape[2]
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


# ---------------------------------------------------------------------------------------------
# CPU path: numba kernel, coordinates computed on the fly.
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", error_model="numpy")
def _cubic_w(f):
    return (((-0.5 * f + 1.0) * f - 0.5) * f, (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f, (0.5 * f - 0.5) * f * f)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _argmax_label(l0, l1, l2, l3, l4, l5, l6, l7, w0, w1, w2, w3, w4, w5, w6, w7):
    """The label with the largest summed weight among 8 taps (ties: the lower tap index)."""
    labs = (l0, l1, l2, l3, l4, l5, l6, l7)
    ws = (w0, w1, w2, w3, w4, w5, w6, w7)
    best = -1.0
    pick = l0
    for t in range(8):
        lt = labs[t]
        score = 0.0
        for u in range(8):
            if labs[u] == lt:
                score += ws[u]
        if score > best + 1e-12:
            best = score
            pick = lt
    return pick


@nb.njit(parallel=True, cache=True, error_model="numpy", fastmath=True)
def _warp_kernel(coords, steps, out_shape, src_shape,
                 img, img_mode, img_fill, out_img,
                 lab, lab_mode, lab_fill, out_lab,
                 val, out_val, weighted, tile_w):
    """One pass: coordinates from the lattice, then every intensity, label and valid channel.
    ``weighted``: interpolate intensities over valid taps only (False when the source is valid
    everywhere, e.g. a VALID layer just added to mark what a rotation brings in: plain taps then).

    Arrays are flat per channel: ``img`` (Ci, Vs), ``out_img`` (Ci, V), etc. The output is cut into
    tiles of ``tile_w`` columns by up to min(128, 32768 // tile_w) rows; each tile is done in simple loops
    (coordinates -> taps -> each channel) that the compiler can vectorise.
    """
    D, H, W = out_shape[0], out_shape[1], out_shape[2]
    Ds, Hs, Ws = src_shape[0], src_shape[1], src_shape[2]
    nz, ny, nx = coords.shape[1], coords.shape[2], coords.shape[3]
    Lz, Ly, Lx = steps[0], steps[1], steps[2]
    Ci = img.shape[0]
    Cl = lab.shape[0]
    Cv = val.shape[0]
    plane = Hs * Ws
    rows = D * H
    tw = min(W, tile_w)
    cols = (W + tw - 1) // tw
    # rows per tile: channels are processed one at a time across the whole tile, so consecutive rows
    # reuse each source plane's cache lines (channels inside the row loop thrashed the cache)
    block = max(1, min(128, 32768 // tw))
    tiles = (rows + block - 1) // block
    for t in nb.prange(tiles * cols):
        blk, col = t // cols, t % cols
        base = np.empty((block, tw), dtype=np.int64)
        tx = np.empty((block, tw), dtype=np.float32)
        ty = np.empty((block, tw), dtype=np.float32)
        tz = np.empty((block, tw), dtype=np.float32)
        inside = np.empty((block, tw), dtype=np.bool_)
        ew = np.empty((block, 8, tw), dtype=np.float32)
        inv = np.empty((block, tw), dtype=np.float32)
        row = np.empty((3, nx))
        _warp_rows(blk * block, min(rows, (blk + 1) * block), col * tw, min(W, (col + 1) * tw), H, W, Ds, Hs, Ws,
                   plane, coords, Lz, Ly, Lx, nz, ny, nx, row, base, tx, ty, tz, inside, ew, inv, img, img_mode,
                   img_fill, out_img, lab, lab_mode, lab_fill, out_lab, val, out_val, Ci, Cl, Cv, weighted)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def _warp_rows(r_lo, r_hi, xs, xe, H, W, Ds, Hs, Ws, plane, coords, Lz, Ly, Lx, nz, ny, nx, row, base2, tx2, ty2,
               tz2, inside2, ew2, inv2, img, img_mode, img_fill, out_img, lab, lab_mode, lab_fill, out_lab, val,
               out_val, Ci, Cl, Cv, weighted):
    """Columns ``xs .. xe - 1`` of output rows ``r_lo .. r_hi - 1`` (row ``r`` = z * H + y) of
    ``_warp_kernel``, with caller-owned (rows, xe - xs) scratch: coordinates and validity for every
    row first, then each channel across all rows. One call per tile keeps per-call overhead (array
    refcounts shared between threads) off the per-row path."""
    zplane = np.empty((3, ny, nx))
    plane_z = -1
    n = xe - xs
    # The lower tap is clamped to n - 2 (fraction 1 at the last voxel), so the neighbour offsets are
    # the same for every voxel; an axis of size 1 has none.
    dx = 1 if Ws > 1 else 0
    dy = Ws if Hs > 1 else 0
    dz = plane if Ds > 1 else 0
    udx, udy = np.uint64(dx), np.uint64(dy)
    inv_lx = 1.0 / Lx
    k_lo = min(xs // Lx, nx - 2)                 # the lattice intervals this tile's columns fall in
    k_hi = min((xe - 1) // Lx, nx - 2)
    y_min, y_max, x_min, x_max = Hs, -1, Ws, -1      # the source rectangle the tile's taps read
    # A. coordinates, taps, fractions and validity, row by row
    for r in range(r_lo, r_hi):
        j = r - r_lo
        base, tx, ty, tz, inside = base2[j], tx2[j], ty2[j], tz2[j], inside2[j]
        z = r // H
        y = r - z * H
        # this row's coordinates at the tile's x nodes: the lattice interpolated in z (once per
        # slice), then y
        if z != plane_z:
            plane_z = z
            kz = min(z // Lz, nz - 2)
            fz = (z - kz * Lz) / Lz
            for c in range(3):
                for jj in range(ny):
                    for k in range(k_lo, k_hi + 2):
                        zplane[c, jj, k] = coords[c, kz, jj, k] + fz * (coords[c, kz + 1, jj, k] - coords[c, kz, jj, k])
        ky = min(y // Ly, ny - 2)
        fy = (y - ky * Ly) / Ly
        for c in range(3):
            for k in range(k_lo, k_hi + 2):
                row[c, k] = zplane[c, ky, k] + fy * (zplane[c, ky + 1, k] - zplane[c, ky, k])
        for kx in range(k_lo, k_hi + 1):         # lattice interval by interval: no division per voxel
            x_lo = kx * Lx
            x_hi = W if kx == nx - 2 else min(W, x_lo + Lx)
            z_at, y_at, x_at = row[0, kx], row[1, kx], row[2, kx]
            z_step = (row[0, kx + 1] - z_at) * inv_lx
            y_step = (row[1, kx + 1] - y_at) * inv_lx
            x_step = (row[2, kx + 1] - x_at) * inv_lx
            for x in range(max(x_lo, xs), min(x_hi, xe)):
                t = x - x_lo
                u = x - xs
                qz = z_at + t * z_step
                qy = y_at + t * y_step
                qx = x_at + t * x_step
                inside[u] = (qz >= -0.5 - 1e-6) & (qz <= Ds - 0.5 + 1e-6) & (qy >= -0.5 - 1e-6) & \
                    (qy <= Hs - 0.5 + 1e-6) & (qx >= -0.5 - 1e-6) & (qx <= Ws - 0.5 + 1e-6)
                cz = min(max(qz, 0.0), Ds - 1.0)
                cy = min(max(qy, 0.0), Hs - 1.0)
                cx = min(max(qx, 0.0), Ws - 1.0)
                z0 = min(int(cz), max(Ds - 2, 0))
                y0 = min(int(cy), max(Hs - 2, 0))
                x0 = min(int(cx), max(Ws - 2, 0))
                tz[u], ty[u], tx[u] = cz - z0, cy - y0, cx - x0
                base[u] = z0 * plane + y0 * Ws + x0
                y_min, y_max = min(y_min, y0), max(y_max, y0)
                x_min, x_max = min(x_min, x0), max(x_max, x0)
        # validity: each tap's weight times its valid flag, kept per voxel for the channels below
        o = r * W + xs
        if Cv > 0 and not weighted:
            for u in range(n):
                out_val[0, o + u] = 1 if inside[u] else 0
        elif Cv > 0:
            ew, inv = ew2[j], inv2[j]
            for u in range(n):
                i = base[u]
                a, b, c = tx[u], ty[u], tz[u]
                wsum = np.float32(0.0)
                for t in range(8):
                    bz, by, bx = (t >> 2) & 1, (t >> 1) & 1, t & 1
                    w = (c if bz else 1 - c) * (b if by else 1 - b) * (a if bx else 1 - a)
                    q = i + (dz if bz else 0) + (dy if by else 0) + (dx if bx else 0)
                    ew[t, u] = w if val[0, q] else np.float32(0.0)
                    wsum += ew[t, u]
                ok = inside[u] and wsum >= 0.5 - 1e-6
                out_val[0, o + u] = 1 if ok else 0
                inv[u] = np.float32(1.0) / wsum if ok else np.float32(0.0)
    sink = np.zeros(1, np.float32)
    box = (y_min, y_max, x_min, x_max)
    # pre-read when the tile's rows run within 45 degrees of the source rows: each output row then
    # crosses a source row every few pixels, which the hardware prefetcher does not follow
    # (1 degree: 31 -> 16 ms for 12x1024x1024); steeper maps read columns, where it only costs
    # (and not when the map shrinks the source: the box then holds rows no tap reads)
    touch = dz == 0 and y_max - y_min <= x_max - x_min and \
        (y_max - y_min + 2) * (x_max - x_min + 2) <= 3 * (r_hi - r_lo) * n
    # B. intensity: one channel at a time over all the tile's rows
    for c in range(Ci):
        fill = img_fill[c]
        mode = img_mode[c]
        if mode == 0 and not weighted and touch:
            _touch(img[c], box, Ws, dx, dy, sink)
        for r in range(r_lo, r_hi):
            j = r - r_lo
            base, tx, ty, tz, inside = base2[j, :n], tx2[j, :n], ty2[j, :n], tz2[j, :n], inside2[j, :n]
            o = r * W + xs
            if mode == 0 and not weighted and dz == 0:       # 2D: bilinear, 4 taps
                _bilinear_row(img[c], out_img[c, o:o + n], base, tx, ty, inside, fill, udx, udy)
            elif mode == 0 and not weighted:
                for u in range(n):
                    i = base[u]
                    a, b, cc = tx[u], ty[u], tz[u]
                    p0 = img[c, i]
                    p1 = img[c, i + dy]
                    p2 = img[c, i + dz]
                    p3 = img[c, i + dz + dy]
                    v0 = p0 + a * (img[c, i + dx] - p0)
                    v1 = p1 + a * (img[c, i + dy + dx] - p1)
                    v2 = p2 + a * (img[c, i + dz + dx] - p2)
                    v3 = p3 + a * (img[c, i + dz + dy + dx] - p3)
                    u0 = v0 + b * (v1 - v0)
                    u1 = v2 + b * (v3 - v2)
                    v = u0 + cc * (u1 - u0)
                    out_img[c, o + u] = v if inside[u] else fill
            elif mode == 0:                                  # linear over valid taps only
                ew, inv = ew2[j], inv2[j]
                for u in range(n):
                    i = base[u]
                    acc = (ew[0, u] * img[c, i] + ew[1, u] * img[c, i + dx] + ew[2, u] * img[c, i + dy]
                           + ew[3, u] * img[c, i + dy + dx])
                    if dz != 0:
                        acc += (ew[4, u] * img[c, i + dz] + ew[5, u] * img[c, i + dz + dx]
                                + ew[6, u] * img[c, i + dz + dy] + ew[7, u] * img[c, i + dz + dy + dx])
                    out_img[c, o + u] = acc * inv[u] if inv[u] > 0 else fill
            else:
                for u in range(n):
                    ok = out_val[0, o + u] == 1 if Cv > 0 else inside[u]
                    if not ok:
                        out_img[c, o + u] = fill
                        continue
                    out_img[c, o + u] = _sample_general(img, val, c, mode, Cv if weighted else 0, base[u], dx, dy, dz,
                                                        tx[u], ty[u], tz[u], Ds, Hs, Ws)
    # C. labels: one channel at a time over all the tile's rows
    for c in range(Cl):
        for r in range(r_lo, r_hi):
            j = r - r_lo
            base, tx, ty, tz, inside = base2[j], tx2[j], ty2[j], tz2[j], inside2[j]
            o = r * W + xs
            for u in range(n):
                out_lab[c, o + u] = _label_at(lab, c, lab_mode[c], lab_fill[c], inside[u], base[u], dx, dy, dz,
                                              tx[u], ty[u], tz[u])


@nb.njit(cache=True, error_model="numpy")
def _touch(src, box, Ws, dx, dy, out):
    """Read one value per cache line of the source rectangle ``box`` = (y_min, y_max, x_min,
    x_max) of lower taps (and their neighbours), row by row in address order, so the lines are in
    cache when a rotated map reads them out of order."""
    y_min, y_max, x_min, x_max = box
    acc = np.float32(0.0)
    for y in range(y_min, y_max + (1 if dy else 0) + 1):
        start = y * Ws
        for k in range(start + x_min, start + x_max + (1 if dx else 0) + 1, 16):
            acc += src[k]
    out[0] = acc


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def _bilinear_row(src, dst, base, tx, ty, inside, fill, udx, udy):
    """One output row of a 2D bilinear warp. A function of its own, compiled alone: inside
    ``_warp_rows`` LLVM turned this loop into vector gathers, which ran 2x slower than scalar loads
    on the AMD EPYC here. Unsigned offsets skip numba's negative-index wraparound per tap."""
    for x in range(dst.shape[0]):
        i = np.uint64(base[x])
        a, b = tx[x], ty[x]
        p0 = src[i]
        p1 = src[i + udy]
        v0 = p0 + a * (src[i + udx] - p0)
        v1 = p1 + a * (src[i + udy + udx] - p1)
        v = v0 + b * (v1 - v0)
        dst[x] = v if inside[x] else fill


@nb.njit(cache=True, inline="always", error_model="numpy")
def _label_at(lab, c, mode, fill, ins, i, dx, dy, dz, a, b, cc):
    """The label at one point: ``fill`` outside; nearest: the tap with the largest weight; argmax:
    the common value when all 8 taps agree, else the label with the largest summed weight."""
    if not ins:
        return fill
    if mode == 0:                     # nearest: the largest-weight tap, ties to the lower one
        return lab[c, i + (dx if a > 0.5 else 0) + (dy if b > 0.5 else 0) + (dz if cc > 0.5 else 0)]
    l0, l1, l2, l3 = lab[c, i], lab[c, i + dx], lab[c, i + dy], lab[c, i + dy + dx]
    if dz == 0 and ((l0 ^ l1) | (l0 ^ l2) | (l0 ^ l3)) == 0:
        return l0                     # 2D: the 4 taps agree
    l4, l5, l6, l7 = lab[c, i + dz], lab[c, i + dz + dx], lab[c, i + dz + dy], lab[c, i + dz + dy + dx]
    if ((l0 ^ l1) | (l0 ^ l2) | (l0 ^ l3) | (l0 ^ l4) | (l0 ^ l5) | (l0 ^ l6) | (l0 ^ l7)) == 0:
        return l0                     # branch-free test: inside a region every tap agrees
    a, b, cc = np.float64(a), np.float64(b), np.float64(cc)
    w0, w1, w2, w3 = (1 - cc) * (1 - b) * (1 - a), (1 - cc) * (1 - b) * a, (1 - cc) * b * (1 - a), (1 - cc) * b * a
    w4, w5, w6, w7 = cc * (1 - b) * (1 - a), cc * (1 - b) * a, cc * b * (1 - a), cc * b * a
    return _argmax_label(l0, l1, l2, l3, l4, l5, l6, l7, w0, w1, w2, w3, w4, w5, w6, w7)


@nb.njit(cache=True, error_model="numpy")
def _sample_general(img, val, c, mode, Cv, i, dx, dy, dz, a, b, cc, Ds, Hs, Ws):
    """Cubic, nearest, and linear over valid taps only (normalised weights)."""
    a, b, cc = np.float64(a), np.float64(b), np.float64(cc)
    plane = Hs * Ws
    cz = i // plane + cc                    # the clamped position, from the lower tap and fractions
    cy = (i % plane) // Ws + b
    cx = i % Ws + a
    offs = (i, i + dx, i + dy, i + dy + dx, i + dz, i + dz + dx, i + dz + dy, i + dz + dy + dx)
    ws = ((1 - cc) * (1 - b) * (1 - a), (1 - cc) * (1 - b) * a, (1 - cc) * b * (1 - a), (1 - cc) * b * a,
          cc * (1 - b) * (1 - a), cc * (1 - b) * a, cc * b * (1 - a), cc * b * a)
    if mode == 1:
        iz = int(np.floor(cz))
        iy = int(np.floor(cy))
        ix = int(np.floor(cx))
        wz = _cubic_w(cz - iz)
        wy = _cubic_w(cy - iy)
        wx = _cubic_w(cx - ix)
        acc = 0.0
        all_valid = True
        for p in range(4):
            sz = min(max(iz - 1 + p, 0), Ds - 1)
            for q in range(4):
                sy = min(max(iy - 1 + q, 0), Hs - 1)
                wpq = wz[p] * wy[q]
                for e in range(4):
                    sx = min(max(ix - 1 + e, 0), Ws - 1)
                    k = sz * plane + sy * Ws + sx
                    if Cv > 0 and not val[0, k]:
                        all_valid = False
                    acc += wpq * wx[e] * img[c, k]
        if all_valid:
            return acc
    if mode == 2:
        best = -1.0
        pick = 0
        for t in range(8):
            sc = ws[t] * (1.0 if Cv == 0 or val[0, offs[t]] else 0.0)
            if sc > best:
                best = sc
                pick = t
        return img[c, offs[pick]]
    acc = 0.0
    wsum = 0.0
    for t in range(8):
        wv = ws[t] * (1.0 if Cv == 0 or val[0, offs[t]] else 0.0)
        acc += wv * img[c, offs[t]]
        wsum += wv
    return acc / wsum


def _stack(specs: list[LayerSpec], kind: str, dtype, src3) -> np.ndarray:
    """The channels of every layer of one kind, as one C-contiguous (C, D, H, W) array (no copy for
    a single layer already in ``dtype``)."""
    chosen = [s for s in specs if s.kind == kind]
    if not chosen:
        return np.zeros((0,) + src3, dtype=dtype)
    arrays = [s.data.detach().cpu().numpy().reshape((s.data.shape[0],) + src3) for s in chosen]
    arrays = [a.astype(dtype, copy=False) for a in arrays]
    stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return np.ascontiguousarray(stacked)


def _label_dtype(specs: list[LayerSpec]):
    dtypes = [s.data.dtype for s in specs if s.kind == "label"]
    if dtypes and all(d == torch.uint8 for d in dtypes):
        return np.uint8
    return np.int64


def _cpu(specs: list[LayerSpec], pending: PendingMap) -> list[torch.Tensor]:
    coords, steps = coordinate_lattice(pending)
    src3, out3 = _shape3(pending.source.shape), _shape3(pending.space.shape)
    wide = any(s.kind == "intensity" and s.data.dtype in (torch.float64, torch.int32, torch.int64) for s in specs)
    work = np.float64 if wide else np.float32                 # float32 unless the data needs more
    img = _stack(specs, "intensity", work, src3)
    lab = _stack(specs, "label", _label_dtype(specs), src3)
    val = _stack(specs, "valid", np.uint8, src3)
    per_channel = lambda kind, f: np.array([f(s) for s in specs if s.kind == kind for _ in range(s.data.shape[0])])
    img_mode = per_channel("intensity", lambda s: INTENSITY_MODES[s.mode]).astype(np.int64).reshape(-1)
    img_fill = per_channel("intensity", lambda s: s.fill).astype(work).reshape(-1)
    lab_mode = per_channel("label", lambda s: LABEL_MODES[s.mode]).astype(np.int64).reshape(-1)
    lab_fill = per_channel("label", lambda s: s.fill).astype(lab.dtype).reshape(-1)
    flat = lambda a: a.reshape(a.shape[0], math.prod(a.shape[1:]))
    size = math.prod(out3)
    out_img = empty_like_numpy((img.shape[0], size), work)
    out_lab = empty_like_numpy((lab.shape[0], size), lab.dtype)
    out_val = empty_like_numpy((val.shape[0], size), np.uint8)
    with parallel_lock():
        _warp_kernel(coords, steps, np.array(out3, np.int64), np.array(src3, np.int64),
                     flat(img), img_mode, img_fill, out_img, flat(lab), lab_mode, lab_fill, out_lab, flat(val), out_val,
                     bool(val.shape[0] > 0 and not val.all()), TILE_W)
    outputs = {"intensity": out_img, "label": out_lab, "valid": out_val}
    cursor = {"intensity": 0, "label": 0, "valid": 0}
    results = []
    for spec in specs:
        c = spec.data.shape[0]
        start = cursor[spec.kind]
        cursor[spec.kind] += c
        results.append(torch.from_numpy(outputs[spec.kind][start:start + c].reshape((c,) + pending.space.shape)))
    return results


# ---------------------------------------------------------------------------------------------
# Torch path (any device): the same arithmetic over slabs of output voxels.
# ---------------------------------------------------------------------------------------------
def _coords_torch(coords: torch.Tensor, steps, out3, lin: torch.Tensor) -> torch.Tensor:
    """Source indices (N, 3) of flat output indices, interpolated from the coordinate lattice
    exactly as the CPU kernel does."""
    z, y, x = lin // (out3[1] * out3[2]), (lin // out3[2]) % out3[1], lin % out3[2]
    n = coords.shape[1:]
    k = [torch.clamp(v // st, max=nn - 2) for v, st, nn in zip((z, y, x), steps, n)]
    f = [(v - kk * st).double() / st for v, kk, st in zip((z, y, x), k, steps)]
    out = torch.zeros((lin.numel(), 3), dtype=torch.float64, device=lin.device)
    for t in range(8):
        bits = [(t >> 2) & 1, (t >> 1) & 1, t & 1]
        w = torch.ones_like(f[0])
        for a in range(3):
            w = w * (f[a] if bits[a] else 1 - f[a])
        out += w[:, None] * coords[:, k[0] + bits[0], k[1] + bits[1], k[2] + bits[2]].T
    return out


def _cubic_torch(f: torch.Tensor) -> list[torch.Tensor]:
    return [((-0.5 * f + 1.0) * f - 0.5) * f, (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f, (0.5 * f - 0.5) * f * f]


def _torch(specs: list[LayerSpec], pending: PendingMap, chunk: int = 1 << 18) -> list[torch.Tensor]:
    device = specs[0].data.device
    coords_np, steps = coordinate_lattice(pending)
    coords = torch.from_numpy(coords_np).to(device)
    src3, out3 = _shape3(pending.source.shape), _shape3(pending.space.shape)
    src_max = torch.tensor([s - 1 for s in src3], dtype=torch.float64, device=device)
    flats = [s.data.reshape(s.data.shape[0], -1) for s in specs]
    outs = [torch.empty((s.data.shape[0], math.prod(out3)), dtype=s.data.dtype, device=device) for s in specs]
    valid_spec = next((s for s in specs if s.kind == "valid"), None)
    valid_flat = valid_spec.data.reshape(-1) if valid_spec is not None else None
    total = math.prod(out3)
    for start in range(0, total, chunk):
        lin = torch.arange(start, min(total, start + chunk), device=device)
        s = _coords_torch(coords, steps.tolist(), out3, lin)
        inside = ((s >= -0.5 - _EPS) & (s <= src_max + 0.5 + _EPS)).all(1)
        c = torch.minimum(s.clamp(min=0), src_max)
        i0 = torch.minimum(c.floor().long(), (src_max.long() - 1).clamp(min=0))   # as the CPU kernel
        i1 = torch.minimum(i0 + 1, src_max.long())
        f = c - i0
        corner_idx, corner_w = [], []
        for t in range(8):
            bits = [(t >> 2) & 1, (t >> 1) & 1, t & 1]
            idx = [i1[:, a] if bits[a] else i0[:, a] for a in range(3)]
            w = torch.ones_like(f[:, 0])
            for a in range(3):
                w = w * (f[:, a] if bits[a] else 1 - f[:, a])
            corner_idx.append((idx[0] * src3[1] + idx[1]) * src3[2] + idx[2])
            corner_w.append(w)
        cidx, cw = torch.stack(corner_idx, 1), torch.stack(corner_w, 1)        # (N, 8)
        if valid_flat is not None:
            vv = valid_flat[cidx].double()
            wsum = (cw * vv).sum(1)
            valid_out = inside & (wsum >= 0.5 - 1e-6)
        else:
            vv, wsum, valid_out = torch.ones_like(cw), torch.ones_like(cw[:, 0]), inside
        for spec, flat, out in zip(specs, flats, outs):
            sl = slice(start, start + lin.numel())
            if spec.kind == "valid":
                out[:, sl] = valid_out[None].to(out.dtype)
                continue
            if spec.kind == "label":
                labs = flat[:, cidx]                                           # (C, N, 8)
                if spec.mode == "nearest":
                    pick = cw.argmax(1)
                    value = labs.gather(2, pick[None, :, None].expand(labs.shape[0], -1, 1))[..., 0]
                else:
                    same = labs[..., :, None] == labs[..., None, :]             # (C, N, 8, 8)
                    score = (same.double() * cw[None, :, None, :]).sum(-1)      # (C, N, 8)
                    pick = _first_argmax(score)
                    value = labs.gather(2, pick[..., None])[..., 0]
                out[:, sl] = torch.where(inside[None], value, torch.full_like(value, spec.fill))
                continue
            vals = flat[:, cidx].double()                                      # (C, N, 8)
            if spec.mode == "nearest":
                pick = _first_argmax(cw * vv)
                value = vals.gather(2, pick[None, :, None].expand(vals.shape[0], -1, 1))[..., 0]
            else:
                value = (vals * (cw * vv)[None]).sum(-1) / wsum.clamp(min=1e-12)[None]
            if spec.mode == "cubic":
                value = _cubic_values(flat, valid_flat, c, src3, value)
            value = torch.where(valid_out[None], value, torch.full_like(value, spec.fill))
            out[:, sl] = cast(value, out.dtype)
    return [o.reshape((o.shape[0],) + tuple(pending.space.shape)) for o in outs]


def _first_argmax(score: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum along the last axis (ties go to the lower index, as in the CPU kernel)."""
    best = score.max(-1, keepdim=True).values
    n = score.shape[-1]
    order = torch.arange(n, device=score.device).expand_as(score)
    return torch.where(score >= best - 1e-12, order, torch.full_like(order, n)).min(-1).values


def _cubic_values(flat, valid_flat, c, src3, linear_value):
    i = c.floor().long()
    f = c - i
    w = [_cubic_torch(f[:, a]) for a in range(3)]
    acc = torch.zeros_like(linear_value)
    all_valid = torch.ones_like(linear_value[0], dtype=torch.bool)
    for a in range(4):
        sz = (i[:, 0] - 1 + a).clamp(0, src3[0] - 1)
        for b in range(4):
            sy = (i[:, 1] - 1 + b).clamp(0, src3[1] - 1)
            for e in range(4):
                sx = (i[:, 2] - 1 + e).clamp(0, src3[2] - 1)
                idx = (sz * src3[1] + sy) * src3[2] + sx
                acc = acc + (w[0][a] * w[1][b] * w[2][e])[None] * flat[:, idx].double()
                if valid_flat is not None:
                    all_valid &= valid_flat[idx].bool()
    return torch.where(all_valid[None], acc, linear_value)


def cast(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Values back to the layer's dtype: float32/float64 as they are, narrower floats (float16,
    bfloat16) clipped to their finite range (never Inf), integers (labels) rounded and clipped."""
    if dtype.is_floating_point:
        if value.dtype != dtype and torch.finfo(dtype).max < torch.finfo(value.dtype).max:
            top = torch.finfo(dtype).max
            value = value.clamp(-top, top)
        return value.to(dtype)
    info = torch.iinfo(dtype)
    return value.round().clamp(info.min, info.max).to(dtype)


# ---------------------------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------------------------
def resample_layers(specs: list[LayerSpec], pending: PendingMap, *, backend: str | None = None) -> list[torch.Tensor]:
    """Resample every layer through ``pending`` in one pass; returns one tensor per spec.

    ``backend`` is for tests: ``"exact"``, ``"numba"`` or ``"torch"``; by default the exact path
    when the map allows it, else numba for CPU data and torch for any other device.
    """
    _counter["passes"] += 1
    if not specs:
        return []
    plan = _exact_plan(pending) if backend in (None, "exact") else None
    if plan is not None:
        return _exact(specs, pending, plan)
    if backend == "exact":
        raise ValueError("the map is not an exact voxel permutation")
    device = specs[0].data.device
    if backend == "torch" or (backend is None and device.type != "cpu"):
        outs = _torch(specs, pending)
    else:
        outs = _cpu(specs, pending)
        outs = [cast(o, s.data.dtype) if s.kind == "intensity" else
                (o.bool() if s.kind == "valid" else o.to(s.data.dtype)) for o, s in zip(outs, specs)]
    if any(s.gain is not None for s in specs):
        valid = next((o for o, s in zip(outs, specs) if s.kind == "valid"), None)
        outs = [_apply_values(o, s, valid) for o, s in zip(outs, specs)]
    return outs

