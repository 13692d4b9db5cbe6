"""Value helpers shared by the transforms: per-channel statistics and quantiles over valid voxels,
seeded noise, normalised smoothing, a per-channel affine map of the values, and the cast back to a
layer's dtype."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import NoDataError, ParameterError
from .kernels.memory import empty, empty_like
from .random import generator_for

if TYPE_CHECKING:
    from .sample import Sample

__all__ = ["label_values", "channel_stats", "channel_quantiles", "affine_values", "seeded_noise", "normalized_smooth",
           "cast", "foreground", "seeded_noise_batch", "per_element",
           "normalized_smooth_batch",
           "SUM_CHUNK", "NOISE_CHUNK"]


def label_values(label: torch.Tensor) -> torch.Tensor:
    """The sorted distinct values of a label tensor, on the CPU (int64 for integer and bool labels).

    Small non-negative integer labels (uint8, or any integer type whose values lie in 0..65535)
    are counted with ``bincount``: ``torch.unique`` sorts every voxel (~80 ms on a 160x192x160
    uint8 map, against ~4 ms)."""
    if label.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if label.dtype == torch.bool:
        label = label.to(torch.uint8)
    if not label.dtype.is_floating_point and not label.dtype.is_complex:
        if label.dtype == torch.uint8:
            counts = torch.bincount(label.reshape(-1), minlength=1)
            return torch.nonzero(counts).reshape(-1).cpu()
        low, high = torch.aminmax(label)
        if int(low) >= 0 and int(high) <= 65535:
            counts = torch.bincount(label.reshape(-1).to(torch.int64 if label.dtype != torch.int32 else torch.int32))
            return torch.nonzero(counts).reshape(-1).cpu()
    return torch.unique(label).cpu() if label.dtype.is_floating_point else torch.unique(label).cpu().long()


def channel_stats(data: torch.Tensor, valid: torch.Tensor | None,
                  which: tuple[str, ...] = ("min", "max", "mean", "std")) -> dict[str, torch.Tensor]:
    """Per-channel statistics over valid voxels, shaped ``(C, 1, ..., 1)``; only those in ``which``
    are computed."""
    flat = data.reshape(data.shape[0], -1)
    out: dict[str, torch.Tensor] = {}
    if valid is not None:
        mask = valid.reshape(1, -1).expand_as(flat)
        count = mask.sum(1)
        if int(count[0]) == 0:
            raise NoDataError("the sample's VALID layer marks no voxel valid; intensity statistics are undefined")
    if "min" in which or "max" in which:
        if valid is None and flat.shape[0] == 1:       # one channel: one aminmax pass beats amin + amax
            lo, hi = torch.aminmax(flat)
            out["min"], out["max"] = lo.view(1), hi.view(1)
        elif valid is None:     # many channels: amin + amax beat aminmax along dim 1 (docs/performance.md)
            out["min"], out["max"] = flat.amin(1), flat.amax(1)
        else:
            out["min"] = torch.where(mask, flat, torch.full_like(flat, math.inf)).amin(1)
            out["max"] = torch.where(mask, flat, torch.full_like(flat, -math.inf)).amax(1)
    if "mean" in which or "std" in which:       # sums in fixed chunks: the same bits for any thread count
        n = count.double() if valid is not None else float(flat.shape[1])
        kept = flat if valid is None else torch.where(mask, flat, torch.zeros_like(flat))
        out["mean"] = (_row_sums(kept) / n).to(flat.dtype)
        if "std" in which:
            centred = kept - out["mean"][:, None]
            if valid is not None:
                centred = torch.where(mask, centred, torch.zeros_like(centred))
            centred.mul_(centred)
            out["std"] = (_row_sums(centred) / n).sqrt().to(flat.dtype)
    shape = (-1,) + (1,) * (data.dim() - 1)
    return {k: v.view(shape) for k, v in out.items()}


#: Elements summed by one thread in ``_row_sums`` (below torch's grain size, so never split).
SUM_CHUNK = 1 << 14


def _row_sums(x: torch.Tensor) -> torch.Tensor:
    """Float64 sums of the rows of ``(C, N)`` ``x`` that do not depend on the number of threads:
    torch splits a float32 reduction across threads, so ``x.mean()`` differs in its last bits
    between 1, 2 and 3 threads (a DataLoader worker and the main process would disagree). Fixed
    chunks are summed one per thread, then added in float64."""
    c, n = x.shape
    full = n - n % SUM_CHUNK
    total = x[:, full:].sum(1, dtype=torch.float64)
    if full:
        total = total + x[:, :full].reshape(c, full // SUM_CHUNK, SUM_CHUNK).sum(2).sum(1, dtype=torch.float64)
    return total


def affine_values(data: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gain * data + bias`` (per-channel ``(C, 1, ..., 1)`` or scalars) in one pass, into a new
    buffer (a recycled one for large CPU data: a fresh one costs more in page faults than the arithmetic)."""
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in (data, gain, bias)):
        return torch.addcmul(bias, data, gain)                  # (``out=`` has no autograd)
    return torch.addcmul(bias, data, gain, out=empty_like(data))


