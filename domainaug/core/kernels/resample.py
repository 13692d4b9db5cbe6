"""The one resampler: every layer of a sample, from one pending coordinate map, in one pass.

Interpolation is decided by the layer's role (and its ``interpolation`` attribute):

- INTENSITY: ``linear`` (default), ``cubic`` (Catmull-Rom, a=-0.5) or ``nearest``; border voxels
  are clamped; outside the field of view the layer's ``fill``. Where the sample has a VALID layer,
  only valid source voxels contribute (normalised weights), so nodata never leaks into data.
- LABEL: ``argmax`` (one-hot-linear-argmax: the label with the largest summed linear weight among
  the 8 (3D) or 4 (2D) neighbours, so no new value is ever produced and the cost does not depend on
  the number of labels) or ``nearest``.
- VALID: true where the point lies in the field of view and the linear weight of valid source
  voxels is at least 1/2.

A point is in the field of view when it lies within the voxels' extent, ``[-0.5, n - 0.5]`` in
index units along every axis (as in ITK).

Paths, chosen by the data's device (never by a flag): on the CPU a numba kernel computes each
sample coordinate on the fly from the affine stages and the coarse field lattices (no full-size
grid is materialised); on other devices the same arithmetic runs in torch over slabs. A map that
is an exact signed permutation of voxels with integer offsets (flip, rot90, crop, pad and their
compositions) is done by copying, with no interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import torch

from .fuse import Field, PendingMap

__all__ = ["resample_layers", "LayerSpec", "passes", "pull_back_points", "push_forward_points"]

INTENSITY_MODES = {"linear": 0, "cubic": 1, "nearest": 2}
LABEL_MODES = {"nearest": 0, "argmax": 1}
_EPS = 1e-6

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


# ---------------------------------------------------------------------------------------------
# Geometry: lift 2D to 3D (a depth-1 leading axis), build the kernel's chain.
# ---------------------------------------------------------------------------------------------
def _lift_matrix(m: np.ndarray) -> np.ndarray:
    if m.shape == (4, 4):
        return m
    out = np.eye(4)
    out[1:, 1:] = m
    return out


def _lift_field(f: Field) -> tuple[np.ndarray, np.ndarray]:
    lattice, to_lattice = f.lattice, f.to_lattice
    if lattice.shape[0] == 2:
        lifted = np.zeros((3, 1) + lattice.shape[1:], dtype=np.float32)
        lifted[1:, 0] = lattice
        return lifted, _lift_matrix(to_lattice)
    return lattice, to_lattice


def _chain(pending: PendingMap) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mats (K+1,4,4), G (K,4,4), field data flat float32, field meta (K,4) int64) in 3D index form.

    ``mats[0]`` maps output index -> world (then any stages); the last matrix ends in source index.
    """
    stages = [pending.space.affine] + list(pending.stages) + [pending.source.inverse]
    mats: list[np.ndarray] = []
    fields: list[tuple[np.ndarray, np.ndarray]] = []
    current = np.eye(4)
    for stage in stages:
        if isinstance(stage, Field):
            mats.append(current)
            fields.append(_lift_field(stage))
            current = np.eye(4)
        else:
            current = _lift_matrix(stage) @ current
    mats.append(current)
    G = np.stack([g for _, g in fields]) if fields else np.zeros((0, 4, 4))
    data = np.concatenate([f.ravel() for f, _ in fields]) if fields else np.zeros(0, np.float32)
    meta = np.zeros((len(fields), 4), dtype=np.int64)
    offset = 0
    for k, (f, _) in enumerate(fields):
        meta[k] = (offset, *f.shape[1:])
        offset += f.size
    return np.ascontiguousarray(np.stack(mats)), np.ascontiguousarray(G), data.astype(np.float32), meta


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
    if not np.allclose(lin, rounded, atol=1e-6) or not np.allclose(off, np.round(off), atol=1e-6):
        return None
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None
    perm = [int(np.nonzero(rounded[:, i])[0][0]) for i in range(n)]       # src axis for out axis i
    sign = [int(rounded[perm[i], i]) for i in range(n)]
    offset = [int(round(off[perm[i]])) for i in range(n)]
    return perm, sign, offset


