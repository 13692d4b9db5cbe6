"""Point-set math: index <-> world conversions (the one place where coordinates change frames) and
lookups of a lattice at points."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["apply_affine", "lattice_at", "lengths_in_voxels", "voxels_covering", "invert_field_points"]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(..., n)`` points through an ``(n+1)x(n+1)`` affine, in float64.

    Compiled rather than ``points @ A.T``: numpy is slow on (N, 3) layouts, and a BLAS call on many
    points starts OpenBLAS threads that keep spinning and slow the next parallel kernel down."""
    points = np.asarray(points, dtype=np.float64)
    flat = np.ascontiguousarray(points.reshape(-1, points.shape[-1]))
    return _apply(np.ascontiguousarray(matrix, dtype=np.float64), flat).reshape(points.shape)


def lengths_in_voxels(lengths: float | list[float], spacing: np.ndarray) -> tuple[int, ...]:
    """World lengths (one, or one per axis) as whole voxels along each array axis of a grid with
    ``spacing`` (at least one voxel)."""
    world = np.broadcast_to(np.asarray(lengths, dtype=np.float64), np.shape(spacing))
    return tuple(max(1, int(round(float(v)))) for v in world / np.asarray(spacing, dtype=np.float64))
def voxels_covering(length: np.ndarray | float, spacing: np.ndarray) -> np.ndarray:
    """Whole voxels per axis that cover at least ``length`` world units (mm, CRS units) at ``spacing``."""
    return np.ceil(np.asarray(length, dtype=np.float64) / np.asarray(spacing, dtype=np.float64) - 1e-9).astype(int)


@nb.njit(cache=True)
def _apply(matrix, points):
    n = matrix.shape[0] - 1
    out = np.empty_like(points)
    for p in range(points.shape[0]):
        for i in range(n):
            acc = matrix[i, n]
            for j in range(n):
                acc += matrix[i, j] * points[p, j]
            out[p, i] = acc
    return out


@nb.njit(parallel=True, cache=True, error_model="numpy")
def lattice_at(lattice, g):
    """Trilinear lookup of every channel of ``lattice`` (C, lz, ly, lx) at lattice-index points
    ``g`` (N, 3), clamped to the lattice."""
    C = lattice.shape[0]
    out = np.empty((g.shape[0], C))
    for p in nb.prange(g.shape[0]):
        for k in range(C):
            out[p, k] = _trilinear(lattice, k, g[p, 0], g[p, 1], g[p, 2])
    return out


@nb.njit(inline="always")
def _trilinear(lattice, k, gz, gy, gx):  # pragma: no cover - compiled
    """Channel ``k`` of ``lattice`` (C, lz, ly, lx) at the lattice index ``(gz, gy, gx)``, clamped."""
    _, lz, ly, lx = lattice.shape
    cz = min(max(gz, 0.0), lz - 1.0)
    cy = min(max(gy, 0.0), ly - 1.0)
    cx = min(max(gx, 0.0), lx - 1.0)
    z0, y0, x0 = min(int(cz), lz - 1), min(int(cy), ly - 1), min(int(cx), lx - 1)
    z1, y1, x1 = min(z0 + 1, lz - 1), min(y0 + 1, ly - 1), min(x0 + 1, lx - 1)
    a, b, c = cx - x0, cy - y0, cz - z0
    v00 = lattice[k, z0, y0, x0] + a * (lattice[k, z0, y0, x1] - lattice[k, z0, y0, x0])
    v01 = lattice[k, z0, y1, x0] + a * (lattice[k, z0, y1, x1] - lattice[k, z0, y1, x0])
    v10 = lattice[k, z1, y0, x0] + a * (lattice[k, z1, y0, x1] - lattice[k, z1, y0, x0])
    v11 = lattice[k, z1, y1, x0] + a * (lattice[k, z1, y1, x1] - lattice[k, z1, y1, x0])
    u0 = v00 + b * (v01 - v00)
    u1 = v10 + b * (v11 - v10)
    return u0 + c * (u1 - u0)


@nb.njit(parallel=True, cache=True, error_model="numpy")
def invert_field_points(lattice, to_lattice, y, iterations):
    """World points ``x`` with ``x + d(x) = y`` for the displacement ``d`` on ``lattice`` (C, lz, ly,
    lx; C = n world axes, lz = 1 in 2D) read through the world -> lattice-index affine ``to_lattice``,
    by the fixed point ``x <- y - d(x)`` (at most ``iterations`` steps, as ``maps.push_forward_points``;
    a point stops once its step is below 1e-12 of its coordinates' size, float64 round-off), one
    compiled loop per point instead of one lookup call per step."""
    C = lattice.shape[0]
    n = y.shape[1]
    out = np.empty_like(y)
    for p in nb.prange(y.shape[0]):
        x = y[p].copy()
        g = np.zeros(3)
        size = 1.0
        for i in range(n):
            size = max(size, abs(y[p, i]))
        for _ in range(iterations):
            step = 0.0
            for i in range(n):
                acc = to_lattice[i, n]
                for j in range(n):
                    acc += to_lattice[i, j] * x[j]
                g[3 - n + i] = acc
            for k in range(C):
                new = y[p, k] - _trilinear(lattice, k, g[0], g[1], g[2])
                step = max(step, abs(new - x[k]))
                x[k] = new
            if step <= 1e-12 * size:
                break
        out[p] = x
    return out
