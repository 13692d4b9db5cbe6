"""One-pass reductions over a volume that torch does in several: per-channel count, mean and std over a
region (one read of the data, where torch's mean then std reads it twice and writes a centred copy),
and the bounding box of the voxels above a threshold (one read, where torch compares, reduces over
channels and then over each axis). Both split the data into fixed chunks, each reduced in order by
one thread, so the result does not depend on the number of threads. Other devices use torch.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import torch

from . import parallel_lock

__all__ = ["channel_moments", "foreground_box"]

_CHUNK = 1 << 16                 # elements reduced in order by one task


def channel_moments(data: torch.Tensor, region: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``(count, mean, std)`` (float64, population std) of ``data`` ``(C, *spatial)`` over
    ``region`` (``None``, or bool ``(1 or C, *spatial)``: one region for every channel or one each).
    Sums are taken about a per-channel shift near the mean, in float64, so ``E[x^2] - E[x]^2`` loses
    nothing to cancellation."""
    c = data.shape[0]
    flat = data.detach().reshape(c, -1)
    mask = None if region is None else region.detach().reshape(region.shape[0], -1)
    if flat.device.type != "cpu" or flat.dtype not in (torch.float32, torch.float64):
        return _moments_torch(flat.double(), mask)
    step = max(1, flat.shape[1] // 4096)
    shift = flat[:, ::step].double().mean(1).numpy()          # near the mean: a rough, fixed subsample
    x = np.ascontiguousarray(flat.numpy())
    m = np.zeros((0, x.shape[1]), np.bool_) if mask is None else np.ascontiguousarray(mask.cpu().numpy())
    with parallel_lock():
        parts = _moment_chunks(x, m, shift, _CHUNK)
    k = parts.shape[0] // c
    total = parts.reshape(c, k, 3).sum(1)
    n = total[:, 0]
    safe = np.maximum(n, 1.0)
    d1, d2 = total[:, 1] / safe, total[:, 2] / safe
    return n, shift + d1, np.sqrt(np.maximum(d2 - d1 * d1, 0.0))


def _moments_torch(flat: torch.Tensor, mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    weight = torch.ones_like(flat[:1]) if mask is None else mask.to(flat.dtype)
    weight = weight.expand_as(flat)
    n = weight.sum(1)
    mean = (flat * weight).sum(1) / n.clamp(min=1)
    var = (((flat - mean[:, None]) ** 2) * weight).sum(1) / n.clamp(min=1)
    return n.cpu().numpy(), mean.cpu().numpy(), var.sqrt().cpu().numpy()


@nb.njit(parallel=True, cache=True)
def _moment_chunks(x, mask, shift, chunk):  # pragma: no cover - compiled
    c, n = x.shape
    k = (n + chunk - 1) // chunk
    out = np.zeros((c * k, 3))
    rows = mask.shape[0]
    for job in nb.prange(c * k):
        ch = job // k
        lo = (job - ch * k) * chunk
        hi = min(lo + chunk, n)
        s = shift[ch]
        count = 0.0
        s1 = 0.0
        s2 = 0.0
        if rows == 0:
            # eight interleaved partial sums (a fixed order, so still thread-count independent):
            # one running sum is a chain of dependent adds the CPU cannot overlap
            a1 = np.zeros(8)
            a2 = np.zeros(8)
            i = lo
            while i + 8 <= hi:
                for j in range(8):
                    d = x[ch, i + j] - s
                    a1[j] += d
                    a2[j] += d * d
                i += 8
            for t in range(i, hi):
                d = x[ch, t] - s
                a1[0] += d
                a2[0] += d * d
            s1 = ((a1[0] + a1[1]) + (a1[2] + a1[3])) + ((a1[4] + a1[5]) + (a1[6] + a1[7]))
            s2 = ((a2[0] + a2[1]) + (a2[2] + a2[3])) + ((a2[4] + a2[5]) + (a2[6] + a2[7]))
            count = float(hi - lo)
        else:
            r = 0 if rows == 1 else ch
            for i in range(lo, hi):
                if mask[r, i]:
                    d = x[ch, i] - s
                    s1 += d
                    s2 += d * d
                    count += 1.0
        out[job, 0] = count
        out[job, 1] = s1
        out[job, 2] = s2
    return out


def foreground_box(data: torch.Tensor, threshold: float,
                   valid: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last index (inclusive) per spatial axis of the voxels where any channel of ``data``
    ``(C, *spatial)`` is > ``threshold`` (and ``valid``, ``(1, *spatial)`` bool, is True), or None."""
    ndim = data.dim() - 1
    if data.device.type != "cpu" or ndim not in (2, 3) or data.dtype == torch.bool or data.dtype.is_complex:
        return _box_torch(data, threshold, valid)
    x = data.detach()
    if ndim == 2:
        x = x[:, None]
    x_np = np.ascontiguousarray(x.numpy())
    v = np.zeros((0, 0, 0), np.bool_) if valid is None else np.ascontiguousarray(
        (valid.detach()[0] if ndim == 3 else valid.detach()[0][None]).cpu().numpy())
    limit = float(threshold)
    with parallel_lock():
        found, lo, hi = _box_kernel(x_np, v, limit)
    if not found.any():
        return None
    planes = np.nonzero(found)[0]
    first = np.array([planes[0], lo[found, 0].min(), lo[found, 1].min()])
    last = np.array([planes[-1], hi[found, 0].max(), hi[found, 1].max()])
    return (first[1:], last[1:]) if ndim == 2 else (first, last)


def _box_torch(data: torch.Tensor, threshold: float,
               valid: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray] | None:
    mask = (data > threshold).any(0)
    if valid is not None:
        mask = mask & valid[0].to(mask.device)
    if not bool(mask.any()):
        return None
    n = mask.dim()
    lo, hi = np.zeros(n, int), np.zeros(n, int)
    for axis in range(n):
        where = torch.nonzero(mask.any(dim=tuple(a for a in range(n) if a != axis))).reshape(-1)
        lo[axis], hi[axis] = int(where[0]), int(where[-1])
    return lo, hi


@nb.njit(parallel=True, cache=True)
def _box_kernel(x, valid, threshold):  # pragma: no cover - compiled
    c, d, h, w = x.shape
    found = np.zeros(d, np.bool_)
    lo = np.full((d, 2), 2**62, np.int64)
    hi = np.full((d, 2), -1, np.int64)
    use_valid = valid.shape[0] > 0
    for z in nb.prange(d):
        for y in range(h):
            for i in range(w):
                if use_valid and not valid[z, y, i]:
                    continue
                hit = False
                for ch in range(c):
                    if x[ch, z, y, i] > threshold:
                        hit = True
                        break
                if hit:
                    found[z] = True
                    lo[z, 0] = min(lo[z, 0], y)
                    hi[z, 0] = max(hi[z, 0], y)
                    lo[z, 1] = min(lo[z, 1], i)
                    hi[z, 1] = max(hi[z, 1], i)
    return found, lo, hi
