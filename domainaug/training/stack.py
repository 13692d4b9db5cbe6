"""Stacking Samples into one batch dict, shared by ``collate`` and ``BatchAugment``, so that nothing a
sample holds is dropped on the way to the model.

Layers: every layer name that any sample has is stacked to ``(B, C, *spatial)``. A sample lacking an
optional layer (CloudShadow's ``occlusion`` when it did not fire, a label only some subjects have)
gets a tensor of that layer's ``fill`` and ``batch["present"][name][b] = False``: mask the loss (or
the input) with it. A VALID layer is the exception: a sample without one is valid everywhere, so it
gets an all-true one (``present`` is then true). Layers of one name must share channels and grid
shape across the batch (crop or pad to a common size in the pipeline).

Also kept: ``"points"`` (one ``{name: (N, ndim) float64 tensor}`` dict per sample, ragged, world
units) with ``"points_inside"`` (one ``{name: (N,) bool}`` dict per sample: in the field of view),
``"boxes"`` (one ``{name: Boxes}`` dict per sample, ragged: world units, labels in step; convert
with ``Boxes.to_torchvision(space)`` / ``to_monai``), ``"affine"`` ``(B, n+1, n+1)`` float64
(index of voxel centres -> world) and ``"crs"`` (one string or ``None`` per sample), so that
predictions can be georeferenced, and ``"records"``.
A layer on a grid of its own (``Sample.grids``: a 20 m band beside 10 m ones) is stacked on that
grid, and ``"grids"`` maps its name to the ``(B, n+1, n+1)`` affines of its grid (``"affine"`` is
the reference grid's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.sample import Role, Sample, stacked

__all__ = ["RESERVED_KEYS", "stack_samples", "with_common_valid", "detection_targets"]

RESERVED_KEYS = ("present", "points", "points_inside", "boxes", "affine", "crs", "records", "target", "spaces",
                 "grids")
"""Batch keys that are not layers; a layer of one of these names cannot be batched."""


def with_common_valid(samples: Sequence[Sample]) -> list[Sample]:
    """When some samples have a VALID layer (e.g. only those a rotation turned), give the others an
    all-true one, so that batching keeps nodata marked instead of dropping the layer."""
    name = next((s.valid_name for s in samples if s.valid_name is not None), None)
    return list(samples) if name is None else [s if s.valid_name else s.with_valid(name) for s in samples]


def _layer_names(samples: Sequence[Sample]) -> list[str]:
    names: list[str] = []
    for s in samples:
        names += [n for n in s.layer_names() if n not in names]
    return names


def stack_samples(samples: Sequence[Sample]) -> dict[str, Any]:
    """The batch dict of ``samples`` (see the module docstring): every layer, ``"present"``,
    ``"points"``, ``"points_inside"``, ``"boxes"``, ``"affine"``, ``"crs"`` and ``"records"``.

    Raises:
        ParameterError: no samples; a layer whose channels or grid shape differ across the batch;
            layers of one name with different roles; a layer named like a batch key; samples of
            different dimensions.
    """
    from ..errors import ParameterError
    if not samples:
        raise ParameterError("batch", [], "at least one sample")
    samples = with_common_valid(samples)
    out: dict[str, Any] = {}
    present: dict[str, torch.Tensor] = {}
    for name in _layer_names(samples):
        if name in RESERVED_KEYS:
            raise ParameterError("layers", name, f"layer names other than the batch keys {list(RESERVED_KEYS)}")
        have = [s for s in samples if name in s.layer_names()]
        infos = [s.layer_info(name) for s in have]
        roles = {i.role for i in infos}
        if len(roles) != 1:
            raise ParameterError("batch", sorted(r.value for r in roles), f"one role for the {name!r} layers")
        tensors = [s[name] for s in have]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ParameterError("batch", sorted(shapes), f"samples whose {name!r} layers have one shape "
                                 "(crop or pad to a common size in the pipeline)")
        dtype = tensors[0].dtype
        for t in tensors[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        ref, fill = tensors[0], infos[0].fill
        parts, mask = [], []
        for s in samples:
            if name in s.layer_names():
                parts.append(s[name].to(dtype))
                mask.append(True)
            else:
                # a sample without this VALID layer is valid everywhere on that grid
                parts.append(torch.full(ref.shape, True if roles == {Role.VALID} else fill, dtype=dtype,
                                          device=ref.device))
                mask.append(False)
        out[name] = stacked(parts)           # a view when the layers are a batch's slices already
        present[name] = torch.tensor(mask, dtype=torch.bool)
        if roles == {Role.VALID}:
            present[name][:] = True
    ndims = {s.space.ndim for s in samples}
    if len(ndims) != 1:
        raise ParameterError("batch", sorted(ndims), "samples of one dimension (all 2D or all 3D)")
    out["present"] = present
    out["points"] = [dict(s.points) for s in samples]
    out["points_inside"] = [{n: s.points_inside(n) for n in s.points} for s in samples]
    out["boxes"] = [dict(s.boxes) for s in samples]
    out["affine"] = torch.from_numpy(np.stack([np.asarray(s.space.affine, dtype=np.float64) for s in samples]))
    out["crs"] = [s.space.crs for s in samples]
    own = [n for n in _layer_names(samples) if any(n in s.grids for s in samples)]
    out["grids"] = {n: torch.from_numpy(np.stack([np.asarray(s.space_of(n).affine if n in s.layer_names() else
                                                             s.space.affine, dtype=np.float64) for s in samples]))
                    for n in own}
    out["records"] = [[r.to_dict() for r in s.history] for s in samples]
    return out


def detection_targets(batch: dict[str, Any], name: str, *, layer: str = "image",
                      style: str = "torchvision", mode: str | None = None) -> list[dict[str, torch.Tensor]]:
    """The boxes ``name`` of a batch (from ``collate`` or ``BatchAugment``) as a detection model's
    targets, one ``{"boxes", "labels"}`` dict per sample, in pixels of ``layer``'s grid (each sample's
    own affine): ``style="torchvision"`` (2D ``XYXY``, or ``XYXYXYXY`` for oriented boxes) or
    ``"monai"`` (image coordinates in ``mode``, default ``xyxy``/``xyzxyz``). A sample without the
    set gets empty tensors.

    Raises:
        ParameterError: an unknown ``style``, or ``layer`` not in the batch.
    """
    from ..core.boxes import Boxes
    from ..core.space import Space
    from ..errors import ParameterError
    if style not in ("torchvision", "monai"):
        raise ParameterError("style", style, "'torchvision' or 'monai'")
    if layer not in batch or not isinstance(batch[layer], torch.Tensor):
        raise ParameterError("layer", layer, "a layer of the batch (its grid gives the pixels)")
    shape = tuple(batch[layer].shape[2:])
    affines = batch["grids"].get(layer, batch["affine"]) if "grids" in batch else batch["affine"]
    out = []
    for b, sets in enumerate(batch["boxes"]):
        space = Space(shape, affines[b].numpy())
        boxes = sets.get(name)
        if boxes is None:
            kind = next((s[name].kind for s in batch["boxes"] if name in s), "axis")
            boxes = Boxes(np.zeros((0, 5 if kind == "oriented" else 2 * len(shape))), kind=kind)
        if style == "torchvision":
            out.append(boxes.to_torchvision(space))
        else:
            coords, labels = boxes.to_monai(space, mode)
            out.append({"boxes": coords, "labels": labels})
    return out
