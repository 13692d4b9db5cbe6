"""The torch path (any device): the CPU kernel's arithmetic over slabs of output voxels."""

from __future__ import annotations

import math

import torch

from ..maps import PendingMap, coordinate_lattice
from ..values import cast
from .spec import LayerSpec, shape3

__all__ = ["resample_torch"]

_EPS = 1e-6


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


def resample_torch(specs: list[LayerSpec], pending: PendingMap, chunk: int = 1 << 18) -> list[torch.Tensor]:
    device = specs[0].data.device
    coords_np, steps = coordinate_lattice(pending)
    coords = torch.from_numpy(coords_np).to(device)
    src3, out3 = shape3(pending.source.shape), shape3(pending.space.shape)
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
