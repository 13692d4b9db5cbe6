"""The CPU path: one parallel numba kernel for every layer, coordinates interpolated from the
coordinate lattice on the fly."""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Callable

import numba as nb
import numpy as np
import torch

from ..maps import PendingMap, coordinate_lattice
from . import parallel_lock
from .memory import empty_like_numpy
from .spec import INTENSITY_MODES, LABEL_MODES, LayerSpec, shape3

__all__ = ["resample_cpu", "TILE_W"]

#: Output tile width of the CPU kernel. A rotated map walks a full-width output row across up to W
#: source rows (one cache line and one 4 KiB page each); tiles keep a row's source lines in cache for
#: the next row. 256 was the fastest width measured (docs/performance.md).
TILE_W = 256


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


#: What ``_warp_rows`` reads of the grids: output rows and columns, source shape and plane size, and
#: the coordinate lattice's steps and node counts.
Geometry = namedtuple("Geometry", "H W Ds Hs Ws plane Lz Ly Lx nz ny nx")
#: A tile's scratch buffers, owned by its thread: one lattice row, then per output voxel the base
#: offset, the fractions, inside, the 8 tap weights and the inverse weight sum.
Scratch = namedtuple("Scratch", "row base tx ty tz inside ew inv")
#: The channels in and out, by role, with their modes and fills.
Channels = namedtuple("Channels", "img img_mode img_fill out_img lab lab_mode lab_fill out_lab val out_val Ci Cl Cv "
                                  "weighted")


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
    geometry = Geometry(H, W, Ds, Hs, Ws, plane, Lz, Ly, Lx, nz, ny, nx)
    channels = Channels(img, img_mode, img_fill, out_img, lab, lab_mode, lab_fill, out_lab, val, out_val, Ci, Cl, Cv,
                        weighted)
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
        _warp_rows(blk * block, min(rows, (blk + 1) * block), col * tw, min(W, (col + 1) * tw), coords, geometry,
                   Scratch(row, base, tx, ty, tz, inside, ew, inv), channels)


@nb.njit(cache=True, error_model="numpy", fastmath=True)
def _warp_rows(r_lo, r_hi, xs, xe, coords, geometry, scratch, channels):
    """Columns ``xs .. xe - 1`` of output rows ``r_lo .. r_hi - 1`` (row ``r`` = z * H + y) of
    ``_warp_kernel``, with caller-owned (rows, xe - xs) scratch: coordinates and validity for every
    row first, then each channel across all rows. One call per tile keeps per-call overhead (array
    refcounts shared between threads) off the per-row path."""
    H, W, Ds, Hs, Ws, plane, Lz, Ly, Lx, nz, ny, nx = geometry
    row, base2, tx2, ty2, tz2, inside2, ew2, inv2 = scratch
    img, img_mode, img_fill, out_img, lab, lab_mode, lab_fill, out_lab, val, out_val, Ci, Cl, Cv, weighted = channels
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
    # crosses a source row every few pixels, which the hardware prefetcher does not follow;
    # steeper maps read columns, where it only costs
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
    ``_warp_rows`` LLVM turned this loop into vector gathers, slower than scalar loads. Unsigned
    offsets skip numba's negative-index wraparound per tap."""
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


def resample_cpu(specs: list[LayerSpec], pending: PendingMap) -> list[torch.Tensor]:
    coords, steps = coordinate_lattice(pending)
    src3, out3 = shape3(pending.source.shape), shape3(pending.space.shape)
    wide = any(s.kind == "intensity" and s.data.dtype in (torch.float64, torch.int32, torch.int64) for s in specs)
    work = np.float64 if wide else np.float32                 # float32 unless the data needs more
    img = _stack(specs, "intensity", work, src3)
    lab = _stack(specs, "label", _label_dtype(specs), src3)
    val = _stack(specs, "valid", np.uint8, src3)

    def per_channel(kind: str, f: Callable[[LayerSpec], object]) -> np.ndarray:
        return np.array([f(s) for s in specs if s.kind == kind for _ in range(s.data.shape[0])])

    img_mode = per_channel("intensity", lambda s: INTENSITY_MODES[s.mode]).astype(np.int64).reshape(-1)
    img_fill = per_channel("intensity", lambda s: s.fill).astype(work).reshape(-1)
    lab_mode = per_channel("label", lambda s: LABEL_MODES[s.mode]).astype(np.int64).reshape(-1)
    lab_fill = per_channel("label", lambda s: s.fill).astype(lab.dtype).reshape(-1)

    def flat(a: np.ndarray) -> np.ndarray:
        return a.reshape(a.shape[0], math.prod(a.shape[1:]))

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
