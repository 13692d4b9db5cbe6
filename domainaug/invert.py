"""``Invert``: the inverse of the spatial part of recorded transforms, for a sample, a prediction
tensor or points.

The records are the ``ParamRecord``s a call appended to ``Sample.history``. No data is needed to
invert them: each record's spatial map is rebuilt from its params (``core.transform.trace``) and
turned around stage by stage (``core.maps``): affine stages exactly, elastic fields by a fixed point
on their control lattice. Records with no spatial map (intensity ops) are skipped: an intensity
change has no spatial inverse and stays in the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from .core.kernels.resample import resample_layers
from .core.kernels.spec import INTENSITY_MODES, LABEL_MODES, LayerSpec
from .core.maps import Field, PendingMap, Stage, fuse_stages, invert_field, pull_back_points
from .core.params import check_positive_int
from .core.record import ParamRecord
from .core.sample import Role, Sample, check_fill
from .core.space import Space
from .core.transform import transform_from_dict
from .errors import ParameterError, ShapeError, SpaceMismatchError

__all__ = ["Invert"]

_P = TypeVar("_P", torch.Tensor, np.ndarray)

#: Largest residual of an elastic field's inverse at its lattice nodes, in voxels of the grid it acts
#: on; a field whose fixed point does not reach it folds somewhere and has no inverse.
FOLD_TOLERANCE = 0.05


class Invert:
    """The inverse of the spatial records that made an augmented output from ``source``.

    One object per view, as MONAI's ``Invertd`` is built once from the pre-transforms: the map back
    (the elastic inversion included) is computed once here and serves the augmented sample, any
    number of prediction tensors of the same view and its points. ``TestTimeAugmentation`` and the
    MONAI/TorchIO adapters (``Invertd``/``inverse()``, ``subject.apply_inverse_transform()``) go
    through it.

    What comes back, on ``source``'s grid:

    - a ``Sample`` (``invert(sample)``): every layer through the one resampler by its role (LABEL by
      its rule, never a new label; VALID propagated), each layer back on its own grid of ``source``
      when ``source`` is the input ``Sample``; voxels the view did not cover hold the layer's fill and
      are false in a ``"valid"`` layer (added only when some voxel was not covered); points go back
      exactly (the pull-back is evaluated, not inverted). ``history`` and ``meta`` are kept: an
      intensity change the records made stays in the data.
    - a tensor ``(C, *spatial)`` on the augmented grid (``invert(prediction)``): probabilities and
      intensities linearly (``mode="linear"``, the default for floats), label maps by ``"nearest"``
      (the default for integer and bool tensors) or ``"argmax"`` (one-hot-linear-argmax); the dtype
      and device are kept; voxels the view did not cover get ``fill``. ``with_coverage`` also returns
      the covered voxels.
    - points ``(N, ndim)`` in world units (``invert.points(p)``): where the content at ``p`` in the
      augmented output was in the input.

    Tolerance: exact (a copy) for flips, quarter turns, crops and pads on the grid; affine maps to
    interpolation error; an elastic field's inverse is exact at its control-lattice nodes (to
    ``FOLD_TOLERANCE`` voxel, checked) and linear between them: below half a voxel for the fields
    ``Elastic`` draws (on the shipped T1 with 6 mm displacements: mean 0.01, max 0.06 voxel);
    points round-trip to 1e-6 world units through an affine, and to the fixed point of
    ``push_forward_points`` through a field.

    Args:
        records: ``ParamRecord``s (or their dicts, e.g. from JSON) in the order they were applied,
            e.g. ``out.history[len(sample.history):]``. Records without a spatial map are skipped:
            a record's map is its transform's ``geometry`` (a ``SpatialTransform``'s
            ``spatial_map``; composites walk their children), so a transform that moves content
            must be a ``SpatialTransform`` to be inverted.
        source: The input the records were applied to: its ``Space``, or the input ``Sample`` (needed
            when layers are on grids of their own: each goes back onto its own grid).
        iterations: Fixed-point iterations of an elastic field's inverse.

    Raises:
        ParameterError: A record names no registered transform, or its map cannot be inverted (an
            elastic field that folds); the message names the record's index and transform.

    Example:
        >>> out = Compose([Flip(axes=0), Elastic(), Gamma((0.8, 1.2))])(sample, generator_for(0))
        >>> invert = Invert(out.history[len(sample.history):], sample)
        >>> back = invert(out)                      # a Sample on sample.space
        >>> probs = invert(model(out["image"]))     # (K, *spatial) on sample.space
        >>> where = invert.points(out.points["landmarks"])
    """

    def __init__(self, records: Sequence[ParamRecord | dict[str, Any]], source: Space | Sample, *,
                 iterations: int = 30) -> None:
        if isinstance(source, Sample):
            self.sample: Sample | None = source
            space = source.space
        elif isinstance(source, Space):
            self.sample, space = None, source
        else:
            raise ParameterError("source", type(source).__name__, "the input's Space or Sample")
        if isinstance(records, (ParamRecord, dict)) or not isinstance(records, Sequence):
            raise ParameterError("records", type(records).__name__, "a list of ParamRecords (or their dicts)")
        self.iterations = check_positive_int("iterations", iterations)
        self.records = [r if isinstance(r, ParamRecord) else ParamRecord.from_dict(r) for r in records]
        self.source = space
        forward = PendingMap(space, space, [])
        back: list[Stage] = []
        for i, record in enumerate(self.records):
            try:
                transform = transform_from_dict(record.to_dict())
            except (ParameterError, TypeError) as error:
                raise ParameterError(f"records[{i}]", record.transform, f"a record of a registered transform "
                                     f"with its arguments ({error})") from error
            here = forward.space
            step = transform.geometry(PendingMap(here, here, []), record.params)
            for stage in reversed(step.stages):          # this record's pull-back, turned around
                if isinstance(stage, Field):
                    inverse, residual = invert_field(stage, self.iterations)
                    voxels = residual / float(here.spacing.min())
                    if voxels > FOLD_TOLERANCE:
                        raise ParameterError(f"records[{i}]", record.transform, f"an invertible map: its field's "
                                             f"inverse leaves {voxels:.3g} voxel at a control point (more than "
                                             f"{FOLD_TOLERANCE}), so the deformation folds")
                    back.append(inverse)
                else:
                    back.append(np.linalg.inv(stage))
            forward = forward.then(step.space, step.stages)
        self.forward = forward
        self.inverse = PendingMap(forward.space, space, fuse_stages(back))

    @property
    def space(self) -> Space:
        """The augmented grid the records made from ``source`` (what ``invert`` takes)."""
        return self.forward.space

    # --- samples ----------------------------------------------------------------------------------
    def __call__(self, x: Sample | torch.Tensor | np.ndarray, *, mode: str | None = None,
                 fill: float = 0.0) -> Any:
        """``x`` mapped back onto ``source``.

        Args:
            x: The augmented ``Sample`` (each layer's role and fill decide; ``mode``/``fill`` unused),
                or a ``(C, *spatial)`` tensor or array on the augmented grid (numpy in, numpy out).
            mode: For a tensor: the interpolation (see ``with_coverage``).
            fill: For a tensor: the value of voxels the view did not cover.

        Example:
            >>> out = Compose([Flip(axes=0), Elastic()])(sample, generator_for(0))
            >>> invert = Invert(out.history[len(sample.history):], sample)
            >>> labels = invert(model(out["image"][None])[0].argmax(0, keepdim=True))   # nearest
        """
        if isinstance(x, Sample):
            return self._sample(x)
        back, _ = self.with_coverage(x, mode=mode, fill=fill)
        return back.cpu().numpy() if isinstance(x, np.ndarray) else back

    def _sample(self, out: Sample) -> Sample:
        if not out.space.same_grid(self.space, tolerance=1e-6):
            raise SpaceMismatchError(f"the sample to invert is on {out.space.describe()}, but the records make "
                                     f"{self.space.describe()} from the source")
        grids: dict[str, Space] = {}
        if out.grids:
            if self.sample is None:
                raise ParameterError("source", "a Space", f"the input Sample: layers {sorted(out.grids)} are on "
                                     "grids of their own, and each goes back onto its own grid of the input")
            missing = sorted(n for n in out.grids if n not in self.sample.layer_names())
            if missing:
                raise ParameterError("source", f"a Sample without layers {missing}", "the input Sample the "
                                     "records were applied to (it names the grid each layer goes back onto)")
            grids = {n: self.sample.space_of(n) for n in out.layer_names() if n in self.sample.layer_names()}
        before = set(out.layer_names())
        marked = out.with_valid()
        back = marked.lazy_warp(self.source, list(self.inverse.stages), grids).materialize()
        layers = dict(back.layers)
        for name in set(layers) - before:        # a coverage layer that covers everything says nothing
            if layers[name].role is Role.VALID and bool(layers[name].data.all()):
                del layers[name]
        points = {name: torch.from_numpy(pull_back_points(self.forward.stages, p.cpu().numpy())).to(p)
                  for name, p in out.points.items()}
        return back.replace(layers=layers, points=points, history=list(out.history), meta=dict(out.meta),
                            grids={n: g for n, g in back.grids.items() if n in layers})

    # --- tensors ----------------------------------------------------------------------------------
    def with_coverage(self, prediction: torch.Tensor | np.ndarray, *, mode: str | None = None, fill: float = 0.0,
                      valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A prediction ``(C, *spatial)`` on the augmented grid mapped back onto ``source``, and the
        bool map ``(1, *spatial)`` of the source voxels the view covered.

        Args:
            prediction: Tensor or array on the augmented grid (``self.space``).
            mode: ``"linear"`` (default for float data: probabilities, logits, intensities),
                ``"cubic"`` or ``"nearest"`` for float data; ``"nearest"`` (default) or ``"argmax"``
                for integer or bool label maps (never a new label).
            fill: The value of voxels the view did not cover.
            valid: Optional ``(1, *spatial)`` bool map of the augmented voxels that hold data (e.g. the
                view's VALID layer); only those count as covered.
        """
        data = prediction if isinstance(prediction, torch.Tensor) else \
            torch.from_numpy(np.ascontiguousarray(prediction))
        shape = tuple(self.space.shape)
        if data.dim() != len(shape) + 1 or tuple(data.shape[1:]) != shape:
            raise ShapeError(f"prediction has shape {tuple(data.shape)}; the augmented grid needs "
                             f"(C, {', '.join(map(str, shape))})")
        labels = not data.dtype.is_floating_point
        if data.dtype.is_complex:
            raise ParameterError("prediction", str(data.dtype), "a real float, integer or bool tensor")
        modes = LABEL_MODES if labels else INTENSITY_MODES
        mode = ("nearest" if labels else "linear") if mode is None else mode
        if mode not in modes:
            what = "an integer label map" if labels else "float data (argmax is for integer label maps: "\
                "invert probabilities linearly, then take .argmax(0))"
            raise ParameterError("mode", mode, f"one of {sorted(modes)} for {what}")
        dtype = data.dtype
        if dtype == torch.bool:
            work = data.to(torch.uint8)
        elif labels or dtype in (torch.float32, torch.float64):
            work = data
        else:
            work = data.to(torch.float32)
        seen = torch.ones((1,) + shape, dtype=torch.bool, device=data.device) if valid is None else \
            torch.as_tensor(valid, device=data.device).bool()
        if tuple(seen.shape) != (1,) + shape:
            raise ShapeError(f"valid has shape {tuple(seen.shape)}; expected (1, {', '.join(map(str, shape))})")
        spec = LayerSpec(work, "label" if labels else "intensity", mode, 0.0)
        out, covered = resample_layers([spec, LayerSpec(seen, "valid", "valid", 0.0)], self.inverse)
        covered = covered.bool()
        value = check_fill(fill, work.dtype)
        out = torch.where(covered, out, torch.tensor(value, dtype=out.dtype, device=out.device))
        return out.to(dtype), covered

    # --- points -----------------------------------------------------------------------------------
    def points(self, points: _P) -> _P:
        """World points of the augmented output -> where that content was in the input.

        Args:
            points: ``(N, ndim)`` world coordinates (mm, CRS units), a tensor or an array; the
                result is of the same kind.

        Example:
            >>> out = Compose([Flip(axes=0), Elastic()])(sample, generator_for(0))
            >>> invert = Invert(out.history[len(sample.history):], sample)
            >>> where = invert.points(out.points["landmarks"])
        """
        array = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
        if array.ndim != 2 or array.shape[1] != self.source.ndim:
            raise ShapeError(f"points have shape {tuple(array.shape)}; expected (N, {self.source.ndim}) world "
                             "coordinates")
        back = pull_back_points(self.forward.stages, array.astype(np.float64))
        if isinstance(points, torch.Tensor):
            return torch.from_numpy(back).to(points)
        return back.astype(array.dtype) if array.dtype.kind == "f" else back
