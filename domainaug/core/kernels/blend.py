"""Blending of overlapping patch predictions: a running weighted mean, in one pass per patch.

``mean <- mean + (w / W) * (pred - mean)`` with ``W <- W + w`` the weight seen so far. The first
patch at a voxel writes its prediction exactly (``w / w`` is 1; ``mean`` may start uninitialised
where ``W`` is 0), and a later one that agrees changes nothing, so an identity model returns its
input bit for bit, in float32; torch would make four passes over memory (and two temporaries) for
it. Other devices use the same formula in torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba as nb
import numpy as np
import torch

from . import parallel_lock

__all__ = ["blend_into"]


def blend_into(mean: torch.Tensor, weight: torch.Tensor, pred: torch.Tensor, w: torch.Tensor,
               start: Sequence[int]) -> None:
    """Blend ``pred`` ``(K, *patch)`` with weights ``w`` ``(*patch)`` into ``mean`` ``(K, *shape)`` and
    ``weight`` ``(*shape)`` (the weight sum) at ``start``, in place; ``pred`` is cast to ``mean``'s dtype."""
    window = tuple(slice(s, s + p) for s, p in zip(start, w.shape))
    pred = pred.detach().to(device=mean.device, dtype=mean.dtype)
    if mean.device.type != "cpu" or not mean.is_contiguous() or not weight.is_contiguous():
        total = weight[window].add_(w)
        view = mean[(slice(None),) + window]
        f = w / total
        view.copy_(torch.where(f == 1.0, pred, view + f * (pred - view)))
        return
    lift = (1,) * (4 - mean.dim())                    # 2D: a depth-1 leading axis
    m = mean.numpy().reshape(mean.shape[:1] + lift + tuple(mean.shape[1:]))
    t = weight.numpy().reshape(lift + tuple(weight.shape))
    p = np.ascontiguousarray(pred.numpy()).reshape(pred.shape[:1] + lift + tuple(pred.shape[1:]))
    ww = np.ascontiguousarray(w.numpy().astype(m.dtype, copy=False)).reshape(lift + tuple(w.shape))
    z0, y0, x0 = (0,) * len(lift) + tuple(int(s) for s in start)
    with parallel_lock():
        _blend(m, t, p, ww, z0, y0, x0)


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _blend(mean, weight, pred, w, z0, y0, x0):   # no fastmath: w / (0 + w) must be exactly 1
    channels, depth, height, width = pred.shape
    for row in nb.prange(depth * height):
        z, y = row // height, row % height
        wsum = weight[z0 + z, y0 + y, x0:x0 + width]
        wrow = w[z, y]
        for x in range(width):                     # two simple loops, so that both vectorise
            wsum[x] += wrow[x]
        for c in range(channels):
            out = mean[c, z0 + z, y0 + y, x0:x0 + width]
            new = pred[c, z, y]
            for x in range(width):
                f = wrow[x] / wsum[x]
                # the first patch at a voxel (f == 1) writes its value: ``mean`` needs no zeroing
                out[x] = new[x] if f == 1.0 else out[x] + f * (new[x] - out[x])
