"""Patch swapping, histogram remapping and coarse dropout: the TorchIO ``RandomSwap`` and MONAI
``RandHistogramShift`` / ``RandCoarseDropout`` of domainaug. Lengths are in mm (CRS units for
rasters) along world axes; statistics are over valid voxels; they work on scans and rasters alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from ..core.kernels.grid import lengths_in_voxels
from ..core.params import (
    PerAxis,
    Uniform,
    as_lengths,
    as_per_axis,
    check_positive_int,
    draw_per_axis,
)
from ..core.sample import Sample
from ..core.space import Space
from ..core.transform import IntensityTransform
from ..core.values import channel_stats, per_element
from ..errors import ParameterError, SampleError

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["Swap", "HistogramShift", "CoarseDropout"]


def _voxels(space: Space, lengths: Sequence[float]) -> list[int]:
    """Per array axis, the voxels (at least 1, at most the axis) that a length per *world* axis spans."""
    along = lengths_in_voxels([float(lengths[w]) for w in space.world_axes()], space.spacing)
    return [min(n, v) for n, v in zip(space.shape, along)]


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in ``[low, high]``."""
    return low + int(torch.randint(0, high - low + 1, (), generator=generator).item())


def _int_range(name: str, value: Any, minimum: int) -> int | list[int]:
    """An integer ``>= minimum`` (fixed) or a ``(min, max)`` pair of them (drawn uniformly)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_positive_int(name, value, minimum)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value) and value[0] <= value[1]:
        return [int(value[0]), int(value[1])]
    raise ParameterError(name, value, f"an integer >= {minimum} or a (min, max) pair of them")


def _draw_int(value: int | list[int], generator: torch.Generator) -> int:
    return value if isinstance(value, int) else _randint(value[0], value[1], generator)


class Swap(IntensityTransform):
    """Patch swapping (TorchIO ``RandomSwap``; Chen et al. 2019, context restoration): swap the
    contents of ``num_swaps`` pairs of random patches, one after the other.

    The two patches of a pair never overlap, so every layer's values are permuted (the multiset of
    values is kept). Every target layer gets the same swaps; labels and VALID are untouched.
    **Validity:** a voxel is exchanged with its twin only where both are valid, so no value moves
    between valid and invalid voxels (nodata stays nodata, and no nodata value enters the data).

    Args:
        patch_size: Patch side in mm (CRS units for rasters), one number or one per world axis;
            each becomes whole voxels along the array axis closest to it (at least 1).
        num_swaps: Pairs of patches swapped, an integer >= 0 (0 is the identity).
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer).
        p: Probability of applying.

    Raises:
        ParameterError: (when applied) patches too large for two to fit side by side along any axis.

    Example:
        >>> out = Swap(patch_size=15.0, num_swaps=50)(sample, torch.Generator().manual_seed(0))

    Params: ``{"size": [voxels per array axis], "swaps": [[start of a, start of b], ...]}``.
    """

    grid_params = True          # patch positions are drawn in the voxels of one grid

    def __init__(self, patch_size: float | Sequence[float] = 15.0, num_swaps: int = 100,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.patch_size = as_lengths("patch_size", patch_size)
        self.num_swaps = check_positive_int("num_swaps", num_swaps, 0)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        lengths = as_lengths("patch_size", self.patch_size, space.ndim)
        size = _voxels(space, [lengths] * space.ndim if isinstance(lengths, float) else lengths)
        apart = [a for a, (n, s) in enumerate(zip(space.shape, size)) if 2 * s <= n]
        if self.num_swaps and not apart:
            raise ParameterError("patch_size", self.patch_size, f"patches that fit twice side by side along some "
                                 f"axis of the grid ({space.describe()}; they are {size} voxels)")
        swaps = []
        for _ in range(self.num_swaps):
            axis = apart[_randint(0, len(apart) - 1, generator)]     # the pair is apart along this axis
            a, b = [], []
            for d, (n, s) in enumerate(zip(space.shape, size)):
                if d == axis:        # two disjoint intervals: sorted offsets in the slack, the second shifted by s
                    u, v = sorted((_randint(0, n - 2 * s, generator), _randint(0, n - 2 * s, generator)))
                    first, second = (u, v + s) if _randint(0, 1, generator) else (v + s, u)
                else:
                    first, second = _randint(0, n - s, generator), _randint(0, n - s, generator)
                a.append(first)
                b.append(second)
            swaps.append([a, b])
        return {"size": size, "swaps": swaps}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if not params["swaps"]:
            return data
        size, shape = params["size"], data.shape[1:]
        out = data.clone()
        for a, b in params["swaps"]:
            if any(not (0 <= x and x + s <= n and 0 <= y and y + s <= n) for x, y, s, n in zip(a, b, size, shape)):
                raise ParameterError("params['swaps']", [a, b], f"patches of {size} voxels inside the grid {shape}")
            sa = (slice(None),) + tuple(slice(x, x + s) for x, s in zip(a, size))
            sb = (slice(None),) + tuple(slice(y, y + s) for y, s in zip(b, size))
            pa, pb = out[sa].clone(), out[sb].clone()
            if valid is None:
                out[sa], out[sb] = pb, pa
            else:
                both = valid[sa] & valid[sb]
                out[sa], out[sb] = torch.where(both, pb, pa), torch.where(both, pa, pb)
        return out

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Swap(patch_size=3 * float(s.space.spacing.max()), num_swaps=20),
            identity=lambda s: Swap(num_swaps=0),
            bad=[("patch_size", lambda: Swap(patch_size=0)), ("num_swaps", lambda: Swap(num_swaps=-1))])


class HistogramShift(IntensityTransform):
    """Random monotone intensity remapping (MONAI ``RandHistogramShift``, Nyúl-style): a piecewise
    linear map through ``num_control_points`` points, evenly spaced over each channel's valid range
    ``[min, max]``, whose outputs are drawn one after the other, each uniform between the previous
    output and the next point's input. The ends stay put (min -> min, max -> max) and the map is
    non-decreasing, so the order of intensities is kept while the histogram is stretched and
    squeezed. One map (in units of the range) serves every channel and target layer.

    Args:
        num_control_points: Control points including both ends, an integer >= 3 or a
            ``(min, max)`` pair of them (drawn uniformly). MONAI's default is 10.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer).
        p: Probability of applying.

    Example:
        >>> out = HistogramShift((5, 15))(sample, torch.Generator().manual_seed(0))

    Params: ``{"points": [outputs of the control points, in [0, 1] of the range]}`` (inputs are
    ``linspace(0, 1, len(points))``); MONAI's ``floating_control_points``.
    """

    def __init__(self, num_control_points: int | tuple[int, int] = 10, layers: Sequence[str] | None = None,
                 p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.num_control_points = _int_range("num_control_points", num_control_points, 3)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        n = _draw_int(self.num_control_points, generator)
        points = [i / (n - 1) for i in range(n)]
        for i in range(1, n - 1):
            u = torch.rand((), generator=generator, dtype=torch.float64).item()
            points[i] = points[i - 1] + (points[i + 1] - points[i - 1]) * u
        return {"points": points}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        ys = self._points(params)
        s = channel_stats(data, valid, ("min", "max"))
        return _remap(data, s["min"], s["max"] - s["min"], ys.to(device=data.device, dtype=data.dtype), len(ys) - 1, 0)

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        """Every element's map in one table, each element indexing its own part of it (``offset``)."""
        tables = [self._points(p) for p in params]
        stats = [channel_stats(data[b], None if valid is None else valid[b], ("min", "max"))
                 for b in range(data.shape[0])]
        lo = per_element([s["min"] for s in stats], data)
        span = per_element([s["max"] - s["min"] for s in stats], data)
        offsets = [sum(len(t) for t in tables[:b]) for b in range(len(tables))]
        return _remap(data, lo, span, torch.cat(tables).to(device=data.device, dtype=data.dtype),
                      per_element([len(t) - 1 for t in tables], data),
                      per_element(offsets, data, torch.int64))

    @staticmethod
    def _points(params: dict[str, Any]) -> torch.Tensor:
        ys = torch.tensor(params["points"], dtype=torch.float64)
        if len(ys) < 2 or bool((ys[1:] < ys[:-1]).any()) or float(ys[0]) != 0.0 or float(ys[-1]) != 1.0:
            raise ParameterError("params['points']", params["points"], "a non-decreasing list from 0 to 1")
        return ys

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: HistogramShift((4, 12)), identity=lambda s: HistogramShift(p=0.0),
            bad=[("num_control_points", lambda: HistogramShift(2)),
                 ("num_control_points", lambda: HistogramShift((8, 4)))])


