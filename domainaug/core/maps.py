"""The map model: one pending world -> world coordinate map per sample.

A spatial op is a *pull-back*: for every output world position it says where in the input world
the content comes from. It is a list of stages, applied in order from the output side:

- an affine stage is an ``(n+1)x(n+1)`` world -> world matrix;
- a :class:`Field` stage adds a smooth displacement: ``x <- x + d(x)``.

Consecutive ops compose by concatenating their stages (the newest op's stages come first, since
they act on the newest output), and consecutive affine stages are multiplied into one matrix. The
layers are resampled once, from the source grid, when the data is needed (``kernels.resample``);
points are pushed and pulled through the same stages, and a map is inverted stage by stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .kernels import parallel_lock
from .kernels.grid import apply_affine, invert_field_points, lattice_at
from .space import Space

__all__ = ["Field", "Stage", "PendingMap", "fuse_stages", "forward_affine", "pull_back_points", "push_forward_points",
           "invert_field", "coordinate_lattice", "lattice_steps", "lattice_axes", "LATTICE_MAX_STEP"]

LATTICE_MAX_STEP = 4  # voxels between lattice points, at most


@dataclass(frozen=True, eq=False)
class Field:
    """A smooth displacement field ``d(x)`` in world units, stored on a coarse lattice.

    ``lattice`` is float32 ``(n, *lattice_shape)``: world displacement vectors at lattice points.
    ``to_lattice`` is the ``(n+1)x(n+1)`` world -> lattice-index affine. Between lattice points the
    field is interpolated linearly; outside the lattice it is clamped to the border value.
    """

    lattice: np.ndarray
    to_lattice: np.ndarray

    @property
    def ndim(self) -> int:
        return self.lattice.shape[0]


Stage = np.ndarray | Field


def fuse_stages(stages: list[Stage]) -> list[Stage]:
    """Multiply runs of consecutive affine stages into one matrix (order kept)."""
    out: list[Stage] = []
    for stage in stages:
        if isinstance(stage, np.ndarray) and out and isinstance(out[-1], np.ndarray):
            # Both pull back from the output side: x -> prev(x) -> stage(prev(x)).
            out[-1] = stage @ out[-1]
        else:
            out.append(stage)
    return out


def forward_affine(stages: list[Stage], ndim: int, what: str = "the map") -> np.ndarray:
    """The forward world -> world matrix of pull-back ``stages`` that are all affine (the identity
    for none); a ``ParameterError`` naming ``what`` for a field stage."""
    from ..errors import ParameterError
    pull = None
    for stage in stages:
        if isinstance(stage, Field):
            raise ParameterError("stages", what, "affine stages only where the output grid changes (a regrid "
                                 "with a displacement field has no grid of its own on another grid)")
        pull = stage if pull is None else stage @ pull
    return np.eye(ndim + 1) if pull is None else np.linalg.inv(pull)


@dataclass(frozen=True, eq=False)
class PendingMap:
    """Everything needed to resample layers that live on ``source`` onto ``space`` in one pass.

    ``values`` holds per-layer *value stages* for maps that are exact voxel permutations: a
    per-channel affine ``x -> gain * x + bias`` on valid voxels (``(C,)`` float64 arrays), applied
    while the data is copied (spectral jitter after a dihedral flip costs one pass, not three).
    """

    source: Space
    space: Space
    stages: list[Stage] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def then(self, space: Space, stages: list[Stage]) -> PendingMap:
        """Compose with a further op whose output is ``space`` and whose pull-back is ``stages``."""
        if self.values:
            raise ValueError("value stages are pending: resample before adding a spatial map")
        return PendingMap(self.source, space, fuse_stages(list(stages) + list(self.stages)))

    def with_values(self, name: str, gain: np.ndarray, bias: np.ndarray) -> PendingMap:
        """Add ``x -> gain * x + bias`` (after any earlier value stage of the layer)."""
        values = dict(self.values)
        if name in values:
            g0, b0 = values[name]
            gain, bias = gain * g0, gain * b0 + bias
        values[name] = (np.asarray(gain, np.float64), np.asarray(bias, np.float64))
        return PendingMap(self.source, self.space, self.stages, values)

    @property
    def n_fields(self) -> int:
        return sum(isinstance(s, Field) for s in self.stages)


# ---------------------------------------------------------------------------------------------
# Points through the stages, and the map back.
# ---------------------------------------------------------------------------------------------
def pull_back_points(stages: list[Stage], points: np.ndarray) -> np.ndarray:
    """World points of an op's output -> world points of its input (through pull-back stages)."""
    x = np.asarray(points, dtype=np.float64)
    for stage in stages:
        if isinstance(stage, Field):
            x = x + _field_at_points(stage, x)
        else:
            x = apply_affine(stage, x)
    return x


def push_forward_points(stages: list[Stage], points: np.ndarray, iterations: int = 30) -> np.ndarray:
    """World points of an op's input -> where the content there lands in its output.

    Affine stages are inverted exactly; a field stage ``y = x + d(x)`` is inverted by the fixed
    point iteration ``x <- y - d(x)``, which converges while the field's gradient stays below 1
    (documented tolerance: well below half a voxel for the fields Elastic draws).
    """
    x = np.asarray(points, dtype=np.float64)
    for stage in reversed(stages):
        if isinstance(stage, Field):
            x = _invert_field(stage, x, iterations)
        else:
            x = apply_affine(np.linalg.inv(stage), x)
    return x


