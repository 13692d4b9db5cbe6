"""Elastic fields from coarse control points in world units.

The random part is only the control-point displacements (a few hundred numbers). They are
interpolated with a cubic B-spline onto a *lattice* a few voxels apart (never a dense
full-resolution random field); the resampler interpolates the lattice linearly per voxel.
"""

from __future__ import annotations

import math

import numpy as np

from ..maps import LATTICE_MAX_STEP, Field
from ..space import Space

__all__ = ["control_grid_shape", "bspline_weights", "build_field", "default_spacing"]


def default_spacing(space: Space) -> float:
    """One fifth of the longest world extent: a mild, global deformation in any unit."""
    extent = (np.array(space.shape) - 1) * space.spacing
    return float(max(extent.max(), space.spacing.max()) / 5)


def control_grid_shape(space: Space, spacing: np.ndarray) -> tuple[int, ...]:
    """Control points per axis: enough intervals of ``spacing`` to cover the grid, plus a border
    point on each side (the cubic B-spline's support) and one for rounding."""
    extent = (np.array(space.shape) - 1) * space.spacing
    intervals = [max(1, math.ceil(e / s - 1e-9)) for e, s in zip(extent, spacing)]
    return tuple(m + 3 for m in intervals)


def bspline_weights(f: np.ndarray) -> np.ndarray:
    """Uniform cubic B-spline weights for taps ``floor-1 .. floor+2`` at fraction ``f``; shape (..., 4)."""
    f = np.asarray(f, dtype=np.float64)
    return np.stack([(1 - f) ** 3 / 6, (3 * f ** 3 - 6 * f ** 2 + 4) / 6,
                     (-3 * f ** 3 + 3 * f ** 2 + 3 * f + 1) / 6, f ** 3 / 6], axis=-1)


def _basis(n_vox: int, step_vox: float, n_ctrl: int, lattice_step: int) -> np.ndarray:
    """(n_lattice, n_ctrl) matrix evaluating the B-spline at lattice points along one axis."""
    n_lat = math.ceil((n_vox - 1) / lattice_step) + 1
    positions = np.arange(n_lat) * lattice_step                      # voxel index of each lattice point
    first = (n_vox - 1) / 2 - (n_ctrl - 1) / 2 * step_vox            # voxel index of control point 0
    t = (positions - first) / step_vox
    s = np.floor(t).astype(np.int64)
    w = bspline_weights(t - s)
    out = np.zeros((n_lat, n_ctrl))
    for tap in range(4):
        np.add.at(out, (np.arange(n_lat), np.clip(s - 1 + tap, 0, n_ctrl - 1)), w[:, tap])
    return out


def build_field(space: Space, spacing: np.ndarray, displacement: np.ndarray) -> Field:
    """The smooth field of ``displacement`` (``(n, *control_shape)``, world units along the array
    axes) on control points ``spacing`` apart (world units), centred on the grid."""
    n = space.ndim
    step_vox = np.asarray(spacing, dtype=np.float64) / space.spacing
    lattice_step = [int(max(1, min(LATTICE_MAX_STEP, s // 4))) for s in step_vox]
    bases = [_basis(space.shape[i], step_vox[i], displacement.shape[1 + i], lattice_step[i]) for i in range(n)]
    lattice = displacement
    for axis, basis in enumerate(bases):      # separable, one axis at a time; einsum avoids BLAS threads
        lattice = np.moveaxis(np.einsum("ij,...j->...i", basis, np.moveaxis(lattice, axis + 1, -1)), -1, axis + 1)
    world = np.einsum("ij,j...->i...", space.direction, lattice)     # world vectors (einsum: no BLAS)
    to_lattice = np.diag(list(1.0 / np.array(lattice_step)) + [1.0]) @ space.inverse
    return Field(np.ascontiguousarray(world, dtype=np.float32), to_lattice)
