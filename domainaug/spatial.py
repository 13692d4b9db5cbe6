"""Spatial transforms. Each is a *warp* (the space is kept; content and points move) or a *regrid*
(the space changes; every kept voxel keeps its world position). Lengths are in world units (mm for
scans, CRS units for rasters); angles in degrees; sizes of crops and pads in voxels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from .core.kernels.affine import (
    about_center,
    axis_frame,
    homogeneous,
    n_rotations,
    n_shears,
    rotation_matrix,
    shear_matrix,
)
from .core.kernels.elastic import build_field, control_grid_shape, default_spacing
from .core.kernels.grid import voxels_covering
from .core.kernels.reduce import foreground_box
from .core.maps import Stage, push_forward_points
from .core.params import (
    PerAxis,
    Uniform,
    as_axes,
    as_layer_name,
    as_lengths,
    as_per_axis,
    as_size,
    as_uniform,
    as_world_axes,
    check_choice,
    draw_per_axis,
    per_axis,
    resolve_axes,
    resolve_world_axes,
    to_json,
)
from .core.sample import Role, Sample
from .core.space import Space, covering_grid
from .core.transform import SpatialTransform
from .core.values import foreground, label_values
from .errors import ParameterError, ShapeError

if TYPE_CHECKING:
    from .testing import Case

__all__ = ["Affine", "Elastic", "Flip", "Rot90", "Crop", "Pad", "CropForeground", "CropOrPad", "RandomResizedCrop",
           "Resample", "ResampleToMatch"]


#: A value for every axis (a number or a (min, max) pair) or one number or pair per axis.
AxisValues = float | tuple[float, float] | Sequence[float | tuple[float, float]]
#: ``AxisValues``, or a dict from world axes (letters, indices, ``"slice"``) to a number or pair.
WorldAxisValues = AxisValues | Mapping[str | int, float | tuple[float, float]]


def _translate(offset: Sequence[float]) -> np.ndarray:
    return homogeneous(np.eye(len(offset)), np.asarray(offset, dtype=np.float64))


class Affine(SpatialTransform):
    """Rotate, shear, scale and translate about the grid centre, along world axes (a warp).

    Every argument acts on the **world** axes: x, y, z of RAS+ for scans (``translation=(5, 0, 0)``
    moves the content 5 mm along +x, towards the patient's right, whether the file is stored RAS,
    LAS or oblique), and x, y of the CRS for rasters (east and north on a north-up tile). The
    forward map is ``x -> c + R Sh S (x - c) + t``, ``c`` the grid centre; all of it is in world
    units, so anisotropic voxels stay rigid in mm.

    Each argument takes a number (fixed, the same on every axis), a ``(min, max)`` pair (drawn
    uniformly, independently per axis) or one number or pair per entry (e.g. ``[0, 0, (-15, 15)]``);
    a pair of two numbers is always a range, so two per-axis fixed values are written as pairs,
    ``[(5, 5), (0, 0)]``. The entry count is checked against the sample (``ParameterError``).

    Args:
        degrees: Rotation in degrees: 1 angle in 2D (from world axis 0 towards axis 1, i.e.
            counter-clockwise from x towards y), 3 in 3D (about world x, y, z; applied in that order).
            In 3D also a dict from world axes to angles, the others 0: ``{"S": (-15, 15)}`` rotates
            about superior-inferior only, ``{"slice": (-15, 15)}`` about the axis along which the
            sample's voxels are thickest (read from its affine: in-plane for thick-slice scans).
        scales: Zoom factor per world axis, unitless, > 0 (> 1 enlarges the content).
        shear: Shear factors, unitless, in [-10, 10], one per pair of world axes (1 in 2D:
            (x, y); 3 in 3D: (x, y), (x, z), (y, z)); entry (i, j) adds ``shear * x_j`` to ``x_i``.
        translation: Shift per world axis in world units (mm for scans, CRS units for rasters).
        isotropic: Draw one scale for every axis (``scales`` must then be one number or pair).
        p: Probability of applying.

    Raises:
        ParameterError: A value out of range, or (when applied) a per-axis value whose entry count
            does not fit the sample's dimension.

    Example:
        >>> out = Affine(degrees=(-10, 10), translation=[(-5, 5), 0, 0])(sample, torch.Generator().manual_seed(0))
    """

    def __init__(self, degrees: WorldAxisValues = 0.0, scales: AxisValues = 1.0, shear: AxisValues = 0.0,
                 translation: AxisValues = 0.0, isotropic: bool = False, p: float = 1.0) -> None:
        self.degrees: Uniform | PerAxis | dict[str | int, Uniform]
        if isinstance(degrees, Mapping):
            keys = as_world_axes("degrees", [int(k) if isinstance(k, str) and k.isdigit() else k for k in degrees])
            if keys is None or len(set(keys)) != len(keys):
                raise ParameterError("degrees", dict(degrees), "a dict with distinct world axes as keys")
            self.degrees = {k: as_uniform("degrees", v, low=-360, high=360) for k, v in zip(keys, degrees.values())}
        else:
            self.degrees = as_per_axis("degrees", degrees, low=-360, high=360)
        self.scales = as_per_axis("scales", scales, low=1e-3)
        self.shear = as_per_axis("shear", shear, low=-10, high=10)
        self.translation = as_per_axis("translation", translation)
        if isotropic and isinstance(self.scales, PerAxis):
            raise ParameterError("isotropic", isotropic, f"False when scales has one value per axis "
                                 f"({self.scales.to_json()})")
        self.isotropic = bool(isotropic)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        n = sample.space.ndim
        if isinstance(self.degrees, dict):
            if n != 3:
                raise ParameterError("degrees", to_json(self.degrees), "a number, range or list on a 2D sample "
                                     "(a dict of world axes is for 3D rotations)")
            about = dict(zip(resolve_world_axes("degrees", list(self.degrees), sample.space), self.degrees.values()))
            degrees = [about[a].draw(generator) if a in about else 0.0 for a in range(3)]
        else:
            degrees = draw_per_axis("degrees", self.degrees, n_rotations(n), n, generator)
        scales = draw_per_axis("scales", self.scales, 1 if self.isotropic else n, n, generator)
        scales = scales * n if self.isotropic else scales
        shear = draw_per_axis("shear", self.shear, n_shears(n), n, generator)
        translation = draw_per_axis("translation", self.translation, n, n, generator)
        return {"degrees": degrees, "scales": scales, "shear": shear, "translation": translation}

    @staticmethod
    def forward(space: Space, params: dict[str, Any]) -> np.ndarray:
        """The forward world -> world matrix of these params on this space (world axes)."""
        n = space.ndim
        linear = rotation_matrix(params["degrees"]) @ shear_matrix(params["shear"], n) @ np.diag(params["scales"])
        return about_center(linear, space.center_world(), np.asarray(params["translation"], dtype=np.float64))

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        _check_lengths(params, space.ndim, degrees=n_rotations(space.ndim), scales=space.ndim,
                       shear=n_shears(space.ndim), translation=space.ndim)
        return space, [np.linalg.inv(self.forward(space, params))]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Affine(degrees=(-25, 25), scales=(0.85, 1.15), shear=(-0.1, 0.1), translation=(-3, 3)),
            identity=lambda s: Affine(),
            bad=[("scales", lambda: Affine(scales=(0, 1))), ("degrees", lambda: Affine(degrees=(10, -10))),
                 ("p", lambda: Affine(p=1.5))])


class Elastic(SpatialTransform):
    """Smooth random deformation from coarse control points (a warp).

    Displacements are drawn uniformly in ``[-max_displacement, max_displacement]`` (world units,
    along each array axis) at control points ``spacing`` apart (world units) and interpolated with
    a cubic B-spline, so the field is smooth and never larger than ``max_displacement``.

    The record holds every control-point displacement (``ndim`` numbers per point), so the
    control grid is bounded: a spacing that would need more than ``MAX_CONTROL_POINTS`` points on
    the sample's grid (e.g. a spacing of a voxel or two on a large volume) is refused.

    Args:
        spacing: Control-point spacing in world units (mm, or CRS units), one number or one per
            axis. Default: one fifth of the grid's longest world extent (at most 8 points per axis).
        max_displacement: Largest displacement in world units, a number or a ``(min, max)`` range
            drawn once per call. Default: ``spacing / 10`` (no folding).
        p: Probability of applying.

    Raises:
        ParameterError: ``spacing`` needs more than ``MAX_CONTROL_POINTS`` control points on the
            sample's grid (named with the count and the grid).

    Example:
        >>> out = Elastic(spacing=40.0, max_displacement=(2.0, 5.0))(sample, generator_for(0))   # mm
    """

    #: Most control points (product over axes, border points included) one call may draw: 10^5
    #: points are a record of at most 3 x 10^5 numbers (a few MB of JSON).
    MAX_CONTROL_POINTS: ClassVar[int] = 100_000

    def __init__(self, spacing: float | Sequence[float] | None = None,
                 max_displacement: float | tuple[float, float] | None = None, p: float = 1.0) -> None:
        self.spacing = None if spacing is None else as_lengths("spacing", spacing)
        self.max_displacement = None if max_displacement is None else as_uniform(
            "max_displacement", max_displacement, low=0.0)
        self._set_p(p)

    def _spacing(self, space: Space) -> np.ndarray:
        if self.spacing is None:
            return np.full(space.ndim, default_spacing(space))
        return np.broadcast_to(as_lengths("spacing", self.spacing, space.ndim), (space.ndim,)).astype(np.float64)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        spacing = self._spacing(space)
        grid = control_grid_shape(space, spacing)
        count = math.prod(grid)
        if count > self.MAX_CONTROL_POINTS:
            raise ParameterError("spacing", spacing.tolist(), f"at most Elastic.MAX_CONTROL_POINTS = "
                                 f"{self.MAX_CONTROL_POINTS} control points, but on a grid of {space.describe()} it "
                                 f"needs {' x '.join(map(str, grid))} = {count} (use a larger spacing)")
        limit = (self.max_displacement.draw(generator) if self.max_displacement is not None
                 else float(spacing.min()) / 10)
        shape = (space.ndim,) + grid
        u = torch.rand(shape, generator=generator, dtype=torch.float64).numpy()
        # 7 significant digits of the limit (far below a voxel) halve the JSON; apply reads these values
        decimals = 6 - math.floor(math.log10(limit)) if limit > 0 else 0
        return {"spacing": spacing.tolist(), "displacement": np.round((2 * u - 1) * limit, decimals).tolist()}

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        spacing = np.asarray(params["spacing"], dtype=np.float64)
        displacement = np.asarray(params["displacement"], dtype=np.float64)
        expected = (space.ndim,) + control_grid_shape(space, spacing)
        if displacement.shape != expected:
            raise ParameterError("params['displacement']", f"shape {displacement.shape}",
                                 f"shape {expected} for this space and spacing")
        return space, [build_field(space, spacing, displacement)]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Elastic(max_displacement=float(s.space.spacing.max()) * 1.5),
            identity=lambda s: Elastic(max_displacement=0.0),
            bad=[("spacing", lambda: Elastic(spacing=-1)),
                 ("max_displacement", lambda: Elastic(max_displacement=(-1, 2)))])


class Flip(SpatialTransform):
    """Mirror the content along array axes, about the grid centre (a warp; exact, no interpolation).

    Args:
        axes: Axes to flip (negative counts from the end); ``None`` flips every axis.
        p: Probability of applying.

    Example:
        >>> out = Flip(axes=(0,))(sample, generator_for(0))
        >>> torch.equal(out["label"], sample["label"].flip(1))
        True
    """

    permutes = True

    def __init__(self, axes: int | Sequence[int] | None = None, p: float = 1.0) -> None:
        self.axes = as_axes("axes", axes)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"axes": resolve_axes("axes", self.axes, sample.space.ndim)}

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        flip = np.eye(space.ndim + 1)
        for a in resolve_axes("params['axes']", params["axes"], space.ndim):
            flip[a, a], flip[a, -1] = -1.0, space.shape[a] - 1.0
        mirror = space.affine @ flip @ space.inverse        # an involution: its own pull-back
        return space, [mirror]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Flip(axes=(0, -1)), identity=lambda s: Flip(axes=()),
            bad=[("axes", lambda: Flip(axes="x")), ("axes", lambda: Flip(axes=(0, 0)))])  # type: ignore[arg-type]  # (wrong on purpose)


class Rot90(SpatialTransform):
    """Rotate the content by ``k`` quarter turns in the plane of two array axes, from the first
    towards the second, about the grid centre. Exact (voxels are permuted, never interpolated).

    On a square grid with equal spacing on both axes the space is kept (a warp). Otherwise the
    output grid is the rotated one: the two axes swap their sizes and spacings, and the affine is
    updated so that the rotated content keeps true world coordinates. The footprint is the input's,
    turned about its centre: nothing is cut or filled, and a north-up raster's grid is then no longer
    north-up (a ``TileWriter`` on the source grid refuses such a tile; ``RotationPolicy`` says more).

    Args:
        axes: The two axes of the rotation plane.
        k: Quarter turns; ``None`` draws one of 0, 1, 2, 3; a list draws from its entries.
        p: Probability of applying.

    Example:
        >>> Rot90(axes=(0, 1), k=1)(sample, generator_for(0)).space.shape
        (128, 128, 62)
    """

    permutes = True

    def __init__(self, axes: Sequence[int] = (-2, -1), k: int | Sequence[int] | None = None, p: float = 1.0) -> None:
        chosen = as_axes("axes", axes)
        if chosen is None or len(chosen) != 2:
            raise ParameterError("axes", chosen, "two distinct axes")
        self.axes = chosen
        ks = [k] if isinstance(k, int) else list(k) if isinstance(k, (list, tuple)) else None
        if k is not None and (not ks or not all(isinstance(v, int) and not isinstance(v, bool) for v in ks)):
            raise ParameterError("k", k, "None, an integer or a list of integers")
        self.k = k
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        choices = [0, 1, 2, 3] if self.k is None else ([self.k] if isinstance(self.k, int) else list(self.k))
        k = choices[int(torch.randint(0, len(choices), (), generator=generator).item())]
        return {"k": int(k) % 4, "axes": resolve_axes("axes", self.axes, sample.space.ndim)}

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        n = space.ndim
        a, b = resolve_axes("params['axes']", params["axes"], n)
        k = int(params["k"]) % 4
        rot = np.eye(n)
        for _ in range(k):                                   # one quarter turn: e_a -> e_b, e_b -> -e_a
            quarter = np.eye(n)
            quarter[a, a] = quarter[b, b] = 0.0
            quarter[b, a], quarter[a, b] = 1.0, -1.0
            rot = quarter @ rot
        forward = about_center(axis_frame(rot, space.direction), space.center_world())
        q_lin = rot.T                                        # output index -> source index (signed permutation)
        out_shape = [space.shape[int(np.nonzero(q_lin[:, i])[0][0])] for i in range(n)]
        q_off = [0.0 if q_lin[i].sum() > 0 else out_shape[int(np.nonzero(q_lin[i])[0][0])] - 1.0 for i in range(n)]
        out_affine = forward @ space.affine @ homogeneous(q_lin, np.asarray(q_off))
        same = tuple(out_shape) == space.shape and np.allclose(out_affine, space.affine, atol=1e-9)
        out = space if same else space.with_grid(out_shape, out_affine)
        return out, [np.linalg.inv(forward)]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Rot90(axes=(0, 1)), identity=lambda s: Rot90(k=0),
            bad=[("axes", lambda: Rot90(axes=(0,))), ("k", lambda: Rot90(k="one"))])  # type: ignore[arg-type]  # (wrong on purpose)


class Crop(SpatialTransform):
    """Cut a ``size`` block out of the grid (a regrid: kept voxels keep their world position).

    Patch sampling for segmentation: ``mode="random"`` is uniform; ``"label"``, ``"pos_neg"`` and
    ``"weights"`` centre the block on a voxel drawn from a layer (clamped so the block stays in the
    grid). At the end of a ``Compose`` the crop fuses with the warps before it, so only the block
    is ever resampled (the centre is picked on the unwarped layer and followed through the pending
    map, like a point).

    - ``"label"``: a voxel of one label value, the value drawn with ``ratios`` (MONAI
      ``RandCropByLabelClasses``); without ``ratios``, any voxel labelled > 0, uniformly.
    - ``"pos_neg"``: a foreground voxel (any label > 0, in any channel) with probability
      ``pos / (pos + neg)``, else a valid background voxel (MONAI ``RandCropByPosNegLabel``); when
      one of the two is empty the other is used.
    - ``"weights"``: a voxel drawn with probability proportional to a one-channel weight-map layer
      (>= 0; invalid voxels weigh 0), as MONAI ``RandWeightedCrop``.

    A label layer of several channels counts a voxel wherever any channel holds the value (a voxel
    of two labels is a centre for both). With nothing to centre on, the position is uniform.

    On a sample with layers on grids of their own, ``size`` and the position are on the reference
    grid (``sample.space``); every other grid keeps the voxels of its lattice that overlap the block.

    Args:
        size: Output size in voxels, one number or one per axis; must fit in the input.
        mode: ``"random"`` (uniform position), ``"center"``, ``"label"``, ``"pos_neg"`` or
            ``"weights"`` (see above).
        layer: The LABEL layer of ``"label"`` and ``"pos_neg"``, or the weight-map layer of
            ``"weights"``.
        ratios: For ``mode="label"``: relative weights of the label values (index = value, so
            ``[1, 1, 1]`` picks background, label 1 and label 2 equally often; values absent from
            the sample are skipped). There must be a weight for every value the layer holds (0 to
            skip one): a shorter list is a ``ParameterError`` when the crop runs, never a silent
            "labels beyond the list are never picked". ``None``: any non-zero voxel, uniformly.
        pos: For ``mode="pos_neg"``: weight of foreground centres, >= 0.
        neg: For ``mode="pos_neg"``: weight of background centres, >= 0 (``pos=1, neg=3``: a
            quarter of the patches centred on the foreground).
        p: Probability of applying.

    Example:
        >>> from domainaug.testing import make_volume
        >>> Crop(6, mode="pos_neg", pos=1, neg=1)(make_volume()).space.shape
        (6, 6, 6)
    """

    def __init__(self, size: int | Sequence[int], mode: str = "random", layer: str = "label",
                 ratios: Sequence[float] | None = None, pos: float = 1.0, neg: float = 1.0, p: float = 1.0) -> None:
        self.size = as_size("size", size)
        self.mode = check_choice("mode", mode, ("random", "center", "label", "pos_neg", "weights"))
        self.layer = layer
        if ratios is not None and (not isinstance(ratios, (list, tuple)) or not ratios or any(
                isinstance(r, bool) or not isinstance(r, (int, float)) or not r >= 0 for r in ratios)
                or sum(ratios) <= 0):
            raise ParameterError("ratios", ratios, "None or a list of non-negative weights (index = label value), "
                                 "not all 0")
        self.ratios = None if ratios is None else [float(r) for r in ratios]
        for name, value in (("pos", pos), ("neg", neg)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ParameterError(name, value, "a weight >= 0")
        if pos + neg <= 0:
            raise ParameterError("pos", pos, "a weight > 0 when neg is 0")
        self.pos, self.neg = float(pos), float(neg)
        self.deterministic = mode == "center"
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        shape = np.array(sample.space.shape)
        size = np.array(per_axis("size", self.size, sample.space.ndim))
        if np.any(size > shape):
            raise ShapeError(f"Crop size {tuple(size.tolist())} is larger than the grid {tuple(shape.tolist())}; "
                             "put a Pad before the Crop")
        room = shape - size
        if self.mode == "center":
            return {"start": (room // 2).tolist()}
        if self.mode != "random":
            centre = self._layer_centre(sample, generator)
            if centre is not None:
                return {"start": np.clip(np.round(centre).astype(int) - size // 2, 0, room).astype(int).tolist()}
        return {"start": [int(torch.randint(0, int(r) + 1, (), generator=generator).item()) for r in room]}

    def _centres(self, sample: Sample, generator: torch.Generator) -> torch.Tensor | None:
        """``(*spatial)`` bool of the voxels a centre is drawn from uniformly, on the layer's source
        grid, or None when there is none (``"weights"`` draws in ``_weighted`` instead)."""
        info = sample.layer_info(self.layer)
        label = info.data
        if self.mode == "pos_neg":
            fg = (label > 0).any(0)
            valid = sample.valid_of(self.layer)
            bg = ~fg if valid is None else ~fg & sample.layer_info(valid).data[0].to(fg.device)
            has_fg, has_bg = bool(fg.any()), bool(bg.any())
            if not (has_fg or has_bg):
                return None
            u = torch.rand((), generator=generator, dtype=torch.float64).item()
            positive = has_fg and (not has_bg or u < self.pos / (self.pos + self.neg))
            return fg if positive else bg
        if self.ratios is None:
            return (label != 0).any(0)
        values = label_values(label).long()                # the values present, not a bin per possible value
        beyond = values[(values < 0) | (values >= len(self.ratios))]
        if len(beyond):
            raise ParameterError("ratios", self.ratios, f"one weight per label value of layer {self.layer!r}: it holds "
                                 f"{len(values)} label values up to {int(values.max())}, and the list weighs only "
                                 f"0..{len(self.ratios) - 1} (labels such as {beyond[:3].tolist()} would never be "
                                 f"centres); give {int(values.max()) + 1} weights (0 to skip a value), or use "
                                 "mode='pos_neg' to weigh foreground (any label > 0) against background")
        present = torch.zeros(len(self.ratios), dtype=torch.float64)
        present[values] = 1.0
        weights = torch.tensor(self.ratios, dtype=torch.float64) * present
        if float(weights.sum()) == 0:
            return None
        return (label == int(torch.multinomial(weights, 1, generator=generator).item())).any(0)

    def _weighted(self, sample: Sample, generator: torch.Generator) -> torch.Tensor | None:
        """A voxel index drawn with probability proportional to the weight map, or None (no weight)."""
        info = sample.layer_info(self.layer)
        if info.data.shape[0] != 1:
            raise ParameterError("layer", self.layer, f"a weight map of one channel for Crop(mode='weights'); it has "
                                 f"{info.data.shape[0]}")
        weights = info.data[0].double()
        valid = sample.valid_of(self.layer)
        if valid is not None:
            weights = torch.where(sample.layer_info(valid).data[0].to(weights.device), weights, 0.0)
        if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
            raise ParameterError("layer", self.layer, "a weight map of finite values >= 0 for Crop(mode='weights')")
        cumulative = weights.reshape(-1).cumsum(0)
        total = float(cumulative[-1])
        if total <= 0:
            return None
        u = torch.rand((), generator=generator, dtype=torch.float64).item() * total
        flat = min(int(torch.searchsorted(cumulative, torch.tensor([u], dtype=torch.float64, device=cumulative.device),
                                          right=True).item()), cumulative.numel() - 1)
        return torch.tensor(np.unravel_index(flat, tuple(weights.shape)))

    def _layer_centre(self, sample: Sample, generator: torch.Generator) -> np.ndarray | None:
        """The output-grid index of the voxel drawn from ``layer`` (read on the source grid when a map
        is pending), or None when there is none."""
        if self.mode == "weights":
            if self.layer not in sample.layer_names() or sample.layer_info(self.layer).role is Role.VALID:
                raise ParameterError("layer", self.layer, f"a weight-map layer of the sample ({sample.layer_names()})")
            voxel = self._weighted(sample, generator)
        else:
            if self.layer not in sample.layer_names() or sample.layer_info(self.layer).role is not Role.LABEL:
                raise ParameterError("layer", self.layer,
                                     f"a LABEL layer of the sample ({sample.layer_names(Role.LABEL)})")
            mask = self._centres(sample, generator)
            where = torch.nonzero(mask) if mask is not None else torch.zeros((0, sample.space.ndim))
            if not len(where):
                return None
            voxel = where[int(torch.randint(0, len(where), (), generator=generator).item())]
        if voxel is None:
            return None
        index = voxel.cpu().numpy().astype(float)
        pending = sample.pending
        if pending is None and not sample.grids:
            return index
        world = sample.source_of(self.layer).index_to_world(index[None])      # the layer may have a grid of its own
        if pending is not None:
            world = push_forward_points(pending.stages, world)
        return sample.space.world_to_index(world)[0]

    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """The covering block of another grid has one shape for one crop size, wherever the crop lies
        (a random crop's 20 m block is 32 or 33 pixels by the parity of its start otherwise, and
        batches of such crops would not stack)."""
        return grid if out == space else covering_grid(grid, out, fixed=True)

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        size = per_axis("size", self.size, space.ndim)
        start = params["start"]
        if len(start) != space.ndim or any(not 0 <= b <= n - s for b, n, s in zip(start, space.shape, size)):
            raise ParameterError("params['start']", start, f"{space.ndim} offsets keeping a {tuple(size)} block "
                                 f"inside the grid {space.shape}")
        return space.with_grid(size, space.affine @ _translate(start)), []

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Crop(tuple(max(1, d - 4) for d in s.space.shape)),
            identity=lambda s: Crop(s.space.shape, mode="center"),
            bad=[("size", lambda: Crop(0)), ("mode", lambda: Crop(4, mode="middle")),
                 ("ratios", lambda: Crop(4, mode="label", ratios=[0, 0])), ("ratios", lambda: Crop(4, ratios=[1, -1])),
                 ("pos", lambda: Crop(4, mode="pos_neg", pos=-1)),
                 ("pos", lambda: Crop(4, mode="pos_neg", pos=0, neg=0))])


class RandomResizedCrop(SpatialTransform):
    """Cut a random window of the 2D grid and resize it to ``size`` pixels (a regrid, as torchvision's
    ``RandomResizedCrop(size, scale=, ratio=)``).

    The window covers a fraction ``scale`` of the grid's area, with aspect ratio ``ratio`` (width /
    height in **world units**, so non-square pixels keep the content's true shape), drawn as
    torchvision does: the area fraction uniformly, the log of the ratio uniformly, up to 10 tries
    for a window that fits, else the whole grid cut to the nearest allowed ratio, centred. The
    window is whole input pixels. The output grid tiles the window's outer pixel edges with
    ``size`` pixels, so every output pixel keeps a true world position (the affine is updated: a
    regrid with no pull-back of its own). Inside a ``Compose`` it fuses with the warps before it:
    the layers are interpolated once, straight from the source grid onto the output (linear for
    intensities, no antialiasing, like Albumentations' ``INTER_LINEAR`` resize).

    Args:
        size: Output size in pixels, ``(height, width)`` or one number for a square.
        scale: Area of the window as a fraction of the grid's area, in (0, 1]; a number is fixed,
            a ``(min, max)`` pair is drawn uniformly.
        ratio: Aspect ratio width / height of the window in world units, > 0; a number is fixed, a
            ``(min, max)`` pair is drawn log-uniformly.
        p: Probability of applying.

    Raises:
        ShapeError: A 3D sample (an aspect ratio is a 2D notion; use ``Crop`` and ``Resample``).
        SampleError: Layers on grids of their own (put ``ResampleToMatch`` first).

    Example:
        >>> out = RandomResizedCrop(128, scale=(0.08, 1.0))(raster, torch.Generator().manual_seed(0))
    """

    many_grids = False           # one window, resized on one grid (another grid would need its own)

    def __init__(self, size: int | Sequence[int], scale: float | tuple[float, float] = (0.08, 1.0),
                 ratio: float | tuple[float, float] = (3 / 4, 4 / 3), p: float = 1.0) -> None:
        self.size = as_size("size", size)
        if len(self.size) not in (1, 2):
            raise ParameterError("size", size, "one number or (height, width) in pixels")
        self.scale = as_uniform("scale", scale, low=1e-9, high=1.0)
        self.ratio = as_uniform("ratio", ratio, low=1e-6, high=1e6)
        if self.scale.low <= 0:
            raise ParameterError("scale", scale, "area fractions > 0")
        self._set_p(p)

    def _check_2d(self, space: Space) -> None:
        if space.ndim != 2:
            raise ShapeError(f"RandomResizedCrop works on 2D grids; this sample's grid is {space.shape} (3D: "
                             "use Crop and Resample)")

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        self._check_2d(space)
        (h_in, w_in), (sy, sx) = space.shape, space.spacing
        area = h_in * w_in
        lo, hi = math.log(self.ratio.low), math.log(self.ratio.high)
        for _ in range(10):
            target = area * self.scale.draw(generator)
            aspect = math.exp(lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64).item())
            pixel_aspect = aspect * sy / sx              # world width / height -> pixel columns / rows
            w, h = round(math.sqrt(target * pixel_aspect)), round(math.sqrt(target / pixel_aspect))
            if 0 < w <= w_in and 0 < h <= h_in:
                i = int(torch.randint(0, h_in - h + 1, (), generator=generator).item())
                j = int(torch.randint(0, w_in - w + 1, (), generator=generator).item())
                return {"start": [i, j], "window": [h, w]}
        world = w_in * sx / (h_in * sy)
        if world < self.ratio.low:
            w, h = w_in, max(1, min(h_in, round(w_in * sx / (self.ratio.low * sy))))
        elif world > self.ratio.high:
            h, w = h_in, max(1, min(w_in, round(h_in * self.ratio.high * sy / sx)))
        else:
            h, w = h_in, w_in
        return {"start": [(h_in - h) // 2, (w_in - w) // 2], "window": [h, w]}

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        self._check_2d(space)
        start, window = params["start"], params["window"]
        if len(start) != 2 or len(window) != 2 or any(
                not (w >= 1 and 0 <= b <= n - w) for b, w, n in zip(start, window, space.shape)):
            raise ParameterError("params", {"start": start, "window": window}, f"a window of whole pixels inside "
                                 f"the grid {space.shape}")
        out = np.array(per_axis("size", self.size, 2), dtype=np.float64)
        step = np.asarray(window, dtype=np.float64) / out       # input pixels per output pixel
        # output index -> input index: the output pixels tile the window's outer edges
        to_input = homogeneous(np.diag(step), np.asarray(start, dtype=np.float64) - 0.5 + 0.5 * step)
        return space.with_grid(out.astype(int).tolist(), space.affine @ to_input), []

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case

        def whole(s: Sample) -> RandomResizedCrop:
            (h, w), (sy, sx) = s.space.shape, s.space.spacing
            return RandomResizedCrop((h, w), scale=1.0, ratio=float(w * sx / (h * sy)))
        return Case(
            random=lambda s: RandomResizedCrop((13, 11), scale=(0.3, 1.0)), identity=whole,
            bad=[("size", lambda: RandomResizedCrop(0)), ("scale", lambda: RandomResizedCrop(8, scale=(0.0, 1.0))),
                 ("scale", lambda: RandomResizedCrop(8, scale=1.5)), ("ratio", lambda: RandomResizedCrop(8, ratio=0)),
                 ("size", lambda: RandomResizedCrop((4, 4, 4)))],
            kinds=("raster-nodata",))


class Pad(SpatialTransform):
    """Grow the grid to at least ``size`` voxels per axis, evenly on both sides (a regrid); new
    voxels get each layer's fill (and are invalid when the sample has a VALID layer).

    Args:
        size: Minimum output size in voxels, one number or one per axis.
        p: Probability of applying.

    Example:
        >>> Pad((136, 136, 64))(sample, generator_for(0)).space.shape
        (136, 136, 64)
    """

    deterministic = True

    def __init__(self, size: int | Sequence[int], p: float = 1.0) -> None:
        self.size = as_size("size", size)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {}


    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """Another grid grows to cover the padded box too (it never loses voxels)."""
        return grid if out == space else covering_grid(grid, out, keep=True)

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        target = np.maximum(np.array(per_axis("size", self.size, space.ndim)), space.shape)
        before = (target - np.array(space.shape)) // 2
        return space.with_grid(target.tolist(), space.affine @ _translate(-before)), []

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Pad(tuple(d + 3 for d in s.space.shape)), identity=lambda s: Pad(1),
            bad=[("size", lambda: Pad((4, -1)))])


def _foreground_voxels(sample: Sample, layer: str, threshold: float, argument: str,
                       transform: str) -> torch.Tensor | None:
    """``(*spatial)`` bool on ``layer``'s grid: voxels where any channel is > ``threshold`` and that are
    valid (the VALID layer of its grid), or None when there is none. Reads materialised data."""
    sample.materialize()                # the box is found on the data as it is now (the op is not fused)
    mask = foreground(sample, layer, argument, transform, threshold)[0]
    valid = sample.valid_of(layer)
    if valid is not None and valid != layer:
        mask = mask & sample.layer_info(valid).data[0].to(mask.device)
    return mask if bool(mask.any()) else None


def _to_reference(sample: Sample, layer: str, index: np.ndarray) -> np.ndarray:
    """``(N, ndim)`` continuous indices on ``layer``'s grid as indices on the reference grid."""
    grid = sample.space_of(layer)
    return index if grid == sample.space else sample.space.world_to_index(grid.index_to_world(index))


def _foreground_bounds(sample: Sample, layer: str, threshold: float, argument: str,
                       transform: str) -> tuple[np.ndarray, np.ndarray] | None:
    """First and last reference-grid voxel (inclusive) of the box holding every valid voxel where a
    channel of ``layer`` is > ``threshold`` (on a grid of its own: the reference voxels covering the
    box's extent), or None when there is none. Reads materialised data."""
    sample.materialize()                # the box is found on the data as it is now (the op is not fused)
    if layer not in sample.layer_names():
        raise ParameterError(argument, layer, f"a layer of the sample for {transform} ({sample.layer_names()})")
    valid = sample.valid_of(layer)
    box = foreground_box(sample.layer_info(layer).data, threshold,
                         sample.layer_info(valid).data if valid is not None and valid != layer else None)
    if box is None:
        return None
    lo, hi = box
    if sample.space_of(layer) == sample.space:
        return lo.astype(int), hi.astype(int)
    n = len(lo)
    corners = np.array(np.meshgrid(*[[a - 0.5, b + 0.5] for a, b in zip(lo, hi)], indexing="ij")).reshape(n, -1).T
    index = _to_reference(sample, layer, corners)            # the box's voxel extent, on the reference grid
    return (np.floor(index.min(0) + 0.5 + 1e-6).astype(int), np.ceil(index.max(0) - 0.5 - 1e-6).astype(int))


def _check_box(params: dict[str, Any], space: Space) -> tuple[list[int], list[int]]:
    start, size = params.get("start"), params.get("size")
    if not (isinstance(start, list) and isinstance(size, list) and len(start) == len(size) == space.ndim and all(
            isinstance(v, int) and not isinstance(v, bool) for v in start + size) and all(v >= 1 for v in size)):
        raise ParameterError("params", params, f"'start' and 'size' ({space.ndim} integers each, size >= 1) of a box "
                             "of the reference grid")
    return start, size


class _Box(SpatialTransform):
    """A regrid to a box of the reference grid, ``{"start": [...], "size": [...]}`` in voxels; the box
    may reach outside the grid, where layers get their fill (as ``Pad``)."""

    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """As ``Crop``: another grid gets the part of its lattice covering the box, one shape per box size."""
        return grid if out == space else covering_grid(grid, out, fixed=True)

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        start, size = _check_box(params, space)
        if list(start) == [0] * space.ndim and tuple(size) == space.shape:
            return space, []
        return space.with_grid(size, space.affine @ _translate(start)), []


def _as_counts(name: str, value: Any) -> int | list[int]:
    counts = [value] if isinstance(value, int) and not isinstance(value, bool) else \
        list(value) if isinstance(value, (list, tuple)) and value else None
    if counts is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in counts):
        raise ParameterError(name, value, "an integer >= 1, or one per axis")
    return counts[0] if isinstance(value, int) else counts


