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

This module chooses the path; the paths are ``exact`` (copies), ``warp_cpu`` (numba) and
``warp_torch``, and share ``spec``.
"""

from __future__ import annotations

import torch

from ..maps import PendingMap
from ..values import cast
from .exact import copy_exact, exact_plan
from .spec import LayerSpec, apply_values
from .warp_cpu import resample_cpu
from .warp_torch import resample_torch

__all__ = ["resample_layers", "passes", "count_pass"]

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
