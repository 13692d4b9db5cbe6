"""``Space``: the grid every layer of a sample shares, and its index -> world affine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ParameterError, ShapeError
from .params import as_lengths

from .kernels.grid import apply_affine

__all__ = ["Space", "apply_affine"]


@dataclass(frozen=True, eq=False)
class Space:
    """A spatial grid: ``shape`` (2 or 3 axes) and an index -> world affine.

    The affine is ``(n+1)x(n+1)`` float64 and maps the array index of a voxel/pixel *centre*, in
    array-axis order, to world units (mm for scans, CRS units for rasters). ``crs`` names the
    coordinate reference system of a raster (``None`` for scans, which are in RAS+ mm).
    """

    shape: tuple[int, ...]
    affine: np.ndarray = field(repr=False)
    crs: str | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) not in (2, 3):
            raise ShapeError(f"space shape {shape} has {len(shape)} spatial axes; expected 2 (H, W) or 3 (D, H, W)")
        if any(s < 1 for s in shape):
            raise ShapeError(f"space shape {shape} has an empty axis; every axis needs at least 1 voxel")
        n = len(shape)
        affine = np.array(self.affine, dtype=np.float64, copy=True)
        if affine.shape != (n + 1, n + 1):
            raise ParameterError("affine", affine.shape, f"a {(n + 1, n + 1)} matrix for a {n}D space")
        if not np.all(np.isfinite(affine)):
            raise ParameterError("affine", affine.tolist(), "finite values")
        if not np.allclose(affine[n], np.eye(n + 1)[n]):
            raise ParameterError("affine", affine.tolist(), f"a last row of {np.eye(n + 1)[n].tolist()}")
        if abs(np.linalg.det(affine[:n, :n])) <= 1e-9 * np.prod(np.linalg.norm(affine[:n, :n], axis=0)):  # scale-free
            raise ParameterError("affine", affine.tolist(), "an invertible linear part")
        affine.setflags(write=False)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "affine", affine)
        if self.crs is not None and not isinstance(self.crs, str):
            raise ParameterError("crs", self.crs, "None or a CRS string such as 'EPSG:32633'")

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_spacing(cls, shape: Sequence[int], spacing: Sequence[float] | float = 1.0,
                     origin: Sequence[float] | None = None, crs: str | None = None) -> "Space":
        """An axis-aligned grid with the given voxel size; ``origin`` is the world position of index 0."""
        n = len(shape)
        spacing = np.broadcast_to(np.asarray(as_lengths("spacing", spacing, n), dtype=np.float64), (n,))
        affine = np.eye(n + 1)
        affine[:n, :n] = np.diag(spacing)
        if origin is not None:
            origin = np.asarray(origin, dtype=np.float64)
            if origin.shape != (n,) or not np.all(np.isfinite(origin)):
                raise ParameterError("origin", origin.tolist(), f"{n} finite world coordinates")
            affine[:n, n] = origin
        return cls(tuple(shape), affine, crs)

    # --- derived quantities -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis, in world units (column norms of the affine)."""
        return np.linalg.norm(self.affine[:-1, :-1], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """World direction of each array axis (unit columns)."""
        return self.affine[:-1, :-1] / self.spacing

    @property
    def inverse(self) -> np.ndarray:
        """World -> index affine."""
        return np.linalg.inv(self.affine)

    def center_world(self) -> np.ndarray:
        """World position of the grid's centre (the middle between the first and last voxel centres)."""
        return self.index_to_world(np.array([(s - 1) / 2 for s in self.shape]))

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        return apply_affine(self.affine, index)

    def world_to_index(self, world: np.ndarray) -> np.ndarray:
        return apply_affine(self.inverse, world)

    def with_grid(self, shape: Sequence[int], affine: np.ndarray) -> "Space":
        """The same CRS on another grid."""
        return Space(tuple(shape), affine, self.crs)

    def same_grid(self, other: "Space", tolerance: float = 1e-4) -> bool:
        """Same shape and CRS, and every voxel centre within ``tolerance`` voxels of its twin. The
        comparison is in index units (``A^-1 B`` against the identity), so a raster with a large
        origin gets no more slack than a scan."""
        if self.shape != other.shape or self.crs != other.crs:
            return False
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.shape], indexing="ij")).reshape(self.ndim, -1).T
        moved = apply_affine(self.inverse @ other.affine, corners)   # an affine drift is largest at a corner
        return bool(np.abs(moved - corners).max() <= tolerance)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Space) and self.shape == other.shape and self.crs == other.crs
                and np.array_equal(self.affine, other.affine))

    def __hash__(self) -> int:
        return hash((self.shape, self.crs, self.affine.tobytes()))

    def describe(self) -> str:
        return (f"shape {self.shape}, spacing {tuple(np.round(self.spacing, 6).tolist())}"
                + (f", crs {self.crs}" if self.crs else ""))