def per_element(values: Sequence[torch.Tensor | float], data: torch.Tensor,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-element per-channel values (each ``(C, 1, ..., 1)``, ``(1, ..., 1)`` or a number) as one
    ``(B, C, 1, ..., 1)`` tensor for a batch's ``(B, C, *spatial)`` ``data`` (``dtype``: default
    ``data``'s), to broadcast in one pass over the batch: the same values, so the same bits, as each
    element's own arithmetic."""
    shape = (data.shape[1],) + (1,) * (data.dim() - 2)
    kind = data.dtype if dtype is None else dtype
    return torch.stack([torch.as_tensor(v, dtype=kind, device=data.device).expand(shape) for v in values])


NOISE_CHUNK = 1 << 20


def channel_quantiles(data: torch.Tensor, valid: torch.Tensor | None, percentiles: Sequence[float],
                      max_samples: int = 1 << 20, *, exact: bool = False) -> list[torch.Tensor]:
    """Per-channel percentiles over valid voxels, each ``(C, 1, ..., 1)``, from a deterministic strided
    subsample of at most ``max_samples`` voxels (``torch.quantile`` refuses more than 2**24 values).
    ``exact``: from every valid voxel on the CPU (a selection, ``numpy.partition``, with the linear
    interpolation of ``numpy.percentile``; other devices still subsample)."""
    flat = data.reshape(data.shape[0], -1)
    if valid is not None:
        flat = flat[:, valid.reshape(-1)]
    if flat.shape[1] == 0:
        raise NoDataError("no valid voxel: percentiles are undefined")
    if exact and flat.device.type == "cpu":
        return _exact_quantiles(flat, percentiles, data.dim())
    step = max(1, flat.shape[1] // max_samples)
    q = torch.tensor([p / 100 for p in percentiles], dtype=flat.dtype, device=flat.device)
    values = torch.quantile(flat[:, ::step], q, dim=1)
    shape = (-1,) + (1,) * (data.dim() - 1)
    return [v.view(shape) for v in values]


def _exact_quantiles(flat: torch.Tensor, percentiles: Sequence[float], dims: int) -> list[torch.Tensor]:
    n = flat.shape[1]
    pos = [p / 100 * (n - 1) for p in percentiles]
    below = [min(int(math.floor(q)), n - 1) for q in pos]
    kth = sorted({k for b in below for k in (b, min(b + 1, n - 1))})
    rows = [np.partition(row, kth) for row in flat.detach().numpy()]
    shape = (-1,) + (1,) * (dims - 1)
    out = []
    for q, b in zip(pos, below):
        lo = np.array([r[b] for r in rows], np.float64)
        hi = np.array([r[min(b + 1, n - 1)] for r in rows], np.float64)
        out.append(torch.from_numpy(lo + (hi - lo) * (q - b)).to(flat.dtype).view(shape))
    return out


def seeded_noise(seed: int, shape: Sequence[int], device: torch.device, dtype: torch.dtype, kind: str) -> torch.Tensor:
    """Noise expanded from a recorded seed on the CPU, so that it does not depend on the device.

    The values come in fixed chunks of ``NOISE_CHUNK``, each from its own generator seeded by
    ``(seed, chunk)``: the chunks are drawn in parallel (torch releases the GIL), and the result
    does not depend on the number of threads.
    """
    return seeded_noise_batch([seed], shape, device, dtype, kind)[0]


def seeded_noise_batch(seeds: Sequence[int], shape: Sequence[int], device: torch.device, dtype: torch.dtype,
                       kind: str) -> torch.Tensor:
    """``seeded_noise`` of every seed, ``(len(seeds), *shape)``: element ``b`` equals ``seeded_noise(seeds[b],
    ...)``, the chunks of every element drawn in parallel together."""
    out = empty((len(seeds),) + tuple(shape), torch.float32)
    flats = out.view(len(seeds), -1)
    n_chunks = (flats.shape[1] + NOISE_CHUNK - 1) // NOISE_CHUNK
    tasks = [(b, i) for b in range(len(seeds)) for i in range(n_chunks)]

    def fill(task: tuple[int, int]) -> None:
        b, i = task
        g = generator_for(seeds[b] % (2**63), 0, i)
        view = flats[b, i * NOISE_CHUNK:(i + 1) * NOISE_CHUNK]
        (torch.randn if kind == "normal" else torch.rand)(view.shape, generator=g, dtype=torch.float32, out=view)

    workers = min(len(tasks), torch.get_num_threads())
    if workers > 1 and out.numel() >= NOISE_CHUNK:          # (threads cost more than small draws)
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, tasks))
    else:
        for task in tasks:
            fill(task)
    return out.to(device=device, dtype=dtype)


