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

A batch of samples (one map each, shared shapes: ``resample_layers_batch``) goes through the torch
path in one go on other devices; on the CPU each element takes its own path, as alone.

This module chooses the path; the paths are ``exact`` (copies), ``warp_cpu`` (numba) and
``warp_torch``, and share ``spec``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from ..maps import PendingMap
from ..values import cast
from .exact import copy_exact, exact_plan
from .spec import LayerSpec, apply_values
from .warp_cpu import resample_cpu
from .warp_torch import resample_torch, resample_torch_batch

__all__ = ["resample_layers", "resample_layers_batch", "passes", "count_pass"]

_counter = {"passes": 0}


def passes() -> int:
    """How many resampling passes have run in this process (for tests of lazy fusion)."""
    return _counter["passes"]


def count_pass() -> None:
    """Count one resampling pass (a sample on many grids resamples each grid in its one pass)."""
    _counter["passes"] += 1


def resample_layers(specs: list[LayerSpec], pending: PendingMap, *, backend: str | None = None,
                    count: bool = True, out: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Resample every layer through ``pending`` in one pass; returns one tensor per spec.

    ``backend`` is for tests: ``"exact"``, ``"numba"`` or ``"torch"``; by default the exact path
    when the map allows it, else numba for CPU data and torch for any other device. ``count``
    False: part of a pass already counted (``count_pass``). ``out``: contiguous tensors of the
    results' shapes and dtypes to write into (a batch's slices), returned.
    """
    if count:
        count_pass()
    if not specs:
        return []
    plan = exact_plan(pending) if backend in (None, "exact") else None
    if plan is not None:
        return copy_exact(specs, pending, plan, out)
    if backend == "exact":
        raise ValueError("the map is not an exact voxel permutation")
    device = specs[0].data.device
    if backend == "torch" or (backend is None and device.type != "cpu"):
        outs = resample_torch(specs, pending)
    else:
        outs = resample_cpu(specs, pending)
        outs = [cast(o, s.data.dtype) if s.kind == "intensity" else
                (o.bool() if s.kind == "valid" else o.to(s.data.dtype)) for o, s in zip(outs, specs)]
    if any(s.gain is not None for s in specs):
        valid = next((o for o, s in zip(outs, specs) if s.kind == "valid"), None)
        outs = [apply_values(o, s, valid) for o, s in zip(outs, specs)]
    return outs if out is None else [dst.copy_(o) for dst, o in zip(out, outs)]


def _element(spec: LayerSpec, b: int) -> LayerSpec:
    """Element ``b`` of a batch layer (its value stage's row too)."""
    return replace(spec, data=spec.data[b], gain=None if spec.gain is None else spec.gain[b],
                   bias=None if spec.bias is None else spec.bias[b])


def _torch_with_values(specs: list[LayerSpec], pendings: Sequence[PendingMap]) -> list[torch.Tensor]:
    outs = resample_torch_batch(specs, pendings)
    if any(s.gain is not None for s in specs):
        valid = next((o for o, s in zip(outs, specs) if s.kind == "valid"), None)
        outs = [apply_values(o, s, valid) for o, s in zip(outs, specs)]
    return outs


def resample_layers_batch(specs: list[LayerSpec], pendings: Sequence[PendingMap],
                          backend: str | None = None) -> list[torch.Tensor]:
    """Resample a batch: element b of every layer through ``pendings[b]``; one tensor per spec.

    Each ``spec.data`` is ``(B, C, *source)`` and each value stage (``spec.gain``, ``spec.bias``)
    ``(B, C)``; the elements share the source and the output shapes. Non-CPU data (or
    ``backend="torch"``) goes through the batched torch path (elements whose map is an exact
    permutation are copied, as ``resample_layers`` does); CPU data takes each element's own path
    (exact or numba), so that the result equals the per-element calls bit for bit. Counts one
    pass per element.

    Shape:
        ``(B, C, *source)`` -> ``(B, C, *space.shape)`` per spec.
    """
    for _ in pendings:
        count_pass()
    if not specs:
        return []
    size = len(pendings)
    device = specs[0].data.device
    if backend == "torch" or (backend is None and device.type != "cpu"):
        exact = [b for b in range(size) if backend is None and exact_plan(pendings[b]) is not None]
        rest = [b for b in range(size) if b not in exact]
        if not exact:
            return _torch_with_values(specs, pendings)
        if rest:
            rows = torch.tensor(rest, device=device)
            sub = [replace(s, data=s.data[rows], gain=None if s.gain is None else s.gain[rest],
                           bias=None if s.bias is None else s.bias[rest]) for s in specs]
            batched = _torch_with_values(sub, [pendings[b] for b in rest])
        parts = {b: resample_layers([_element(s, b) for s in specs], pendings[b], count=False) for b in exact}
        outs = [torch.empty((size,) + tuple(p.shape), dtype=p.dtype, device=device) for p in parts[exact[0]]]
        for b, part in parts.items():
            for out, p in zip(outs, part):
                out[b] = p
        if rest:
            for out, p in zip(outs, batched):
                out[rows] = p
        return outs
    outs = [torch.empty((size, s.data.shape[1]) + tuple(pendings[0].space.shape), dtype=s.data.dtype, device=device)
            for s in specs]
    for b in range(size):            # each element's own path, written into its slice
        resample_layers([_element(s, b) for s in specs], pendings[b], backend=backend, count=False,
                        out=[o[b] for o in outs])
    return outs