def _exact(specs: list[LayerSpec], pending: PendingMap, plan) -> list[torch.Tensor]:
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
    results = []
    for spec in specs:
        data = spec.data.permute(0, *[1 + p for p in perm])
        region = data
        for i in range(len(perm)):
            region = region.narrow(i + 1, src_lo[i], hi[i] - lo[i]) if hi[i] > lo[i] else region.narrow(i + 1, 0, 0)
        if flips:
            region = torch.flip(region, flips)
        full = all(lo[i] == 0 and hi[i] == out_shape[i] for i in range(len(perm)))
        if full:  # a fresh tensor either way: torch.flip copies, otherwise clone the view
            results.append(region if flips else region.clone(memory_format=torch.contiguous_format))
            continue
        fill = False if spec.kind == "valid" else spec.fill
        out = torch.full((spec.data.shape[0],) + tuple(out_shape), fill, dtype=spec.data.dtype,
                         device=spec.data.device)
        out[(slice(None),) + tuple(slice(lo[i], hi[i]) for i in range(len(perm)))] = region
        results.append(out)
    valid = next((r for r, s in zip(results, specs) if s.kind == "valid"), None)
    if valid is not None:  # as in the interpolating paths: invalid voxels hold the fill
        results = [torch.where(valid, r, torch.full_like(r, s.fill)) if s.kind == "intensity" else r
                   for r, s in zip(results, specs)]
    return results


# ---------------------------------------------------------------------------------------------
# CPU path: numba kernel, coordinates computed on the fly.
# ---------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _field_at(fdata, off, lz, ly, lx, gz, gy, gx):
    """Trilinear lookup in a lattice stored flat as (3, lz, ly, lx), clamped at the border."""
    gz = min(max(gz, 0.0), lz - 1.0)
    gy = min(max(gy, 0.0), ly - 1.0)
    gx = min(max(gx, 0.0), lx - 1.0)
    z0 = min(int(gz), lz - 1)
    y0 = min(int(gy), ly - 1)
    x0 = min(int(gx), lx - 1)
    z1 = min(z0 + 1, lz - 1)
    y1 = min(y0 + 1, ly - 1)
    x1 = min(x0 + 1, lx - 1)
    fz, fy, fx = gz - z0, gy - y0, gx - x0
    plane = lz * ly * lx
    w000 = (1 - fz) * (1 - fy) * (1 - fx)
    w001 = (1 - fz) * (1 - fy) * fx
    w010 = (1 - fz) * fy * (1 - fx)
    w011 = (1 - fz) * fy * fx
    w100 = fz * (1 - fy) * (1 - fx)
    w101 = fz * (1 - fy) * fx
    w110 = fz * fy * (1 - fx)
    w111 = fz * fy * fx
    i000 = (z0 * ly + y0) * lx + x0
    i001 = (z0 * ly + y0) * lx + x1
    i010 = (z0 * ly + y1) * lx + x0
    i011 = (z0 * ly + y1) * lx + x1
    i100 = (z1 * ly + y0) * lx + x0
    i101 = (z1 * ly + y0) * lx + x1
    i110 = (z1 * ly + y1) * lx + x0
    i111 = (z1 * ly + y1) * lx + x1
    out = np.empty(3)
    for c in range(3):
        b = off + c * plane
        out[c] = (w000 * fdata[b + i000] + w001 * fdata[b + i001] + w010 * fdata[b + i010]
                  + w011 * fdata[b + i011] + w100 * fdata[b + i100] + w101 * fdata[b + i101]
                  + w110 * fdata[b + i110] + w111 * fdata[b + i111])
    return out


