"""World-unit affine matrices: rotations about array axes, scaling, shear, translation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["rotation_matrix", "shear_matrix", "about_center", "homogeneous", "n_rotations", "n_shears",
           "axis_frame"]


def n_rotations(ndim: int) -> int:
    return 1 if ndim == 2 else 3


def n_shears(ndim: int) -> int:
    return ndim * (ndim - 1) // 2


def rotation_matrix(degrees: Sequence[float]) -> np.ndarray:
    """Right-handed rotation in array-axis coordinates.

    2D: one angle, rotating axis 0 towards axis 1. 3D: one angle per array axis ``k`` (rotation in
    the plane of the two other axes), composed as ``R2 @ R1 @ R0``.
    """
    degrees = [float(d) for d in degrees]
    if len(degrees) == 1:
        c, s = math.cos(math.radians(degrees[0])), math.sin(math.radians(degrees[0]))
        return np.array([[c, -s], [s, c]])
    if len(degrees) != 3:
        raise ValueError(f"rotation needs 1 (2D) or 3 (3D) angles, got {len(degrees)}")
    out = np.eye(3)
    for axis, angle in enumerate(degrees):
        i, j = [a for a in range(3) if a != axis]
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def shear_matrix(shear: Sequence[float], ndim: int) -> np.ndarray:
    """Upper-triangular shear: entry (i, j), i < j, in row-major order of the pairs."""
    out = np.eye(ndim)
    pairs = [(i, j) for i in range(ndim) for j in range(i + 1, ndim)]
    for (i, j), value in zip(pairs, shear):
        out[i, j] = float(value)
    return out


def homogeneous(linear: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    n = linear.shape[0]
    out = np.eye(n + 1)
    out[:n, :n] = linear
    if translation is not None:
        out[:n, n] = translation
    return out


def about_center(linear: np.ndarray, center: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """Forward world map ``x -> center + linear (x - center) + translation``."""
    offset = center - linear @ center
    if translation is not None:
        offset = offset + translation
    return homogeneous(linear, offset)


def axis_frame(linear_in_axes: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Express a linear map given in the array-axis frame (world units) in world coordinates.

    ``direction`` holds the world direction of each array axis (unit columns). The result
    ``D L D^-1`` rotates, scales or shears about the array axes as they lie in the world, so that
    anisotropic voxels stay rigid in mm.
    """
    return direction @ linear_in_axes @ np.linalg.inv(direction)