def _invert_field(field: Field, y: np.ndarray, iterations: int) -> np.ndarray:
    """``x`` with ``x + d(x) = y``, by the fixed point of ``push_forward_points`` in one compiled call."""
    lattice = field.lattice if field.ndim == 3 else field.lattice[:, None]
    flat = np.ascontiguousarray(y.reshape(-1, field.ndim), dtype=np.float64)
    with parallel_lock():
        out = invert_field_points(np.ascontiguousarray(lattice), np.ascontiguousarray(field.to_lattice, np.float64),
                                  flat, iterations)
    return out.reshape(y.shape)


def invert_field(stage: Field, iterations: int = 30) -> tuple[Field, float]:
    """The field ``e`` on ``stage``'s lattice with ``y -> y + e(y)`` the inverse of ``x -> x + d(x)``,
    solved at each node by the fixed point ``e <- -d(y + e)`` (as in ``push_forward_points``) and
    interpolated linearly between nodes; and the largest residual ``|e + d(y + e)|`` at a node (world
    units): small where the fixed point converged (the field's gradient below 1), large where it folds."""
    shape = stage.lattice.shape[1:]
    nodes = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"), -1)
    y = apply_affine(np.linalg.inv(stage.to_lattice), nodes.reshape(-1, len(shape)))
    e = np.zeros_like(y)
    for _ in range(iterations):
        e = -_field_at_points(stage, y + e)
    residual = float(np.abs(e + _field_at_points(stage, y + e)).max()) if len(e) else 0.0
    lattice = np.ascontiguousarray(np.moveaxis(e.reshape(shape + (len(shape),)), -1, 0), dtype=np.float32)
    return Field(lattice, stage.to_lattice), residual


def _field_at_points(field: Field, x: np.ndarray) -> np.ndarray:
    """The field (world displacement) at world points ``x`` (N, n): linear between lattice nodes,
    clamped outside."""
    n = field.ndim
    g = apply_affine(field.to_lattice, x)
    lattice = field.lattice
    if n == 2:                                            # lift: a depth-1 leading axis
        lattice, g = lattice[:, None], np.concatenate([np.zeros((len(g), 1)), g], axis=1)
    with parallel_lock():
        return lattice_at(np.ascontiguousarray(lattice), np.ascontiguousarray(g))


# ---------------------------------------------------------------------------------------------
# The map as source-index coordinates on a coarse output-aligned lattice (what the resampler reads).
# ---------------------------------------------------------------------------------------------
def lattice_steps(pending: PendingMap) -> list[int]:
    """Output voxels between coordinate-lattice nodes, per axis. An affine-only map is linear, so
    the grid's corners suffice (step = n - 1); with fields, the finest field lattice step along each
    output axis (at most ``LATTICE_MAX_STEP``). When the output-side field lies on the output grid
    (an Elastic last in a pipeline) the nodes coincide with its lattice and the map is exact."""
    shape = pending.space.shape
    steps = [max(1, n - 1) for n in shape]
    linear = pending.space.affine[:-1, :-1]          # output index -> the current stage's input, linear part
    for stage in pending.stages:
        if isinstance(stage, Field):
            # field-lattice index per output index, along each output axis (affines before it included;
            # an earlier field counts as the identity: it is smooth and small)
            per_axis = np.linalg.norm(stage.to_lattice[:-1, :-1] @ linear, axis=0)
            for a in range(len(shape)):
                steps[a] = min(steps[a], int(max(1, min(LATTICE_MAX_STEP, np.floor(1 / max(per_axis[a], 1e-12))))))
        else:
            linear = stage[:-1, :-1] @ linear
    return steps


def lattice_axes(shape: tuple[int, ...], steps: list[int]) -> list[np.ndarray]:
    """The coordinate lattice's node positions (output voxel indices) along each axis: ``k * step``
    for k = 0 .. K-1, at least two nodes, the last at or beyond ``n - 1``."""
    return [np.arange(max(2, math.ceil((n - 1) / st) + 1)) * st for n, st in zip(shape, steps)]


def coordinate_lattice(pending: PendingMap) -> tuple[np.ndarray, np.ndarray]:
    """Source-index coordinates (float64, ``(3, nz, ny, nx)``, lifted to 3D) at lattice nodes
    ``k * step`` of the output grid, and the steps (3,). Between nodes the resampler interpolates
    the coordinates linearly; this is the definition of the map that every path shares."""
    shape = pending.space.shape
    steps = lattice_steps(pending)
    axes = lattice_axes(shape, steps)
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape)).astype(np.float64)
    world = pending.space.index_to_world(nodes)
    source = pending.source.world_to_index(pull_back_points(pending.stages, world))
    coords = source.T.reshape((len(shape),) + tuple(len(a) for a in axes))
    if len(shape) == 2:                                      # lift: a depth-1 leading axis
        coords = np.concatenate([np.zeros((1,) + coords.shape[1:]), coords])[:, None]
        coords = np.concatenate([coords, coords], axis=1)    # two identical z nodes
        steps = [1] + steps
    return np.ascontiguousarray(coords), np.array(steps, dtype=np.int64)