@nb.njit(cache=True, inline="always")
def _cubic_w(f):
    return (((-0.5 * f + 1.0) * f - 0.5) * f, (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f, (0.5 * f - 0.5) * f * f)


@nb.njit(parallel=True, cache=True)
def _warp_kernel(mats, G, fdata, fmeta, out_shape, src_shape,
                 img, img_mode, img_fill, out_img,
                 lab, lab_mode, lab_fill, out_lab,
                 val, out_val):
    D, H, W = out_shape[0], out_shape[1], out_shape[2]
    Ds, Hs, Ws = src_shape[0], src_shape[1], src_shape[2]
    K = G.shape[0]
    Ci = img.shape[0]
    Cl = lab.shape[0]
    Cv = val.shape[0]
    m0 = mats[0]
    for r in nb.prange(D * H):
        z = r // H
        y = r - z * H
        wts = np.empty(8)
        vz = np.empty(8, dtype=np.int64)
        vy = np.empty(8, dtype=np.int64)
        vx = np.empty(8, dtype=np.int64)
        vv = np.empty(8)
        labs = np.empty(8, dtype=lab.dtype)
        for x in range(W):
            qz = m0[0, 0] * z + m0[0, 1] * y + m0[0, 2] * x + m0[0, 3]
            qy = m0[1, 0] * z + m0[1, 1] * y + m0[1, 2] * x + m0[1, 3]
            qx = m0[2, 0] * z + m0[2, 1] * y + m0[2, 2] * x + m0[2, 3]
            for k in range(K):
                g = G[k]
                d = _field_at(fdata, fmeta[k, 0], fmeta[k, 1], fmeta[k, 2], fmeta[k, 3],
                              g[0, 0] * qz + g[0, 1] * qy + g[0, 2] * qx + g[0, 3],
                              g[1, 0] * qz + g[1, 1] * qy + g[1, 2] * qx + g[1, 3],
                              g[2, 0] * qz + g[2, 1] * qy + g[2, 2] * qx + g[2, 3])
                qz += d[0]
                qy += d[1]
                qx += d[2]
                m = mats[k + 1]
                tz = m[0, 0] * qz + m[0, 1] * qy + m[0, 2] * qx + m[0, 3]
                ty = m[1, 0] * qz + m[1, 1] * qy + m[1, 2] * qx + m[1, 3]
                tx = m[2, 0] * qz + m[2, 1] * qy + m[2, 2] * qx + m[2, 3]
                qz, qy, qx = tz, ty, tx
            inside = (qz >= -0.5 - 1e-6 and qz <= Ds - 0.5 + 1e-6 and qy >= -0.5 - 1e-6
                      and qy <= Hs - 0.5 + 1e-6 and qx >= -0.5 - 1e-6 and qx <= Ws - 0.5 + 1e-6)
            if not inside:
                for c in range(Ci):
                    out_img[c, z, y, x] = img_fill[c]
                for c in range(Cl):
                    out_lab[c, z, y, x] = lab_fill[c]
                for c in range(Cv):
                    out_val[c, z, y, x] = 0
                continue
            cz = min(max(qz, 0.0), Ds - 1.0)
            cy = min(max(qy, 0.0), Hs - 1.0)
            cx = min(max(qx, 0.0), Ws - 1.0)
            z0 = min(int(cz), Ds - 1)
            y0 = min(int(cy), Hs - 1)
            x0 = min(int(cx), Ws - 1)
            z1 = min(z0 + 1, Ds - 1)
            y1 = min(y0 + 1, Hs - 1)
            x1 = min(x0 + 1, Ws - 1)
            fz, fy, fx = cz - z0, cy - y0, cx - x0
            for t in range(8):
                bz, by, bx = (t >> 2) & 1, (t >> 1) & 1, t & 1
                vz[t] = z1 if bz else z0
                vy[t] = y1 if by else y0
                vx[t] = x1 if bx else x0
                wts[t] = (fz if bz else 1.0 - fz) * (fy if by else 1.0 - fy) * (fx if bx else 1.0 - fx)
            valid_out = True
            wsum = 1.0
            if Cv > 0:
                wsum = 0.0
                for t in range(8):
                    vv[t] = 1.0 if val[0, vz[t], vy[t], vx[t]] else 0.0
                    wsum += wts[t] * vv[t]
                valid_out = wsum >= 0.5 - 1e-9
                out_val[0, z, y, x] = 1 if valid_out else 0
            else:
                for t in range(8):
                    vv[t] = 1.0
            # --- intensity
            for c in range(Ci):
                if not valid_out:
                    out_img[c, z, y, x] = img_fill[c]
                    continue
                mode = img_mode[c]
                done = False
                if mode == 1:
                    all_valid = True
                    iz = int(np.floor(cz))
                    iy = int(np.floor(cy))
                    ix = int(np.floor(cx))
                    wz = _cubic_w(cz - iz)
                    wy = _cubic_w(cy - iy)
                    wx = _cubic_w(cx - ix)
                    acc = 0.0
                    for a in range(4):
                        sz = min(max(iz - 1 + a, 0), Ds - 1)
                        for b in range(4):
                            sy = min(max(iy - 1 + b, 0), Hs - 1)
                            wab = wz[a] * wy[b]
                            for e in range(4):
                                sx = min(max(ix - 1 + e, 0), Ws - 1)
                                if Cv > 0 and not val[0, sz, sy, sx]:
                                    all_valid = False
                                acc += wab * wx[e] * img[c, sz, sy, sx]
                    if all_valid:
                        out_img[c, z, y, x] = acc
                        done = True
                if done:
                    continue
                if mode == 2:
                    best = -1.0
                    pick = 0
                    for t in range(8):
                        s = wts[t] * vv[t]
                        if s > best:
                            best = s
                            pick = t
                    out_img[c, z, y, x] = img[c, vz[pick], vy[pick], vx[pick]]
                else:
                    acc = 0.0
                    for t in range(8):
                        acc += wts[t] * vv[t] * img[c, vz[t], vy[t], vx[t]]
                    out_img[c, z, y, x] = acc / wsum
            # --- labels
            for c in range(Cl):
                for t in range(8):
                    labs[t] = lab[c, vz[t], vy[t], vx[t]]
                if lab_mode[c] == 0:
                    best = -1.0
                    pick = 0
                    for t in range(8):
                        if wts[t] > best:
                            best = wts[t]
                            pick = t
                    out_lab[c, z, y, x] = labs[pick]
                else:
                    same = True
                    for t in range(1, 8):
                        if labs[t] != labs[0]:
                            same = False
                            break
                    if same:
                        out_lab[c, z, y, x] = labs[0]
                        continue
                    best = -1.0
                    pick = 0
                    for t in range(8):
                        s = 0.0
                        for u in range(8):
                            if labs[u] == labs[t]:
                                s += wts[u]
                        if s > best + 1e-12:
                            best = s
                            pick = t
                    out_lab[c, z, y, x] = labs[pick]


def _stack(specs: list[LayerSpec], kind: str, dtype, src3) -> tuple[np.ndarray, list[int]]:
    chosen = [s for s in specs if s.kind == kind]
    if not chosen:
        return np.zeros((0,) + src3, dtype=dtype), []
    arrays = [s.data.detach().cpu().numpy().reshape((s.data.shape[0],) + src3) for s in chosen]
    arrays = [a.astype(dtype, copy=False) for a in arrays]
    stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return np.ascontiguousarray(stacked), [s.data.shape[0] for s in chosen]


def _label_dtype(specs: list[LayerSpec]):
    dtypes = [s.data.dtype for s in specs if s.kind == "label"]
    if dtypes and all(d == torch.uint8 for d in dtypes):
        return np.uint8
    return np.int64


def _cpu(specs: list[LayerSpec], pending: PendingMap) -> list[torch.Tensor]:
    mats, G, fdata, fmeta = _chain(pending)
    src3, out3 = _shape3(pending.source.shape), _shape3(pending.space.shape)
    img, _ = _stack(specs, "intensity", np.float32, src3)
    lab, _ = _stack(specs, "label", _label_dtype(specs), src3)
    val, _ = _stack(specs, "valid", np.uint8, src3)
    per_channel = lambda kind, f: np.array([f(s) for s in specs if s.kind == kind for _ in range(s.data.shape[0])])
    img_mode = per_channel("intensity", lambda s: INTENSITY_MODES[s.mode]).astype(np.int64).reshape(-1)
    img_fill = per_channel("intensity", lambda s: s.fill).astype(np.float32).reshape(-1)
    lab_mode = per_channel("label", lambda s: LABEL_MODES[s.mode]).astype(np.int64).reshape(-1)
    lab_fill = per_channel("label", lambda s: s.fill).astype(lab.dtype).reshape(-1)
    out_img = np.empty((img.shape[0],) + out3, np.float32)
    out_lab = np.empty((lab.shape[0],) + out3, lab.dtype)
    out_val = np.empty((val.shape[0],) + out3, np.uint8)
    _warp_kernel(mats, G, fdata, fmeta, np.array(out3, np.int64), np.array(src3, np.int64),
                 img, img_mode, img_fill, out_img, lab, lab_mode, lab_fill, out_lab, val, out_val)
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
def _pull_torch(chain, q: torch.Tensor) -> torch.Tensor:
    """Map (N, 3) float64 output indices to source indices through the lifted chain."""
    mats, G, fields = chain
    q = q @ mats[0][:3, :3].T + mats[0][:3, 3]
    for k, (lattice, shape) in enumerate(fields):
        g = q @ G[k][:3, :3].T + G[k][:3, 3]
        q = q + _lattice_lookup(lattice, shape, g)
        q = q @ mats[k + 1][:3, :3].T + mats[k + 1][:3, 3]
    return q


def _lattice_lookup(lattice: torch.Tensor, shape, g: torch.Tensor) -> torch.Tensor:
    lz, ly, lx = shape
    size = torch.tensor([lz - 1, ly - 1, lx - 1], dtype=g.dtype, device=g.device)
    c = torch.minimum(torch.clamp(g, min=0), size)
    i0 = torch.minimum(c.floor().long(), size.long())
    i1 = torch.minimum(i0 + 1, size.long())
    f = c - i0
    flat = lattice.reshape(3, -1)
    out = torch.zeros_like(g)
    for t in range(8):
        bits = [(t >> 2) & 1, (t >> 1) & 1, t & 1]
        idx = [i1[:, a] if bits[a] else i0[:, a] for a in range(3)]
        w = torch.ones_like(f[:, 0])
        for a in range(3):
            w = w * (f[:, a] if bits[a] else 1 - f[:, a])
        out = out + w[:, None] * flat[:, (idx[0] * ly + idx[1]) * lx + idx[2]].T.to(g.dtype)
    return out


def _torch_chain(pending: PendingMap, device) -> tuple:
    mats, G, _, _ = _chain(pending)
    fields = []
    for stage in pending.stages:
        if isinstance(stage, Field):
            lattice, _ = _lift_field(stage)
            fields.append((torch.from_numpy(lattice).to(device), lattice.shape[1:]))
    as_t = lambda a: torch.from_numpy(a).to(device=device, dtype=torch.float64)
    return [as_t(m) for m in mats], [as_t(g) for g in G], fields


def _cubic_torch(f: torch.Tensor) -> list[torch.Tensor]:
    return [((-0.5 * f + 1.0) * f - 0.5) * f, (1.5 * f - 2.5) * f * f + 1.0,
            ((-1.5 * f + 2.0) * f + 0.5) * f, (0.5 * f - 0.5) * f * f]


def _torch(specs: list[LayerSpec], pending: PendingMap, chunk: int = 1 << 18) -> list[torch.Tensor]:
    device = specs[0].data.device
    chain = _torch_chain(pending, device)
    src3, out3 = _shape3(pending.source.shape), _shape3(pending.space.shape)
    src_max = torch.tensor([s - 1 for s in src3], dtype=torch.float64, device=device)
    flats = [s.data.reshape(s.data.shape[0], -1) for s in specs]
    outs = [torch.empty((s.data.shape[0], math.prod(out3)), dtype=s.data.dtype, device=device) for s in specs]
    valid_spec = next((s for s in specs if s.kind == "valid"), None)
    valid_flat = valid_spec.data.reshape(-1) if valid_spec is not None else None
    total = math.prod(out3)
    for start in range(0, total, chunk):
        lin = torch.arange(start, min(total, start + chunk), device=device)
        q = torch.stack([lin // (out3[1] * out3[2]), (lin // out3[2]) % out3[1], lin % out3[2]], 1).double()
        s = _pull_torch(chain, q)
        inside = ((s >= -0.5 - _EPS) & (s <= src_max + 0.5 + _EPS)).all(1)
        c = torch.minimum(s.clamp(min=0), src_max)
        i0 = torch.minimum(c.floor().long(), src_max.long())
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
            valid_out = inside & (wsum >= 0.5 - 1e-9)
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
            out[:, sl] = _cast(value, out.dtype)
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


def _cast(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Intensity back to the layer's dtype: floats as they are, integers rounded and clipped."""
    if dtype.is_floating_point:
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
        return _torch(specs, pending)
    outs = _cpu(specs, pending)
    return [_cast(o, s.data.dtype) if s.kind == "intensity" else
            (o.bool() if s.kind == "valid" else o.to(s.data.dtype)) for o, s in zip(outs, specs)]


def pull_back_points(stages, points: np.ndarray) -> np.ndarray:
    """World points of an op's output -> world points of its input (through pull-back stages)."""
    x = np.asarray(points, dtype=np.float64)
    for stage in stages:
        if isinstance(stage, Field):
            x = x + _field_at_points(stage, x)
        else:
            n = stage.shape[0] - 1
            x = x @ stage[:n, :n].T + stage[:n, n]
    return x


def push_forward_points(stages, points: np.ndarray, iterations: int = 30) -> np.ndarray:
    """World points of an op's input -> where the content there lands in its output.

    Affine stages are inverted exactly; a field stage ``y = x + d(x)`` is inverted by the fixed
    point iteration ``x <- y - d(x)``, which converges while the field's gradient stays below 1
    (documented tolerance: well below half a voxel for the fields Elastic draws).
    """
    x = np.asarray(points, dtype=np.float64)
    for stage in reversed(stages):
        if isinstance(stage, Field):
            y = x.copy()
            for _ in range(iterations):
                x = y - _field_at_points(stage, x)
        else:
            inv = np.linalg.inv(stage)
            n = stage.shape[0] - 1
            x = x @ inv[:n, :n].T + inv[:n, n]
    return x


def _field_at_points(field: Field, x: np.ndarray) -> np.ndarray:
    n = field.ndim
    g = x @ field.to_lattice[:n, :n].T + field.to_lattice[:n, n]
    shape = np.array(field.lattice.shape[1:])
    c = np.clip(g, 0, shape - 1)
    i0 = np.minimum(np.floor(c).astype(np.int64), shape - 1)
    i1 = np.minimum(i0 + 1, shape - 1)
    f = c - i0
    out = np.zeros_like(x)
    for t in range(2 ** n):
        bits = [(t >> (n - 1 - a)) & 1 for a in range(n)]
        idx = tuple(np.where(bits[a], i1[:, a], i0[:, a]) for a in range(n))
        w = np.prod([f[:, a] if bits[a] else 1 - f[:, a] for a in range(n)], axis=0)
        out += w[:, None] * field.lattice[(slice(None),) + idx].T.astype(np.float64)
    return out
