"""Patch-based inference: a grid of overlapping patches over a volume or raster, a prediction
callback on batches of patches, and a weighted average of the overlapping predictions.

The patch positions and blending weights are MONAI's ``sliding_window_inference`` ones (a start
every ``int(patch * (1 - overlap))`` voxels, the last patch flush with the end; ``"constant"`` or
``"gaussian"`` weights with ``sigma = sigma_scale * patch``, clamped below at 1e-3), so a model
evaluated with either gives the same output. The result is on the input's grid: a ``Sample`` in
gives the same ``Sample`` (same ``Space``: affine and CRS) with the prediction as a new layer.

Memory: the output (a running weighted mean, ``core.kernels.blend``: an identity model gives its
input back bit for bit) and one weight-sum map, both the size of the output, and one batch of
patches; patches are read as views of the input, and the input is copied only when it is smaller
than a patch (it is padded, and the padding is cut from the output).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .core.kernels.blend import blend_into
from .core.kernels.grid import lengths_in_voxels
from .core.params import as_lengths, as_size, check_choice, check_positive_int, per_axis
from .core.sample import Layer, Role, Sample, check_fill
from .errors import ParameterError, ShapeError

__all__ = ["sliding_window_inference", "patch_grid", "blend_weights"]

BLENDS = ("constant", "gaussian")


def _overlaps(overlap: float | Sequence[float], ndim: int) -> list[float]:
    values = [overlap] * ndim if isinstance(overlap, (int, float)) and not isinstance(overlap, bool) else \
        list(overlap) if isinstance(overlap, (list, tuple)) else None
    if values is not None and len(values) == 1:
        values = values * ndim
    if values is None or len(values) != ndim or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 for v in values):
        raise ParameterError("overlap", overlap, f"a fraction in [0, 1), or {ndim} of them (one per axis)")
    return [float(v) for v in values]


def patch_grid(shape: Sequence[int], patch_size: Sequence[int], overlap: float | Sequence[float] = 0.25
               ) -> list[tuple[int, ...]]:
    """The start index of every patch, in C order (first axis slowest), as MONAI's sliding window:
    along each axis a start every ``max(1, int(patch * (1 - overlap)))`` voxels until a patch reaches
    the end, the last one moved back to end flush with it (one patch where it fills the axis).

    Args:
        shape: The spatial shape, at least ``patch_size`` on every axis (pad first).
        patch_size: Patch size in voxels, one per axis.
        overlap: Fraction of a patch shared with its neighbour, in [0, 1); one, or one per axis.

    Example:
        >>> patch_grid((160, 192), (96, 96), 0.25)
        [(0, 0), (0, 72), (0, 96), (64, 0), (64, 72), (64, 96)]
    """
    shape, patch = tuple(int(s) for s in shape), tuple(int(p) for p in patch_size)
    if len(shape) != len(patch) or any(p > s for p, s in zip(patch, shape)):
        raise ShapeError(f"patch {patch} does not fit in shape {shape} (pad the input first)")
    starts = []
    for size, p, o in zip(shape, patch, _overlaps(overlap, len(shape))):
        step = p if p == size else max(1, int(p * (1 - o)))
        axis = [0]
        while axis[-1] + p < size:
            axis.append(min(axis[-1] + step, size - p))
        starts.append(axis)
    return list(itertools.product(*starts))


def blend_weights(patch_size: Sequence[int], blend: str = "gaussian", sigma_scale: float | Sequence[float] = 0.125,
                  dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """The weight of each voxel of a patch's prediction (MONAI's importance map).

    Args:
        patch_size: Patch size in voxels, one per axis.
        blend: ``"constant"`` (every voxel 1: a plain average, TorchIO's ``"average"``) or
            ``"gaussian"`` (a separable Gaussian centred on the patch, less weight near its borders).
        sigma_scale: The Gaussian's standard deviation as a fraction of the patch size; one, or one
            per axis.
        dtype: The weights' dtype.
        device: The weights' device.

    Example:
        >>> w = blend_weights((96, 96, 96), "gaussian")   # 1 at the centre, 1e-3 at the corners
    """
    patch = tuple(int(p) for p in patch_size)
    check_choice("blend", blend, BLENDS)
    if blend == "constant":
        return torch.ones(patch, dtype=dtype, device=device)
    scales = [sigma_scale] * len(patch) if isinstance(sigma_scale, (int, float)) else list(sigma_scale)
    if len(scales) != len(patch) or not all(isinstance(s, (int, float)) and s > 0 for s in scales):
        raise ParameterError("sigma_scale", sigma_scale, f"a positive number, or {len(patch)} of them")
    weights = torch.ones((), dtype=torch.float64)
    for axis, (p, s) in enumerate(zip(patch, scales)):
        x = torch.arange(p, dtype=torch.float64) - (p - 1) / 2.0
        line = torch.exp(-(x ** 2) / (2 * (s * p) ** 2))
        weights = weights[..., None] * line if axis else line
    # in float32, as MONAI, so both give the same weights; no weight below 1e-3 (every voxel counts)
    weights = weights.to(torch.float32)
    weights = weights.clamp(min=max(float(weights.min()), 1e-3))
    return weights.to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=8)
def _weights(patch: tuple[int, ...], blend: str, sigma_scale: Any) -> torch.Tensor:
    """``blend_weights`` in float32 on the CPU, computed once per patch shape (read only)."""
    return blend_weights(patch, blend, sigma_scale, dtype=torch.float32)


def sliding_window_inference(x: Sample | torch.Tensor | np.ndarray, predict: Callable[[torch.Tensor], torch.Tensor],
                             patch_size: int | Sequence[int] | float | Sequence[float], *,
                             overlap: float | Sequence[float] = 0.25, blend: str = "gaussian",
                             sigma_scale: float | Sequence[float] = 0.125, batch_size: int = 1,
                             layer: str = "image", units: str = "voxels", name: str = "prediction",
                             fill: float = 0.0, pad_value: float | None = None,
                             device: torch.device | str | None = None) -> Any:
    """Predict on overlapping patches and blend the predictions into one output on the input's grid.

    ``predict`` gets a batch ``(B, C, *patch)`` of patches (``B <= batch_size``) and returns
    ``(B, K, *patch)`` float predictions (probabilities or logits); each output voxel is the weighted
    mean of the predictions of every patch covering it. Runs under ``torch.no_grad()``. The batch is
    a copy of the patches in one buffer reused from call to call: the model may write into it (the
    input never changes), and one that keeps it copies it.

    Where the input is smaller than a patch it is padded (``pad_value``: half before, half after, as
    MONAI) and the padding is cut from the output. With a ``Sample``, voxels its VALID layer marks
    invalid (nodata, outside the field of view) are shown to the model as they are (holding the
    layer's fill) but get ``fill`` in the output, and the VALID layer is kept beside it: nodata never
    passes for a prediction.

    Args:
        x: A ``Sample`` (its ``layer`` is the model's input), or a tensor or array ``(C, *spatial)``,
            or ``(B, C, *spatial)`` (each element alone; ``patch_size`` then names every spatial axis).
        predict: The model: ``(B, C, *patch) -> (B, K, *patch)``, on ``device``.
        patch_size: Patch size in voxels (``units="voxels"``): one integer for every axis or one per
            axis; or in world units (``units="world"``: mm for scans, CRS units for rasters; a
            ``Sample`` only), rounded to whole voxels per axis.
        overlap: Fraction of a patch shared with its neighbour, in [0, 1); one, or one per axis.
        blend: ``"gaussian"`` (default; MONAI's ``mode="gaussian"``, less weight near patch borders)
            or ``"constant"`` (a plain average: MONAI's default, TorchIO's ``"average"``).
        sigma_scale: The Gaussian's standard deviation as a fraction of the patch size.
        batch_size: Patches per ``predict`` call.
        layer: The input layer of a ``Sample`` (on its reference grid).
        units: ``"voxels"`` or ``"world"``, the units of ``patch_size``.
        name: The output layer's name (a ``Sample`` input).
        fill: The output at invalid voxels.
        pad_value: The value of the padding; default the layer's fill (a ``Sample``), else 0.
        device: Where ``predict`` runs (patches are moved there, its outputs back); default the
            input's device.

    Returns:
        For a ``Sample``: the same sample (same ``Space``, layers, points, history) with the
        prediction as an INTENSITY layer ``name`` ``(K, *spatial)`` float32 (float64 when the model
        returns float64). For a tensor or array: the prediction, of the same kind.

    Example:
        >>> out = sliding_window_inference(sample, model, 96, overlap=0.25, batch_size=4)
        >>> probs = out["prediction"]                   # on sample.space: affine and CRS kept
    """
    if not callable(predict):
        raise ParameterError("predict", type(predict).__name__, "a callable (B, C, *patch) -> (B, K, *patch)")
    check_choice("units", units, ("voxels", "world"))
    check_choice("blend", blend, BLENDS)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(x, Sample):
        return _on_sample(x, predict, patch_size, overlap, blend, sigma_scale, batch_size, layer, units, name,
                          fill, pad_value, device)
    if units == "world":
        raise ParameterError("units", units, "'voxels' for a tensor (it has no spacing); pass a Sample for world units")
    data = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    sizes = as_size("patch_size", patch_size)
    ndim = len(sizes) if len(sizes) > 1 else data.dim() - 1
    if data.dim() not in (ndim + 1, ndim + 2) or ndim not in (2, 3):
        raise ShapeError(f"input has shape {tuple(data.shape)}; expected (C, *spatial) or (B, C, *spatial) with 2 or "
                         f"3 spatial axes (patch_size {sizes} names {ndim})")
    patch = per_axis("patch_size", sizes, ndim)
    pad = 0.0 if pad_value is None else float(pad_value)
    if data.dim() == ndim + 2:
        out: Any = torch.stack([_blend(d, predict, patch, overlap, blend, sigma_scale, batch_size, pad, None, fill,
                                       device) for d in data])
    else:
        out = _blend(data, predict, patch, overlap, blend, sigma_scale, batch_size, pad, None, fill, device)
    return out if isinstance(x, torch.Tensor) else out.cpu().numpy()


def _on_sample(sample: Sample, predict: Callable[[torch.Tensor], torch.Tensor], patch_size: Any, overlap: Any,
               blend: str, sigma_scale: Any, batch_size: int, layer: str, units: str, name: str, fill: float,
               pad_value: float | None, device: Any) -> Sample:
    if layer not in sample.layer_names():
        raise ParameterError("layer", layer, f"a layer of the sample ({sample.layer_names()})")
    if layer in sample.grids:
        raise ParameterError("layer", layer, "a layer on the sample's reference grid (it is on "
                             f"{sample.space_of(layer).describe()}; put ResampleToMatch before)")
    info = sample.layer_info(layer)
    if info.role is not Role.INTENSITY:
        raise ParameterError("layer", layer, f"an INTENSITY layer (it is {info.role.value})")
    ndim = sample.space.ndim
    if units == "world":
        lengths = as_lengths("patch_size", patch_size, ndim)
        patch = lengths_in_voxels(lengths, sample.space.spacing)
    else:
        patch = per_axis("patch_size", as_size("patch_size", patch_size), ndim)
    valid = sample[sample.valid_name] if sample.valid_name is not None else None
    pad = info.fill if pad_value is None else float(pad_value)
    out = _blend(sample[layer], predict, patch, overlap, blend, sigma_scale, batch_size, pad, valid, fill, device)
    return sample.with_layers(**{name: Layer(out, Role.INTENSITY, check_fill(fill, out.dtype))})


def _blend(data: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor], patch: tuple[int, ...], overlap: Any,
           blend: str, sigma_scale: Any, batch_size: int, pad_value: float, valid: torch.Tensor | None, fill: float,
           device: Any) -> torch.Tensor:
    """One ``(C, *spatial)`` input through the patches; the blended ``(K, *spatial)`` output."""
    shape = tuple(data.shape[1:])
    before = [max(p - s, 0) // 2 for p, s in zip(patch, shape)]
    after = [max(p - s, 0) - b for p, s, b in zip(patch, shape, before)]
    if any(before) or any(after):         # smaller than a patch: pad (the only copy of the input)
        widths = [w for b, a in zip(reversed(before), reversed(after)) for w in (b, a)]
        source = torch.nn.functional.pad(data, widths, value=pad_value)
    else:
        source = data
    padded = tuple(source.shape[1:])
    starts = patch_grid(padded, patch, overlap)
    run = torch.device(device) if device is not None else data.device
    mean: torch.Tensor | None = None
    weight = torch.zeros(padded, dtype=torch.float32, device=data.device)
    weights = _weights(patch, blend, sigma_scale if isinstance(sigma_scale, (int, float)) else tuple(sigma_scale))
    buffer = torch.empty((min(batch_size, len(starts)), source.shape[0]) + patch, dtype=source.dtype, device=run)
    with torch.no_grad():
        for first in range(0, len(starts), batch_size):
            chunk = starts[first:first + batch_size]
            windows = [(slice(None),) + tuple(slice(s, s + p) for s, p in zip(start, patch)) for start in chunk]
            batch = buffer[:len(chunk)]
            for i, w in enumerate(windows):        # one batch in memory, reused: no allocation per patch
                batch[i].copy_(source[w])
            pred = predict(batch)
            if not isinstance(pred, torch.Tensor) or pred.dim() != len(patch) + 2 or pred.shape[0] != len(chunk) \
                    or tuple(pred.shape[2:]) != patch:
                got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
                raise ShapeError(f"predict returned {got} for a batch of {tuple(batch.shape)}; expected "
                                 f"({len(chunk)}, K, {', '.join(map(str, patch))})")
            if not pred.dtype.is_floating_point:
                raise ParameterError("predict", f"a {str(pred.dtype).replace('torch.', '')} output",
                                     "float predictions (probabilities or logits): labels cannot be averaged; "
                                     "take the argmax of the blended output")
            if mean is None:          # the accumulator: float64 for a float64 model, else float32
                dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
                mean = torch.empty((pred.shape[1],) + padded, dtype=dtype, device=data.device)   # see blend_into
                weight = weight.to(dtype)
            weights = weights.to(device=mean.device, dtype=mean.dtype)
            for b, start in enumerate(chunk):
                blend_into(mean, weight, pred[b], weights, start)
    if mean is None:                               # unreachable: a grid always has a patch
        raise ShapeError(f"no patch of {patch} in {padded}")
    out = mean if padded == shape else \
        mean[(slice(None),) + tuple(slice(b, b + s) for b, s in zip(before, shape))].contiguous()
    out_dtype = out.dtype
    if valid is not None:
        out = torch.where(valid.to(out.device), out, torch.tensor(check_fill(fill, out_dtype), dtype=out_dtype,
                                                                     device=out.device))
    return out