class CropForeground(_Box):
    """Crop to the bounding box of the foreground (MONAI ``CropForeground``), a regrid: every kept
    voxel keeps its world position, and points, labels and VALID follow as for ``Crop``.

    The foreground is the voxels where layer ``layer`` is > ``threshold`` in any of its channels
    (a label map: any label > 0; an image: an intensity threshold), valid voxels only. The box is
    grown by ``margin`` (mm, rounded up to whole voxels per axis) and its size rounded up to a
    multiple of ``k_divisible``, about its centre as MONAI does; where it then reaches outside the
    grid the new voxels get each layer's fill (and are invalid when the sample has a VALID layer),
    unless ``allow_smaller`` clips the margin to the grid. A sample with no foreground keeps its
    whole grid. The box is read from the data as it is when the op runs, so inside a ``Compose``
    the steps before it are resampled first (the crop itself is a copy).

    Args:
        layer: The layer whose foreground is boxed (on a grid of its own, the box is the reference
            grid's voxels covering its box).
        threshold: A voxel is foreground where the layer is > ``threshold`` (intensity units for
            an image; 0 for a label map).
        margin: Extra width around the box in world units (mm, or CRS units), one number or one per
            axis, >= 0.
        k_divisible: Output size a multiple of this, one integer or one per axis.
        allow_smaller: Clip the margin at the grid's edges (MONAI's ``allow_smaller``).
        p: Probability of applying.

    Example:
        >>> from domainaug.testing import make_volume
        >>> out = CropForeground("label", margin=2.0)(make_volume())
    """

    deterministic = True
    fusable = False

    def __init__(self, layer: str = "label", threshold: float = 0.0, margin: float | Sequence[float] = 0.0,
                 k_divisible: int | Sequence[int] = 1, *, allow_smaller: bool = False, p: float = 1.0) -> None:
        self.layer = as_layer_name("layer", layer)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ParameterError("threshold", threshold, "a finite number")
        self.threshold = float(threshold)
        values = [margin] if isinstance(margin, (int, float)) else list(margin) if isinstance(
            margin, (list, tuple)) else None
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                                 for v in values):
            raise ParameterError("margin", margin, "a width >= 0 in world units, or one per axis")
        self.margin = float(values[0]) if isinstance(margin, (int, float)) else [float(v) for v in values]
        self.k_divisible = _as_counts("k_divisible", k_divisible)
        self.allow_smaller = bool(allow_smaller)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        n = space.ndim
        bounds = _foreground_bounds(sample, self.layer, self.threshold, "layer", "CropForeground")
        if bounds is None:
            return {"start": [0] * n, "size": list(space.shape)}
        lo, hi = bounds
        margin = np.broadcast_to(np.asarray(self.margin, dtype=np.float64), (n,)) if isinstance(self.margin, float) \
            else np.asarray(self.margin, dtype=np.float64)
        if margin.shape != (n,):
            raise ParameterError("margin", self.margin, f"one width or {n} for a {n}D sample")
        grow = voxels_covering(margin, space.spacing)
        start, stop = lo - grow, hi + grow + 1
        if self.allow_smaller:
            start, stop = np.maximum(start, 0), np.minimum(stop, space.shape)
        k = np.array(per_axis("k_divisible", tuple(np.atleast_1d(self.k_divisible).tolist()), n))
        size = stop - start
        padded = -(-size // k) * k
        start = start - (padded - size) // 2
        return {"start": [int(v) for v in start], "size": [int(v) for v in padded]}

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: CropForeground("label", margin=float(s.space.spacing.max())),
            identity=lambda s: CropForeground("label", threshold=1e9),         # no foreground: the whole grid
            bad=[("margin", lambda: CropForeground(margin=-1)), ("k_divisible", lambda: CropForeground(k_divisible=0)),
                 ("layer", lambda: CropForeground(3)),  # type: ignore[arg-type]  # (wrong on purpose)
                 ("threshold", lambda: CropForeground(threshold=math.nan))])


