"""Index <-> world conversions of point sets: the one place where coordinates change frames."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["apply_affine"]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(..., n)`` points through an ``(n+1)x(n+1)`` affine, in float64.

    Compiled rather than ``points @ A.T``: numpy is slow on (N, 3) layouts, and a BLAS call on many
    points starts OpenBLAS threads that keep spinning and slow the next parallel kernel down."""
    points = np.asarray(points, dtype=np.float64)
    flat = np.ascontiguousarray(points.reshape(-1, points.shape[-1]))
    return _apply(np.ascontiguousarray(matrix, dtype=np.float64), flat).reshape(points.shape)


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
