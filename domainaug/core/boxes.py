"""Boxes as a target: axis-aligned 2D/3D boxes and oriented 2D boxes in world units, which every
spatial op moves with the content, clips to its output grid and filters.

``Boxes.data`` is float64, in world units (mm for scans, CRS units for rasters), in world-axis order
(the order of ``Sample.points``: x, y[, z] of the index -> world affine):

- ``kind="axis"``: ``(N, 2 * ndim)`` min then max corners, ``(x0, y0[, z0], x1, y1[, z1])``, the
  world counterpart of MONAI's ``xyzxyz`` and torchvision's ``XYXY``;
- ``kind="oriented"`` (2D): ``(N, 5)`` ``(cx, cy, w, h, angle)``, the angle in degrees from world
  axis 0 towards axis 1 (counter-clockwise from x towards y, as ``Affine``'s), along which ``w`` is
  measured, normalised to ``[-90, 90)``; a rectangle, as DOTA-style detection uses.

How a map moves them (``move_boxes``): boundary points of each box are pushed through the map, and
the box becomes the **enclosing box** of the moved points: the axis-aligned one, or for an oriented
box the enclosing rectangle aligned with the moved width axis (the image of the segment joining the
midpoints of the box's two ``h`` edges). For an affine map the
box corners suffice and the result is exact: the enclosing box of the moved parallelepiped, and the
exact rotated box when the map is a similarity (rotation, flip, uniform scale); a shear gives the
enclosing rectangle at the moved width axis, not the minimum-area one, which keeps ``w``/``h`` and
the angle continuous (a minimum-area fit of a near-square box jumps by 90 degrees). With a
displacement field (Elastic) the boundary is sampled densely enough, from the field's curvature,
that the envelope is within about a tenth of a voxel.

Then every op **clips** the boxes to its output grid's field of view (the voxels' outer edges) and
**filters** them: ``visibility`` is the fraction of each box's area (volume in 3D) still in view,
multiplied over the ops since the box was given (a crop to 40% then another to 40% leaves 16%); a
box with nothing in view, with ``visibility < min_visibility`` or with a side shorter than
``min_size`` (world units, after clipping) is dropped, and ``labels`` and ``visibility`` are kept in
step. ``min_visibility`` and ``min_size`` travel with the boxes (Albumentations' ``BboxParams``
set once on the target instead of on a pipeline). Clipping is exact on every grid: a box on a grid
whose axes follow the world axes (north-up rasters, RAS/LPS scans) is cut to the grid's world box; on
an oblique grid the box becomes the enclosing box of the part in view (a polygon clip in 2D, the
polytope's vertices in 3D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from .kernels.grid import apply_affine
from .maps import Field, Stage, forward_affine, push_forward_points
from .space import Space

__all__ = ["Boxes", "BOX_KINDS", "MONAI_MODES", "move_boxes", "clip_boxes", "cut_boxes", "join_boxes", "inside_view"]

BOX_KINDS = ("axis", "oriented")

#: The MONAI ``box_utils`` modes ``to_monai``/``from_monai`` convert (2D, 3D).
MONAI_MODES = {2: ("xyxy", "xxyy", "xywh", "ccwh"), 3: ("xyzxyz", "xxyyzz", "xyzwhd", "cccwhd")}


# Not frozen: Lightning (lightning_utilities.apply_to_collection) moves a batch to the device by
# setting each dataclass field of a copy, which a frozen dataclass refuses; ops never mutate a Boxes.
@dataclass(eq=False)
class Boxes:
    """Boxes in world units with per-box labels (see the module docstring for the layouts).

    Args:
        data: ``(N, 2 * ndim)`` min/max corners (``kind="axis"``) or ``(N, 5)`` ``(cx, cy, w, h,
            angle_degrees)`` (``kind="oriented"``, 2D), world units; becomes float64.
        labels: ``(N,)`` integer class per box (default 0), kept in step when boxes are dropped.
        kind: ``"axis"`` or ``"oriented"``.
        min_visibility: Drop a box once less than this fraction of its area is left in view, in [0, 1].
        min_size: Drop a box once a side is shorter than this, world units, >= 0.
        visibility: ``(N,)`` fraction of each box still in view (default 1; spatial ops update it).

    The tensors live on the CPU whatever device the layers are on (boxes are a few numbers per
    object, moved with numpy).
    """

    data: Any
    labels: Any = None
    kind: str = "axis"
    min_visibility: float = 0.0
    min_size: float = 0.0
    visibility: Any = None

    def __post_init__(self) -> None:
        if self.kind not in BOX_KINDS:
            raise ParameterError("kind", self.kind, f"one of {list(BOX_KINDS)}")
        data = torch.as_tensor(np.asarray(self.data, dtype=np.float64) if not isinstance(self.data, torch.Tensor)
                               else self.data).to("cpu", torch.float64)      # small: moved with numpy, on the CPU
        if data.dim() == 2 and data.shape[0] == 0 and data.shape[1] == 0:
            data = data.reshape(0, 5 if self.kind == "oriented" else 4)
        widths = (5,) if self.kind == "oriented" else (4, 6)
        if data.dim() != 2 or data.shape[1] not in widths:
            raise ShapeError(f"boxes of kind {self.kind!r} have shape {tuple(data.shape)}; expected (N, "
                             f"{' or '.join(map(str, widths))})")
        if not bool(torch.isfinite(data).all()):
            raise ParameterError("boxes", "NaN/Inf coordinates", "finite world coordinates")
        n = len(data)
        if self.kind == "axis":
            half = data.shape[1] // 2
            if bool((data[:, :half] > data[:, half:]).any()):
                raise ParameterError("boxes", "a minimum corner above its maximum", "min <= max on every axis")
        else:
            if bool((data[:, 2:4] < 0).any()):
                raise ParameterError("boxes", "a negative width or height", "w, h >= 0")
            data = data.clone()
            data[:, 4] = torch.remainder(data[:, 4] + 90.0, 180.0) - 90.0     # a rectangle: angle mod 180
        labels = torch.zeros(n, dtype=torch.int64) if self.labels is None else torch.as_tensor(
            np.asarray(self.labels) if not isinstance(self.labels, torch.Tensor) else self.labels.cpu())
        if labels.shape != (n,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ParameterError("labels", f"{str(labels.dtype)} of shape {tuple(labels.shape)}",
                                 f"({n},) integer labels, one per box")
        visibility = torch.ones(n, dtype=torch.float64) if self.visibility is None else torch.as_tensor(
            self.visibility, dtype=torch.float64, device="cpu")
        if visibility.shape != (n,):
            raise ShapeError(f"visibility has shape {tuple(visibility.shape)}; expected ({n},)")
        if isinstance(self.min_visibility, bool) or not 0.0 <= float(self.min_visibility) <= 1.0:
            raise ParameterError("min_visibility", self.min_visibility, "a fraction in [0, 1]")
        if isinstance(self.min_size, bool) or not float(self.min_size) >= 0.0:
            raise ParameterError("min_size", self.min_size, "a length >= 0 in world units")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "labels", labels.to(torch.int64))
        object.__setattr__(self, "visibility", visibility)
        object.__setattr__(self, "min_visibility", float(self.min_visibility))
        object.__setattr__(self, "min_size", float(self.min_size))

    # --- access --------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return 2 if self.kind == "oriented" else self.data.shape[1] // 2

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Boxes({len(self)} {self.kind} {self.ndim}D)"

    def replace(self, **changes: Any) -> Boxes:
        return replace(self, **changes)

    def select(self, keep: Any) -> Boxes:
        """The boxes where ``keep`` (a bool mask or indices), labels and visibility in step."""
        keep = np.asarray(keep.cpu() if isinstance(keep, torch.Tensor) else keep)   # numpy: no thread pool
        if keep.dtype == bool and keep.shape != (len(self),):
            raise ShapeError(f"a mask of shape {keep.shape} for {len(self)} boxes")
        def pick(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(t.numpy()[keep]))
        return replace(self, data=pick(self.data), labels=pick(self.labels), visibility=pick(self.visibility))

    def sizes(self) -> np.ndarray:
        """``(N, ndim)`` side lengths in world units (``w, h`` for oriented boxes)."""
        d = self.data.numpy()
        return d[:, 2:4].copy() if self.kind == "oriented" else d[:, self.ndim:] - d[:, :self.ndim]

    def corners(self) -> np.ndarray:
        """World corners: ``(N, 4, 2)`` for oriented boxes (counter-clockwise in the box's frame, from
        ``(-w/2, -h/2)``), ``(N, 2**ndim, ndim)`` for axis-aligned ones."""
        return _oriented_points(self.data.numpy(), _square_corners()) if self.kind == "oriented" else \
            _axis_points(self.data.numpy(), _cube_corners(self.ndim))

    # --- conversions ---------------------------------------------------------------------------
    def to_pixels(self, space: Space) -> np.ndarray:
        """Array-index corners, voxel ``i`` spanning ``[i, i + 1)`` (the convention of torchvision and
        of MONAI's ``convert_box_to_mask``), in array-axis order: ``(N, 2 * ndim)`` min/max of the
        enclosing index box for axis-aligned boxes (exact on a grid that follows the world axes), or
        ``(N, 4, 2)`` corner points for oriented ones."""
        _check_dim(self, space)
        if self.kind == "oriented":
            return space.world_to_index(self.corners()) + 0.5
        index = space.world_to_index(self.corners()) + 0.5
        return np.concatenate([index.min(1), index.max(1)], axis=1)

    @classmethod
    def from_pixels(cls, pixels: Any, space: Space, labels: Any = None, **options: Any) -> Boxes:
        """The inverse of ``to_pixels``: ``(N, 2 * ndim)`` index boxes give axis-aligned world boxes (the
        enclosing world box on an oblique grid), ``(N, 4, 2)`` index corners give oriented boxes
        (width along the first edge). ``options``: ``min_visibility``, ``min_size``."""
        p = np.asarray(pixels, dtype=np.float64)
        n = space.ndim
        if p.ndim == 3 and p.shape[1:] == (4, 2) and n == 2:
            return cls(_fit_oriented(space.index_to_world(p - 0.5)), labels, "oriented", **options)
        if p.ndim != 2 or p.shape[1] != 2 * n:
            raise ShapeError(f"pixel boxes have shape {p.shape}; expected (N, {2 * n}) or, in 2D, (N, 4, 2)")
        world = space.index_to_world(_axis_points(p - 0.5, _cube_corners(n)))
        return cls(np.concatenate([world.min(1), world.max(1)], axis=1), labels, "axis", **options)

    def to_torchvision(self, space: Space) -> dict[str, torch.Tensor]:
        """``{"boxes", "labels"}`` as torchvision detection models take them: float32 pixel boxes,
        ``x`` along the image width (array axis 1), ``y`` down the rows (axis 0), pixel ``i`` spanning
        ``[i, i + 1)``: ``(N, 4)`` ``XYXY`` for axis-aligned boxes, ``(N, 8)`` ``XYXYXYXY`` corner
        points (DOTA's order of four corners) for oriented ones."""
        if space.ndim != 2:
            raise ShapeError(f"torchvision boxes are 2D; this space is {space.ndim}D (use to_monai)")
        p = self.to_pixels(space)
        boxes = p[..., ::-1].reshape(len(self), 8) if self.kind == "oriented" else p[:, [1, 0, 3, 2]]
        return {"boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)), "labels": self.labels.clone()}

    @classmethod
    def from_torchvision(cls, boxes: Any, space: Space, labels: Any = None, **options: Any) -> Boxes:
        """World boxes from torchvision pixel boxes ``(N, 4)`` ``XYXY`` or ``(N, 8)`` ``XYXYXYXY``."""
        b = np.asarray(boxes, dtype=np.float64)
        if space.ndim != 2 or b.ndim != 2 or b.shape[1] not in (4, 8):
            raise ShapeError(f"torchvision boxes have shape {b.shape} on a {space.ndim}D space; expected (N, 4) "
                             "XYXY or (N, 8) XYXYXYXY on a 2D space")
        pixels = b.reshape(-1, 4, 2)[..., ::-1] if b.shape[1] == 8 else b[:, [1, 0, 3, 2]]
        return cls.from_pixels(pixels, space, labels, **options)

    def to_monai(self, space: Space, mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes, labels)`` in MONAI detection's image coordinates (array-axis order: ``x`` is the
        first spatial axis; voxel ``i`` spans ``[i, i + 1)``), in one of ``MONAI_MODES`` (default
        ``xyxy``/``xyzxyz``, MONAI's standard mode). Axis-aligned boxes only."""
        if self.kind != "axis":
            raise ParameterError("kind", self.kind, "axis-aligned boxes for MONAI (it has no oriented boxes)")
        mode = _monai_mode(mode, space.ndim)
        return torch.from_numpy(_from_standard(self.to_pixels(space), mode)), self.labels.clone()

    @classmethod
    def from_monai(cls, boxes: Any, space: Space, labels: Any = None, mode: str | None = None,
                   **options: Any) -> Boxes:
        """World boxes from MONAI image-coordinate boxes in ``mode`` (see ``to_monai``)."""
        b = np.asarray(boxes.cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
        mode = _monai_mode(mode, space.ndim)
        if b.ndim != 2 or b.shape[1] != 2 * space.ndim:
            raise ShapeError(f"MONAI boxes have shape {b.shape}; expected (N, {2 * space.ndim})")
        return cls.from_pixels(_to_standard(b, mode), space, labels, **options)


# --- the map ---------------------------------------------------------------------------------
def move_boxes(boxes: Boxes, stages: list[Stage], space: Space) -> Boxes:
    """``boxes`` pushed through pull-back ``stages`` (as ``push_forward_points``), then clipped to
    ``space`` (the op's output grid) and filtered (see the module docstring)."""
    if len(boxes) == 0:
        return boxes
    n = boxes.ndim
    fields = [s for s in stages if isinstance(s, Field)]
    data = boxes.data.numpy()
    if boxes.kind == "axis":
        if not fields:
            corners = _axis_points(data, _cube_corners(n))
            moved = apply_affine(forward_affine(stages, n), corners) if stages else corners
            out = np.concatenate([moved.min(1), moved.max(1)], axis=1)
        else:
            out = np.empty_like(data)
            step = _sample_step(fields, space)
            for m, which in _buckets(data[:, n:] - data[:, :n], step, least=2):
                pts = _axis_points(data[which], _cube_boundary(n, m))
                moved = push_forward_points(stages, pts.reshape(-1, n)).reshape(pts.shape)
                out[which] = np.concatenate([moved.min(1), moved.max(1)], axis=1)
    else:
        out = np.empty_like(data)
        step = _sample_step(fields, space) if fields else math.inf
        for m, which in _buckets(data[:, 2:4], step, least=2):
            template = _cube_boundary(2, m) - 0.5
            pts = _oriented_points(data[which], template)
            moved = (push_forward_points(stages, pts.reshape(-1, 2)).reshape(pts.shape) if fields else
                     apply_affine(forward_affine(stages, 2), pts) if stages else pts)
            out[which] = _enclose_oriented(moved, template, data[which, 4])
    return clip_boxes(boxes.replace(data=torch.from_numpy(out)), space)


def clip_boxes(boxes: Boxes, space: Space) -> Boxes:
    """``boxes`` clipped to ``space``'s field of view and filtered (visibility, ``min_size``)."""
    if len(boxes) == 0:
        return boxes
    data, ratio = _clipped(boxes, space)
    return _filtered(boxes, data, ratio)


def cut_boxes(boxes: Boxes, region: Space) -> Boxes:
    """``boxes`` less the part inside ``region`` (a block of the grid that other content replaced, as
    CutMix pastes): visibility falls by the share covered, a box covered whole is dropped, and an
    axis-aligned box on a grid that follows the world axes shrinks when the block cuts one end off
    (otherwise it stays the enclosing box of what is left, itself)."""
    if len(boxes) == 0:
        return boxes
    ratio = _clipped(boxes, region)[1]
    data = boxes.data.numpy().copy()
    n = boxes.ndim
    if boxes.kind == "axis" and _follows_world_axes(region):
        block = region.world_box()
        lo, hi = data[:, :n], data[:, n:]
        across = (block[0] <= lo + 1e-9) & (block[1] >= hi - 1e-9)       # the block spans the box on this axis
        for a in range(n):
            others = np.all(np.delete(across, a, axis=1), axis=1) & (ratio > 0)
            low = others & (block[0, a] <= lo[:, a] + 1e-9) & (block[1, a] < hi[:, a])
            high = others & (block[1, a] >= hi[:, a] - 1e-9) & (block[0, a] > lo[:, a])
            data[low, a] = block[1, a]
            data[high, n + a] = block[0, a]
    return _filtered(boxes, data, np.where(ratio >= 1.0 - 1e-12, 0.0, 1.0 - ratio))


def _filtered(boxes: Boxes, data: np.ndarray, ratio: np.ndarray) -> Boxes:
    visibility = boxes.visibility.numpy() * ratio
    sizes = boxes.replace(data=torch.from_numpy(data)).sizes()
    keep = (ratio > 0) & (visibility >= boxes.min_visibility - 1e-12) & (sizes.min(1) >= boxes.min_size - 1e-12)
    out = boxes.replace(data=torch.from_numpy(data), visibility=torch.from_numpy(visibility))
    return out if bool(keep.all()) else out.select(keep)


def _clipped(boxes: Boxes, space: Space) -> tuple[np.ndarray, np.ndarray]:
    """The boxes clipped to ``space`` and the share of each box's area in view."""
    _check_dim(boxes, space)
    data = boxes.data.numpy().copy()
    ratio = np.ones(len(data))
    n = boxes.ndim
    shape = np.array(space.shape, dtype=np.float64)
    if boxes.kind == "axis" and _follows_world_axes(space):
        fov = space.world_box()
        lo, hi = np.maximum(data[:, :n], fov[0]), np.minimum(data[:, n:], fov[1])
        ext, kept = data[:, n:] - data[:, :n], np.clip(hi - lo, 0, None)
        full = ext.prod(1)
        ratio = np.where(full > 0, kept.prod(1) / np.where(full > 0, full, 1), np.all(hi >= lo, axis=1))
        data = np.concatenate([np.minimum(lo, hi), np.maximum(lo, hi)], axis=1)
    else:
        corners = boxes.corners()
        index = space.world_to_index(corners.reshape(-1, n)).reshape(corners.shape)
        tol = 1e-9 * max(1.0, float(shape.max()))
        inside = np.all((index >= -0.5 - tol) & (index <= shape - 0.5 + tol), axis=(1, 2))
        for i in np.flatnonzero(~inside):
            if n == 2:
                poly = index[i] if boxes.kind == "oriented" else index[i][[0, 1, 3, 2]]   # corners in ring order
                data[i], ratio[i] = _clip_2d(poly, shape, space, data[i], boxes.kind)
            else:
                data[i], ratio[i] = _clip_3d(data[i], space)
    return data, ratio


def inside_view(space: Space, world: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: whether world points lie in ``space``'s field of view (the voxels' outer edges)."""
    if len(world) == 0:
        return np.zeros(0, dtype=bool)
    index = space.world_to_index(np.asarray(world, dtype=np.float64))
    shape = np.array(space.shape, dtype=np.float64)
    tol = 1e-9 * max(1.0, float(shape.max()))
    return np.all((index >= -0.5 - tol) & (index <= shape - 0.5 + tol), axis=1)


def join_boxes(a: Boxes, b: Boxes, name: str = "boxes") -> Boxes:
    """The boxes of ``a`` then those of ``b`` (labels and visibility in step; ``a``'s filters)."""
    if a.kind != b.kind or a.ndim != b.ndim:
        raise ParameterError(name, f"{a.kind} {a.ndim}D and {b.kind} {b.ndim}D boxes", "one kind of box to join")
    return a.replace(data=torch.cat([a.data, b.data]), labels=torch.cat([a.labels, b.labels]),
                     visibility=torch.cat([a.visibility, b.visibility]))


# --- geometry helpers ------------------------------------------------------------------------
def _check_dim(boxes: Boxes, space: Space) -> None:
    if boxes.ndim != space.ndim:
        raise ShapeError(f"{boxes.ndim}D boxes on a {space.ndim}D space")


def _follows_world_axes(space: Space) -> bool:
    linear = np.abs(space.affine[:-1, :-1])
    return bool(np.all(np.count_nonzero(linear > 1e-12 * linear.max(), axis=0) == 1))


def _cube_corners(n: int) -> np.ndarray:
    return np.stack(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij"), -1).reshape(-1, n)


def _square_corners() -> np.ndarray:
    return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])


def _cube_boundary(n: int, m: int) -> np.ndarray:
    """Points of the unit cube's boundary, ``m`` per axis (``m = 2``: the corners)."""
    grid = _cube_corners(n) if m == 2 else np.stack(
        np.meshgrid(*[np.linspace(0.0, 1.0, m)] * n, indexing="ij"), -1).reshape(-1, n)
    return grid[np.any((grid == 0.0) | (grid == 1.0), axis=1)]


def _axis_points(data: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``(N, P, n)`` points ``lo + unit * (hi - lo)`` of axis-aligned boxes ``data`` ``(N, 2n)``."""
    n = unit.shape[1]
    lo, ext = data[:, None, :n], data[:, None, n:] - data[:, None, :n]
    return lo + unit[None] * ext


def _oriented_points(data: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``(N, P, 2)`` points ``c + R(angle) diag(w, h) unit`` of oriented boxes ``data`` ``(N, 5)``."""
    a = np.radians(data[:, 4])
    cos, sin = np.cos(a)[:, None], np.sin(a)[:, None]
    u, v = unit[None, :, 0] * data[:, 2:3], unit[None, :, 1] * data[:, 3:4]
    return np.stack([data[:, 0:1] + cos * u - sin * v, data[:, 1:2] + sin * u + cos * v], axis=-1)


def _sample_step(fields: list[Field], space: Space) -> float:
    """Boundary sampling step (world units) that keeps the envelope of field-moved boxes within
    about 0.1 voxel: the chord error of a curve sampled every ``h`` is ``kappa h^2 / 8``, with
    ``kappa`` the largest second difference of the field per squared lattice step."""
    tol = 0.1 * float(space.spacing.min())
    step = math.inf
    for f in fields:
        n = f.ndim
        node = 1.0 / np.linalg.norm(f.to_lattice[:n, :n], axis=1)    # world distance between lattice nodes
        kappa = 0.0
        for a in range(n):
            if f.lattice.shape[1 + a] >= 3:
                second = np.abs(np.diff(f.lattice.astype(np.float64), n=2, axis=1 + a)).max()
                kappa = max(kappa, float(second) / node[a] ** 2)
        if kappa > 0:       # no finer than the lattice: the field is linear between its nodes
            step = min(step, max(math.sqrt(8 * tol / kappa), float(node.min())))
    return step


def _buckets(sizes: np.ndarray, step: float, least: int = 2) -> list[tuple[int, np.ndarray]]:
    """Boxes grouped by points per axis ``m = 2^k + 1`` (``least`` to 33), enough for ``step`` (the
    corners alone, ``m = 2``, for a box smaller than ``step``)."""
    need = np.ceil(sizes.max(1) / step) if math.isfinite(step) else np.zeros(len(sizes))
    m = np.full(len(sizes), least)
    for k in range(1, 6):
        m = np.where(need > (m - 1), 2 ** k + 1, m)
    m = np.maximum(m, least)
    return [(int(v), np.flatnonzero(m == v)) for v in np.unique(m)]


def _enclose_oriented(moved: np.ndarray, template: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``(N, 5)`` rectangles enclosing ``moved`` ``(N, P, 2)``, aligned with the image of each box's
    width axis: from the centre of its moved left edge to that of its right edge (the mean of the
    edge's points of ``template``; exact for an affine map, whose edges stay straight)."""
    def edge(axis: int, side: float) -> np.ndarray:
        return moved[:, template[:, axis] == side].mean(1)
    axis = edge(0, 0.5) - edge(0, -0.5)
    across = edge(1, 0.5) - edge(1, -0.5)
    theta = np.arctan2(axis[:, 1], axis[:, 0])
    theta_h = np.arctan2(-across[:, 0], across[:, 1])            # the h axis turned back by 90 degrees
    small = np.linalg.norm(axis, axis=1) <= 1e-12 * np.maximum(1.0, np.abs(moved).max((1, 2)))
    theta = np.where(small, np.where(np.linalg.norm(across, axis=1) > 0, theta_h, np.radians(angles)), theta)
    return _rectangles_at(moved, theta)


def _rectangles_at(points: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``(N, 5)`` rectangles at angles ``theta`` (radians) enclosing ``points`` ``(N, P, 2)``."""
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    p = points[..., 0] * cos + points[..., 1] * sin
    q = -points[..., 0] * sin + points[..., 1] * cos
    pc, qc = (p.max(1) + p.min(1)) / 2, (q.max(1) + q.min(1)) / 2
    cos, sin = cos[:, 0], sin[:, 0]
    degrees = (np.degrees(theta) + 90.0) % 180.0 - 90.0
    return np.stack([pc * cos - qc * sin, pc * sin + qc * cos, p.max(1) - p.min(1), q.max(1) - q.min(1),
                     degrees], axis=1)


def _fit_oriented(corners: np.ndarray) -> np.ndarray:
    """``(N, 5)`` rectangles from ``(N, 4, 2)`` world corners, the width along the first edge."""
    edge = corners[:, 1] - corners[:, 0]
    return _rectangles_at(corners, np.arctan2(edge[:, 1], edge[:, 0]))


def _clip_2d(poly: np.ndarray, shape: np.ndarray, space: Space, box: np.ndarray,
             kind: str) -> tuple[np.ndarray, float]:
    """A 2D box (its corner ring ``poly`` in index coordinates) clipped to the grid: the enclosing
    box of the part in view (same angle for an oriented box), and the fraction of its area kept
    (area ratios are the same in index and world coordinates)."""
    clipped = poly
    for axis in range(2):
        for bound, sign in ((-0.5, 1.0), (shape[axis] - 0.5, -1.0)):
            out = []
            for i in range(len(clipped)):
                p, q = clipped[i], clipped[(i + 1) % len(clipped)]
                dp, dq = sign * (p[axis] - bound), sign * (q[axis] - bound)
                if dp >= 0:
                    out.append(p)
                if (dp >= 0) != (dq >= 0):
                    out.append(p + dp / (dp - dq) * (q - p))
            clipped = np.array(out)
            if not len(clipped):
                return box, 0.0
    full = _area(poly)
    kept = _area(clipped)
    ratio = kept / full if full > 0 else 1.0
    world = space.index_to_world(clipped)
    if kind == "oriented":
        return _rectangles_at(world[None], np.radians(box[4:5]))[0], ratio
    return np.concatenate([world.min(0), world.max(0)]), ratio


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def _clip_3d(box: np.ndarray, space: Space) -> tuple[np.ndarray, float]:
    """A 3D axis-aligned box clipped to an oblique grid, exactly: the vertices of the polytope ``box ∩
    field of view`` (the feasible intersections of three of its 12 bounding planes), their enclosing
    box, and the polytope's volume (its convex hull) over the box's."""
    from itertools import combinations

    from scipy.spatial import ConvexHull, QhullError
    n = 3
    inverse = space.inverse
    shape = np.array(space.shape, dtype=np.float64)
    normals = np.concatenate([-np.eye(n), np.eye(n), -inverse[:n, :n], inverse[:n, :n]])
    offsets = np.concatenate([-box[:n], box[n:], 0.5 + inverse[:n, n], shape - 0.5 - inverse[:n, n]])
    triples = np.array(list(combinations(range(len(normals)), n)))
    planes = normals[triples]
    ok = np.abs(np.linalg.det(planes)) > 1e-12
    vertices = np.linalg.solve(planes[ok], offsets[triples[ok]][..., None])[..., 0]
    scale = 1e-9 * max(1.0, float(np.abs(box).max()))
    vertices = vertices[np.all(vertices @ normals.T <= offsets + scale, axis=1)]
    if len(vertices) < 4:
        return box, 0.0
    full = float(np.prod(box[n:] - box[:n]))
    try:
        kept = ConvexHull(vertices).volume
    except QhullError:                     # flat: nothing of the volume is left
        return box, 0.0
    return np.concatenate([vertices.min(0), vertices.max(0)]), (kept / full if full > 0 else 1.0)


def _monai_mode(mode: str | None, ndim: int) -> str:
    modes = MONAI_MODES.get(ndim, ())
    mode = modes[0] if mode is None and modes else mode
    if mode not in modes:
        raise ParameterError("mode", mode, f"a MONAI box mode for {ndim}D ({list(modes)})")
    return str(mode)


def _from_standard(b: np.ndarray, mode: str) -> np.ndarray:
    """Standard ``xyxy``/``xyzxyz`` -> ``mode``."""
    n = b.shape[1] // 2
    lo, hi = b[:, :n], b[:, n:]
    if mode in ("xyxy", "xyzxyz"):
        return b.copy()
    if mode in ("xxyy", "xxyyzz"):
        return np.stack([lo, hi], axis=2).reshape(len(b), 2 * n)
    if mode in ("xywh", "xyzwhd"):
        return np.concatenate([lo, hi - lo], axis=1)
    return np.concatenate([(lo + hi) / 2, hi - lo], axis=1)          # ccwh, cccwhd


def _to_standard(b: np.ndarray, mode: str) -> np.ndarray:
    """``mode`` -> standard ``xyxy``/``xyzxyz``."""
    n = b.shape[1] // 2
    if mode in ("xyxy", "xyzxyz"):
        return b.copy()
    if mode in ("xxyy", "xxyyzz"):
        pairs = b.reshape(len(b), n, 2)
        return np.concatenate([pairs[:, :, 0], pairs[:, :, 1]], axis=1)
    first, size = b[:, :n], b[:, n:]
    if mode in ("xywh", "xyzwhd"):
        return np.concatenate([first, first + size], axis=1)
    return np.concatenate([first - size / 2, first + size / 2], axis=1)