class CropOrPad(_Box):
    """Crop and/or pad to ``size`` voxels (TorchIO ``CropOrPad``, MONAI ``ResizeWithPadOrCrop``), a
    regrid: every kept voxel keeps its world position; new voxels get each layer's fill (and are
    invalid when the sample has a VALID layer), as ``Pad`` does.

    The box is centred on the grid (on each axis, as ``Crop(mode="center")`` where it crops and as
    ``Pad`` where it pads), or, with ``mask``, on the centre of the bounding box (``center="bbox"``,
    TorchIO's choice) or the centre of mass (``"mass"``) of the voxels where layer ``mask`` is > 0
    in any channel (TorchIO reads channel 0 only); then the box may reach outside the grid on either
    side, and a centre half-way between two voxels starts the box on the lower one (as TorchIO). A
    mask with no voxel > 0 falls back to the grid centre. Centred on the grid, an odd difference
    puts the extra voxel at the end, as ``Crop(mode="center")`` and ``Pad`` do (TorchIO puts it at
    the start), so ``CropOrPad(size)`` is ``Pad(size)`` then ``Crop(size, mode="center")``.

    Args:
        size: Output size in voxels, one number or one per axis.
        mask: Name of the layer whose foreground the box is centred on; ``None``: the grid centre.
        center: ``"bbox"`` or ``"mass"`` (with ``mask``).
        p: Probability of applying.

    Example:
        >>> from domainaug.testing import make_volume
        >>> CropOrPad((8, 20, 12), mask="label")(make_volume()).space.shape
        (8, 20, 12)
    """

    deterministic = True

    def __init__(self, size: int | Sequence[int], mask: str | None = None, center: str = "bbox",
                 p: float = 1.0) -> None:
        self.size = as_size("size", size)
        self.mask = as_layer_name("mask", mask, optional=True)
        self.center = check_choice("center", center, ("bbox", "mass"))
        self.fusable = mask is None
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        space = sample.space
        size = np.array(per_axis("size", self.size, space.ndim))
        shape = np.array(space.shape)
        start = np.where(size <= shape, (shape - size) // 2, -((size - shape) // 2))
        mask, centre = self.mask, None
        if mask is not None and self.center == "bbox":
            bounds = _foreground_bounds(sample, mask, 0.0, "mask", "CropOrPad")
            centre = None if bounds is None else (bounds[0] + bounds[1]) / 2.0
        elif mask is not None:
            fg = _foreground_voxels(sample, mask, 0.0, "mask", "CropOrPad")
            if fg is not None:
                centre = _to_reference(sample, mask, torch.nonzero(fg).double().mean(0).cpu().numpy()[None])[0]
        if centre is not None:
            start = np.ceil(centre - (size - 1) / 2.0 - 0.5 - 1e-9).astype(int)    # a tie goes down, as TorchIO
        return {"start": [int(v) for v in start], "size": [int(v) for v in size]}

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: CropOrPad(tuple(d + 2 * (i % 2) - 3 for i, d in enumerate(s.space.shape)), mask="label"),
            identity=lambda s: CropOrPad(s.space.shape),
            bad=[("size", lambda: CropOrPad(0)), ("center", lambda: CropOrPad(4, mask="label", center="middle")),
                 ("mask", lambda: CropOrPad(4, mask=1))])  # type: ignore[arg-type]  # (wrong on purpose)