def _remap(data: torch.Tensor, lo: torch.Tensor, span: torch.Tensor, ys: torch.Tensor, segments: Any,
           offset: Any) -> torch.Tensor:
    """The piecewise linear map through ``ys[offset:offset + segments + 1]`` (outputs at evenly spaced
    inputs over ``[lo, lo + span]``), where the span is > 0; ``segments`` and ``offset`` per element
    in a batch."""
    u = ((data - lo) / span.clamp(min=torch.finfo(data.dtype).tiny)).clamp_(0.0, 1.0) * segments
    seg = torch.minimum(u.floor(), segments - 1) if isinstance(segments, torch.Tensor) else \
        u.floor().clamp_(max=segments - 1)
    t = u - seg
    index = seg.long() + offset
    mapped = ys[index] + t * (ys[index + 1] - ys[index])
    return torch.where(span > 0, lo + mapped * span, data)


#: The fills of ``CoarseDropout`` other than a number.
DROPOUT_FILLS = ("min", "mean", "nodata")


class CoarseDropout(IntensityTransform):
    """Coarse dropout / cutout (MONAI ``RandCoarseDropout``; DeVries & Taylor 2017): set random boxes
    (cuboids in 3D, rectangles in 2D) of every target layer to a fill value.

    **Fill and validity.** ``fill="min"`` (default) writes each channel's minimum over valid voxels,
    the background a warp fills with (DESIGN §9: air in CT, background in MR); ``"mean"`` the
    channel's valid mean; a number that value. Those boxes stay *valid*: they are data the network
    sees, as MONAI's. ``fill="nodata"`` instead makes the boxes missing data: the VALID layer is
    cleared there (an all-true one named ``valid`` is added when the sample has none) and the
    values become the layer's fill, as every invalid voxel holds; a loss or metric masked by VALID
    then ignores them. Labels are never changed; invalid voxels stay untouched.

    Args:
        size: Box side in mm (CRS units for rasters) along each world axis: a number is fixed, a
            ``(min, max)`` range is drawn per axis and box, or one number or pair per world axis.
            Each side becomes whole voxels along the array axis closest to it (at least 1).
        num_boxes: Boxes per call, an integer >= 0 or a ``(min, max)`` pair of them; 0 is the identity.
        fill: ``"min"``, ``"mean"``, ``"nodata"`` or a number (intensity units); see above.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer: the same boxes in every contrast or date).
        p: Probability of applying.

    Raises:
        SampleError: ``fill="nodata"`` on a sample whose layers are on several grids.

    Example:
        >>> out = CoarseDropout(size=(5.0, 20.0), num_boxes=(1, 4))(sample, torch.Generator().manual_seed(0))

    Params: ``{"boxes": [{"size_mm": [per world axis], "start": [...], "size": [voxels per array axis]}]}``.
    """

    grid_params = True          # box positions are drawn in the voxels of one grid

    def __init__(self, size: float | tuple[float, float] | Sequence[float | tuple[float, float]] = (5.0, 20.0),
                 num_boxes: int | tuple[int, int] = (1, 4), fill: float | str = "min",
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.size: Uniform | PerAxis = as_per_axis("size", size, low=0.0)
        low = min(v.low for v in self.size.values) if isinstance(self.size, PerAxis) else self.size.low
        if not low > 0:
            raise ParameterError("size", size, "box sides in world units > 0")
        self.num_boxes = _int_range("num_boxes", num_boxes, 0)
        if isinstance(fill, str):
            if fill not in DROPOUT_FILLS:
                raise ParameterError("fill", fill, "one of 'min', 'mean', 'nodata' or a finite number")
        elif isinstance(fill, bool) or not isinstance(fill, (int, float)) or not abs(fill) < float("inf"):
            raise ParameterError("fill", fill, "one of 'min', 'mean', 'nodata' or a finite number")
        self.fill = fill if isinstance(fill, str) else float(fill)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        boxes = []
        for _ in range(_draw_int(self.num_boxes, generator)):
            mm = draw_per_axis("size", self.size, space.ndim, space.ndim, generator)
            size = _voxels(space, mm)
            start = [_randint(0, n - s, generator) for n, s in zip(space.shape, size)]
            boxes.append({"size_mm": mm, "start": start, "size": size})
        return {"boxes": boxes}

    @staticmethod
    def _box(box: dict[str, Any], shape: Sequence[int]) -> tuple[slice, ...]:
        start, size = box["start"], box["size"]
        if len(start) != len(shape) or len(size) != len(shape) or any(
                not (0 <= x and 1 <= s and x + s <= n) for x, s, n in zip(start, size, shape)):
            raise ParameterError("params['boxes']", box, f"boxes inside the grid {tuple(shape)}")
        return (slice(None),) + tuple(slice(x, x + s) for x, s in zip(start, size))

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if not params["boxes"]:
            return data
        column = (data.shape[0],) + (1,) * (data.dim() - 1)
        if self.fill == "nodata":
            value = torch.full(column, float(sample.layer_info(name).fill), dtype=data.dtype, device=data.device)
        elif isinstance(self.fill, str):
            value = channel_stats(data, valid, (self.fill,))[self.fill]
        else:
            value = torch.full(column, self.fill, dtype=data.dtype, device=data.device)
        out = data.clone()
        for box in params["boxes"]:
            where = self._box(box, data.shape[1:])
            out[where] = value.expand_as(out[where])
        return out

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        if self.fill != "nodata":
            return super().apply(sample, params)
        boxes = [b for _, own in self.layer_params(sample, params) for b in own["boxes"]]
        if not boxes:
            return super().apply(sample, params)
        if sample.grids:
            raise SampleError(f"CoarseDropout(fill='nodata') marks its boxes in one VALID layer, and layers "
                              f"{sorted(sample.grids)} are on grids of their own; put ResampleToMatch(target=...) "
                              "first, or use another fill")
        out = super().apply(sample, params).with_valid()
        name = out.valid_name or "valid"            # (with_valid added one when there was none)
        layer = out.layer_info(name)
        valid = layer.data.clone()
        for box in boxes:
            valid[self._box(box, valid.shape[1:])] = False
        return out.with_layers(**{name: replace(layer, data=valid)})

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: CoarseDropout(size=(2 * float(s.space.spacing.max()), 5 * float(s.space.spacing.max())),
                                           num_boxes=(1, 3), fill="nodata"),
            identity=lambda s: CoarseDropout(num_boxes=0, fill="nodata"),
            bad=[("size", lambda: CoarseDropout(size=0)), ("num_boxes", lambda: CoarseDropout(num_boxes=(3, 1))),
                 ("fill", lambda: CoarseDropout(fill="zero"))])
