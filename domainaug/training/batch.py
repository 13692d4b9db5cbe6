"""Batched execution: a pipeline over a ``(B, C, *spatial)`` batch with per-sample parameters in
one call, on the batch's device (CPU or CUDA), for augmenting on the GPU inside a training loop.

Each element is wrapped as a Sample *without copying* (its tensors are views of the batch; with
``valid``, the image is copied once so that invalid voxels hold the fill, as everywhere else), and
the pipeline runs over all elements at once (``Transform.step_batch``): every op draws for each
element from that element's own generator ``(seed, epoch, index)``, so the draws are exactly those
of the element alone; spatial maps stay per element and are fused as usual; the pending maps of
elements whose layers match are resampled into one ``(B, ...)`` buffer per layer
(``core.sample.materialize_batch``: on the CPU each element's own compiled pass into its slice, on
other devices one batched call for the whole batch); intensity ops change the ``(B, C, ...)`` view
in one go where they can (``IntensityTransform.apply_batch``; per-channel affine ops, Gamma,
GaussianNoise, ...), else each element alone. Element ``b`` equals the pipeline applied to that
sample alone with the same record, bit for bit on the CPU (the contract suite's ``check_batched``
for every registered transform). ``augment`` takes Samples (any layers, grids, targets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.boxes import Boxes
from ..core.random import generator_for
from ..core.record import ParamRecord
from ..core.sample import Layer, Role, Sample
from ..core.space import Space
from ..core.transform import Transform, replay
from ..errors import ParameterError, ShapeError
from .stack import stack_samples

__all__ = ["BatchAugment"]


class BatchAugment:
    """``pipeline`` applied to every element of a batch.

    Args:
        pipeline: Any transform.
        seed: Base seed; element ``b`` of a call with ``indices`` uses ``generator_for(seed, epoch,
            indices[b])`` (default indices ``0..B-1``: pass the dataset indices to keep draws unique).
    """

    def __init__(self, pipeline: Transform, seed: int = 0) -> None:
        if not isinstance(pipeline, Transform):
            raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ParameterError("seed", seed, "a non-negative integer")
        self.pipeline, self.seed = pipeline, seed

    def samples(self, image: torch.Tensor, label: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                space: Space | Sequence[Space] | None = None, fill: float = 0.0,
                channels: Sequence[str] | None = None, label_interpolation: str | None = None,
                meta: dict[str, Any] | None = None, points: Sequence[Mapping[str, Any]] | None = None,
                boxes: Sequence[Mapping[str, Boxes]] | None = None) -> list[Sample]:
        """The batch as Samples (views, no copies). ``space``: one for every element, one per
        element, or ``None`` for unit spacing; ``fill`` and ``channels`` (band names) of the image;
        ``label_interpolation`` overrides the label default (``"nearest"``/``"argmax"``); ``meta``
        (e.g. ``{"sensor": "sentinel2"}``) is given to every element; ``points`` and ``boxes`` (one
        ``{name: ...}`` dict per element, world units of that element's space) are its targets."""
        if not isinstance(image, torch.Tensor) or image.dim() not in (4, 5):
            raise ShapeError(f"image has shape {tuple(getattr(image, 'shape', ()))}; expected a (B, C, H, W) or "
                             "(B, C, D, H, W) tensor")
        batch, spatial = image.shape[0], tuple(image.shape[2:])
        spaces = [space] * batch if space is None or isinstance(space, Space) else list(space)
        if len(spaces) != batch:
            raise ParameterError("space", f"{len(spaces)} spaces", f"one Space, or {batch} (one per element)")
        unit = Space.from_spacing(spatial)                 # (once, not per element)
        spaces = [unit if s is None else s for s in spaces]
        for what, given in (("points", points), ("boxes", boxes)):
            if given is not None and len(given) != batch:
                raise ParameterError(what, f"{len(given)} dicts", f"{batch} (one per element)")
        for name, t in (("label", label), ("valid", valid)):
            if t is not None and (t.dim() != image.dim() or t.shape[0] != batch or tuple(t.shape[2:]) != spatial):
                raise ShapeError(f"{name} has shape {tuple(t.shape)}; the image batch needs "
                                 f"({batch}, 1, {', '.join(map(str, spatial))})")
        out = []
        for b in range(batch):
            if tuple(spaces[b].shape) != spatial:
                raise ShapeError(f"space[{b}] has shape {spaces[b].shape}; the batch is {spatial}")
            data = image[b] if valid is None else \
                torch.where(valid[b].bool(), image[b], torch.full_like(image[b], fill))
            layers = {"image": Layer(data, Role.INTENSITY, fill, None if channels is None else tuple(channels))}
            if label is not None:
                layers["label"] = Layer(label[b], Role.LABEL, 0, interpolation=label_interpolation)
            if valid is not None:
                layers["valid"] = Layer(valid[b].bool(), Role.VALID)
            out.append(Sample(spaces[b], layers, None if points is None else points[b], meta=meta,
                              boxes=None if boxes is None else boxes[b]))
        return out

    def augment(self, samples: Sequence[Sample], *, epoch: int = 0, indices: Sequence[int] | None = None,
                records: Sequence[Sequence[ParamRecord | dict[str, Any]]] | None = None) -> list[Sample]:
        """The pipeline on every sample of a batch at once (any layers, grids and targets), each element
        drawing from ``generator_for(seed, epoch, indices[b])``: equal to ``pipeline(samples[b], that
        generator)``, record included. With ``records`` (one list per element) they are replayed."""
        samples = list(samples)
        if not all(isinstance(s, Sample) for s in samples):
            raise ParameterError("samples", [type(s).__name__ for s in samples], "a list of domainaug Samples")
        if records is not None:
            if len(records) != len(samples):
                raise ParameterError("records", f"{len(records)} lists", f"{len(samples)} (one per element)")
            return [replay(s, r) for s, r in zip(samples, records)]
        indices = list(range(len(samples))) if indices is None else list(indices)
        if len(indices) != len(samples):
            raise ParameterError("indices", f"{len(indices)} indices", f"{len(samples)} (one per element)")
        if not samples:
            return []
        if self.pipeline.epoch != epoch:
            self.pipeline.set_epoch(epoch)
        generators = [generator_for(self.seed, epoch, int(i)) for i in indices]
        try:
            outs, params = self.pipeline.step_batch(samples, generators, lazy=False)
        except Exception:
            # the batch runs op by op, so another element's error (at an earlier op) may come first:
            # raise what the first failing element raises alone, as a loop over the elements would
            first = self._first_error(samples, indices, epoch)
            if first is None:
                raise
            raise first from None
        name, config = type(self.pipeline).__name__, self.pipeline.config()     # (one config for the batch)
        done = []
        for s, out, p in zip(samples, outs, params):
            out = out if out is not s else s.replace()
            out.history = list(s.history) + [ParamRecord(name, config, p)]
            done.append(out)
        return done

    def _first_error(self, samples: list[Sample], indices: list[int], epoch: int) -> Exception | None:
        """The error of the first element that fails alone (``None`` when none does)."""
        for s, i in zip(samples, indices):
            try:
                self.pipeline.step(s, generator_for(self.seed, epoch, int(i)), lazy=False)
            except Exception as error:       # noqa: BLE001 - handed back to be raised
                return error
        return None

    def __call__(self, image: torch.Tensor, label: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                 space: Space | Sequence[Space] | None = None, *, fill: float = 0.0,
                 channels: Sequence[str] | None = None, label_interpolation: str | None = None,
                 meta: dict[str, Any] | None = None, points: Sequence[Mapping[str, Any]] | None = None,
                 boxes: Sequence[Mapping[str, Boxes]] | None = None, epoch: int = 0,
                 indices: Sequence[int] | None = None,
                 records: Sequence[Sequence[ParamRecord | dict[str, Any]]] | None = None) -> dict[str, Any]:
        """Augment the batch; returns the outputs stacked as ``collate`` stacks them (every layer,
        ``"present"``, ``"points"``, ``"points_inside"``, ``"boxes"`` (lists per element),
        ``"affine"``, ``"crs"``, ``"records"``; see
        ``domainaug.training.stack``) plus ``"spaces"`` (every element must end on the same grid
        shape, e.g. after a ``Crop``).
        With ``records`` (one list per element) the batch is replayed instead of drawn."""
        samples = self.samples(image, label, valid, space, fill, channels, label_interpolation, meta, points, boxes)
        outs = self.augment(samples, epoch=epoch, indices=indices, records=records)
        names = list(dict.fromkeys(n for o in outs for n in o.layer_names()))
        for name in names:
            shapes = {tuple(o[name].shape) for o in outs if name in o.layer_names()}
            if len(shapes) != 1:
                raise ShapeError(f"the pipeline gives {name!r} shapes {sorted(shapes)} across the batch; end it "
                                 "on one grid size (e.g. with a Crop) to stack them")
        result = stack_samples(outs)                # the same stacking as collate: nothing dropped
        given = {t.untyped_storage().data_ptr() for t in (image, label, valid) if t is not None}
        for name in names:                                            # never the caller's memory
            if result[name].untyped_storage().data_ptr() in given:
                result[name] = result[name].clone()
        result["spaces"] = [o.space for o in outs]
        return result