class Resample(SpatialTransform):
    """Resample to a new voxel size in world units, keeping the field of view, or onto the grid of
    another layer (a regrid).

    With ``spacing``, each grid of the sample (the reference and any layer on a grid of its own) is
    resampled to that voxel size over its own field of view: the output grid starts at the same
    outer voxel edge along each axis and has ``round(extent / spacing)`` voxels, with the same axis
    directions (so up to half an output voxel of the extent may be gained or lost on the far side).

    With ``target``, every layer goes onto the grid of layer ``target`` (as TorchIO's
    ``Resample(target=...)`` and MONAI's ``ResampleToMatch``), which becomes the sample's one grid.
    Fused with the warps before it, a 20 m band reaches a 10 m grid with one interpolation, not
    two. Voxels of the target grid that another layer's grid does not cover are invalid (a VALID
    layer is added when needed). The record holds the target grid (shape and affine), so replay
    and ``trace`` need no data.

    Args:
        spacing: Output voxel size in world units, one number or one per axis.
        target: The name of the layer whose grid every layer goes to (instead of ``spacing``).
        p: Probability of applying.

    Example:
        >>> Resample(spacing=4.0)(sample, generator_for(0)).space.shape                    # from 2 x 2 x 3 mm
        (64, 64, 46)
    """

    deterministic = True

    def __init__(self, spacing: float | Sequence[float] | None = None, target: str | None = None,
                 p: float = 1.0) -> None:
        if (spacing is None) == (target is None):
            raise ParameterError("spacing", spacing, "a voxel size, or None with a target layer (one of the two)")
        self.spacing = None if spacing is None else as_lengths("spacing", spacing)
        self.target = None if target is None else as_layer_name("target", target)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        if self.target is None:
            return {}
        if self.target not in sample.layer_names():
            raise ParameterError("target", self.target, f"a layer of the sample ({sample.layer_names()})")
        grid = sample.space_of(self.target)
        return {"shape": list(grid.shape), "affine": grid.affine.tolist()}

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        n = space.ndim
        if self.target is not None:
            affine = np.asarray(params.get("affine", ()), dtype=np.float64)
            if affine.shape != (n + 1, n + 1) or len(params.get("shape", ())) != n:
                raise ParameterError("params", sorted(params), f"the shape and {n + 1}x{n + 1} affine of the "
                                     f"target grid for a {n}D sample")
            return space.with_grid(params["shape"], affine), []
        new = np.broadcast_to(as_lengths("spacing", self.spacing, n), (n,)).astype(np.float64)
        extent = np.array(space.shape) * space.spacing
        shape = np.maximum(1, np.round(extent / new)).astype(int)
        linear = space.direction @ np.diag(new)
        corner = space.index_to_world(np.full(n, -0.5))
        affine = homogeneous(linear, corner + linear @ np.full(n, 0.5))
        return space.with_grid(shape.tolist(), affine), []

    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        return out if self.target is not None else self.spatial_map(grid, params)[0]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Resample(float(s.space.spacing.min()) * 1.3),
            identity=lambda s: Resample(s.space.spacing.tolist()),
            bad=[("spacing", lambda: Resample(0)), ("spacing", lambda: Resample([])), ("spacing", lambda: Resample()),
                 ("spacing", lambda: Resample(1.0, target="image"))])


class ResampleToMatch(Resample):
    """Every layer onto the grid of layer ``target`` (MONAI's name for ``Resample(target=...)``).

    Args:
        target: The name of the layer whose grid every layer goes to.
        p: Probability of applying.

    Example:
        >>> out = ResampleToMatch("image")(sample, generator_for(0))    # every layer onto the grid of "image"
        >>> out.space.same_grid(sample.space)
        True
    """

    def __init__(self, target: str, p: float = 1.0) -> None:
        super().__init__(target=target, p=p)

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(          # one grid: the target is the sample's grid (tests/test_many_grids.py)
            random=lambda s: ResampleToMatch("label"), identity=lambda s: ResampleToMatch("label"),
            bad=[("target", lambda: ResampleToMatch(3))])  # type: ignore[arg-type]  # (wrong on purpose)


def _check_lengths(params: dict[str, Any], ndim: int, **expected: int) -> None:
    for key, n in expected.items():
        if len(params[key]) != n:
            raise ParameterError(f"params[{key!r}]", params[key], f"{n} values for a {ndim}D sample")