def normalized_smooth(data: torch.Tensor, weight: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Gaussian smoothing of ``(C, *spatial)`` data with per-axis ``sigmas`` in voxels, where only
    voxels with ``weight`` contribute (normalised convolution: no nodata and no border artefacts)."""
    return normalized_smooth_batch(data[None], weight[None], sigmas)[0]


def normalized_smooth_batch(data: torch.Tensor, weight: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """``normalized_smooth`` of every element of ``(B, C, *spatial)`` data with ``(B, 1 or C, *spatial)``
    weights and the same ``sigmas``, in one pass per axis (the rows of a convolution are independent:
    element ``b`` equals ``normalized_smooth(data[b], weight[b], sigmas)``)."""
    num, den = data * weight, weight
    num, den = num.reshape((-1,) + tuple(num.shape[2:])), den.reshape((-1,) + tuple(den.shape[2:]))
    for axis, sigma in enumerate(sigmas):
        if sigma < 1e-3:
            continue
        num, den = _smooth(num, axis, sigma), _smooth(den, axis, sigma)
    return num.view(data.shape[:2] + num.shape[1:]) / den.view(weight.shape[:2] + den.shape[1:]).clamp(min=1e-12)


def _smooth(x: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """1D Gaussian along spatial ``axis`` of ``(C, *spatial)`` with zero padding, truncated at 3 sigma
    and at the axis length: a tap farther than ``n - 1`` voxels only ever meets padding, and the
    kernel's normalisation cancels in the normalised convolution, so the bound changes nothing."""
    n = x.shape[axis + 1]
    radius = min(max(1, int(math.ceil(3 * sigma))), n - 1)
    if radius < 1:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    moved = x.movedim(axis + 1, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    out = F.conv1d(flat, kernel.view(1, 1, -1), padding=radius)
    return out.reshape(shape).movedim(-1, axis + 1)


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


def foreground(sample: Sample, name: str, argument: str, transform: str, threshold: float = 0.0) -> torch.Tensor:
    """``(1, *spatial)`` bool: the voxels where any channel of layer ``name`` is > ``threshold`` (a
    label map of several channels counts a voxel labelled in any of them), on the grid its data is on now.

    Raises:
        ParameterError: ``name`` is not a layer of ``sample`` (the message names ``argument`` and
            ``transform``).
    """
    if name not in sample.layer_names():
        raise ParameterError(argument, name, f"a layer of the sample for {transform} ({sample.layer_names()})")
    data = sample.layer_info(name).data
    return (data > threshold).any(0, keepdim=True)
