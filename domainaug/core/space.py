"""``Space``: the grid every layer of a sample shares, and its index -> world affine."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError, ShapeError
from .kernels.grid import apply_affine
from .params import as_lengths

__all__ = ["Space", "apply_affine", "as_crs", "crs_equal", "crs_name", "max_voxels", "check_same_world",
           "covering_grid"]

#: Default limit on the voxels of one grid (1024**3): a regrid past it (e.g. ``Resample`` of a
#: degree-spaced raster in metres) is a named error instead of a multi-GB allocation.
MAX_VOXELS = 2**30


def max_voxels() -> int:
    """The largest grid a ``Space`` may have: ``DOMAINAUG_MAX_VOXELS`` if set, else ``MAX_VOXELS``."""
    value = os.environ.get("DOMAINAUG_MAX_VOXELS")
    return int(float(value)) if value else MAX_VOXELS

_EPSG_ROOT = re.compile(r'AUTHORITY\["EPSG","(\d+)"\]\]\s*$')


def as_crs(value: Any) -> str | None:
    """A CRS as domainaug keeps it: ``"EPSG:<code>"`` when the definition *is* that EPSG code, else
    its full WKT, never a guessed code. Accepts ``None``, an EPSG code (``32633``), a string (``"EPSG:32633"``,
    WKT, PROJ) or a CRS object with ``to_wkt()`` (``rasterio.crs.CRS``, ``pyproj.CRS``: TorchGeo's)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParameterError("crs", value, "None, an EPSG code, a CRS string (EPSG:..., WKT) or a rasterio CRS")
    if isinstance(value, (int, np.integer)):
        return f"EPSG:{int(value)}"
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ParameterError("crs", value, "None, an EPSG code, a CRS string (EPSG:..., WKT) or a rasterio CRS")
        if text.upper().startswith("EPSG:") and text[5:].isdigit():
            return f"EPSG:{int(text[5:])}"
        return text
    to_wkt = getattr(value, "to_wkt", None)
    if to_wkt is None:
        raise ParameterError("crs", type(value).__name__, "None, an EPSG code, a CRS string (EPSG:..., WKT) or a "
                             "rasterio CRS")
    try:                                     # rasterio's default is WKT1 (GDAL), whose root carries the code
        # WKT1 (GDAL's, rasterio's default) carries the EPSG code at its root; pyproj writes it on request
        wkt = to_wkt(version="WKT1_GDAL") if type(value).__module__.split(".")[0] in ("rasterio", "pyproj") \
            else to_wkt()
    except TypeError:
        wkt = to_wkt()
    match = _EPSG_ROOT.search(wkt)
    return f"EPSG:{match.group(1)}" if match else wkt


def crs_equal(a: str | None, b: str | None) -> bool:
    """Whether two CRSs denote the same system, decided by PROJ (``rasterio.crs.CRS.__eq__``): an
    EPSG code and its WKT, or an ESRI WKT that PROJ calls equal, are equal. Identical strings are equal
    without PROJ; ``None`` equals only ``None``."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    from rasterio.crs import CRS
    try:
        return bool(CRS.from_user_input(a) == CRS.from_user_input(b))
    except Exception:                        # a string PROJ cannot parse equals only itself
        return False


def crs_name(crs: str | None) -> str | None:
    """A short name for messages: the EPSG code, or the WKT's first quoted name."""
    if crs is None or crs.startswith("EPSG:") or len(crs) < 60:
        return crs
    match = re.search(r'"([^"]+)"', crs)
    return f"WKT {match.group(1)!r}" if match else crs[:60] + "..."


@dataclass(frozen=True, eq=False)
class Space:
    """A spatial grid: ``shape`` (2 or 3 axes) and an index -> world affine.

    The affine is ``(n+1)x(n+1)`` float64 and maps the array index of a voxel/pixel *centre*, in
    array-axis order, to world units (mm for scans, CRS units for rasters). ``crs`` names the
    coordinate reference system of a raster (``None`` for scans, which are in RAS+ mm), kept as
    ``"EPSG:<code>"`` or full WKT (see ``as_crs``; an EPSG code, WKT or a rasterio CRS are accepted).
    """

    shape: tuple[int, ...]
    affine: np.ndarray = field(repr=False)
    crs: Any = None

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) not in (2, 3):
            raise ShapeError(f"space shape {shape} has {len(shape)} spatial axes; expected 2 (H, W) or 3 (D, H, W)")
        if any(s < 1 for s in shape):
            raise ShapeError(f"space shape {shape} has an empty axis; every axis needs at least 1 voxel")
        if math.prod(shape) > max_voxels():
            raise ShapeError(f"space shape {shape} has {math.prod(shape):,} voxels, over the limit of {max_voxels():,} "
                             "(DOMAINAUG_MAX_VOXELS); a spacing or size in the wrong units makes such grids")
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
        object.__setattr__(self, "crs", as_crs(self.crs))

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_spacing(cls, shape: Sequence[int], spacing: Sequence[float] | float = 1.0,
                     origin: Sequence[float] | None = None, crs: Any = None) -> Space:
        """An axis-aligned grid with the given voxel size; ``origin`` is the world position of index 0."""
        n = len(shape)
        steps = np.broadcast_to(np.asarray(as_lengths("spacing", spacing, n), dtype=np.float64), (n,))
        affine = np.eye(n + 1)
        affine[:n, :n] = np.diag(steps)
        if origin is not None:
            at = np.asarray(origin, dtype=np.float64)
            if at.shape != (n,) or not np.all(np.isfinite(at)):
                raise ParameterError("origin", at.tolist(), f"{n} finite world coordinates")
            affine[:n, n] = at
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
        """World -> index affine (read-only; computed once per Space)."""
        inverse = self.__dict__.get("_inverse")
        if inverse is None:
            inverse = np.linalg.inv(self.affine)
            inverse.setflags(write=False)
            object.__setattr__(self, "_inverse", inverse)
        return inverse

    def center_world(self) -> np.ndarray:
        """World position of the grid's centre (the middle between the first and last voxel centres)."""
        return self.index_to_world(np.array([(s - 1) / 2 for s in self.shape]))

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        return apply_affine(self.affine, index)

    def world_to_index(self, world: np.ndarray) -> np.ndarray:
        return apply_affine(self.inverse, world)

    def world_box_corners(self) -> np.ndarray:
        """``(2**ndim, ndim)``: the world positions of the corners of the voxels' extent."""
        return self.index_to_world(_extent_corners(self.shape))

    def world_box(self) -> np.ndarray:
        """``(2, ndim)``: the world minimum and maximum of the voxels' extent (their outer edges)."""
        world = self.world_box_corners()
        return np.stack([world.min(0), world.max(0)])

    def with_grid(self, shape: Sequence[int], affine: np.ndarray) -> Space:
        """The same CRS on another grid."""
        return Space(tuple(shape), affine, self.crs)

    def same_grid(self, other: Space, tolerance: float = 1e-4, *, equivalent_crs: bool = False) -> bool:
        """Same shape and CRS, and every voxel centre within ``tolerance`` voxels of its twin. The
        comparison is in index units (``A^-1 B`` against the identity), so a raster with a large
        origin gets no more slack than a scan. ``equivalent_crs`` compares CRSs with PROJ
        (``crs_equal``) instead of as written."""
        if self.shape != other.shape:
            return False
        if self.crs != other.crs and not (equivalent_crs and crs_equal(self.crs, other.crs)):
            return False
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.shape], indexing="ij")).reshape(self.ndim, -1).T
        moved = apply_affine(self.inverse @ other.affine, corners)   # an affine drift is largest at a corner
        return bool(np.abs(moved - corners).max() <= tolerance)

    def differences(self, other: Space) -> str:
        """What differs between two grids (shape, spacing, origin, direction, CRS), for error messages."""
        out = []
        if self.shape != other.shape:
            out.append(f"shape {self.shape} vs {other.shape}")
        if not np.allclose(self.spacing, other.spacing, rtol=1e-6, atol=0):
            out.append(f"spacing {tuple(np.round(self.spacing, 6).tolist())} vs "
                       f"{tuple(np.round(other.spacing, 6).tolist())}")
        a, b = self.affine[:-1, -1], other.affine[:-1, -1]
        shift = apply_affine(self.inverse, b)                     # the other origin, in this grid's voxels
        if np.abs(shift).max() > 1e-4:                            # (as same_grid: in voxels, not world units)
            out.append(f"origin {tuple(np.round(a, 6).tolist())} vs {tuple(np.round(b, 6).tolist())} "
                       f"({tuple(np.round(shift, 4).tolist())} voxels)")
        if not np.allclose(self.direction, other.direction, atol=1e-6):
            out.append(f"direction {np.round(self.direction, 4).tolist()} vs {np.round(other.direction, 4).tolist()}")
        if self.crs != other.crs:
            out.append(f"crs {crs_name(self.crs)} vs {crs_name(other.crs)}"
                       + (" (equivalent by PROJ)" if crs_equal(self.crs, other.crs) else ""))
        return "; ".join(out) or "nothing beyond rounding (within 1e-4 voxels)"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Space) and self.shape == other.shape and self.crs == other.crs
                and np.array_equal(self.affine, other.affine))

    def __hash__(self) -> int:
        return hash((self.shape, self.crs, self.affine.tobytes()))

    def world_axes(self) -> tuple[int, ...]:
        """The world axis each array axis runs closest to (a permutation): the largest ``|direction|``
        entry first, then the largest of the rest, so an axis-permuting affine (LSA, PIR, a raster's
        row axis along -y) gives its permutation exactly and an oblique one its nearest axes."""
        weight = np.abs(self.direction)                       # (world, array)
        out = [-1] * self.ndim
        for _ in range(self.ndim):
            world, array = np.unravel_index(int(np.argmax(weight)), weight.shape)
            out[int(array)] = int(world)
            weight[world, :] = -1.0
            weight[:, array] = -1.0
        return tuple(out)

    def array_axis(self, world_axis: int) -> int:
        """The array axis that runs closest to world axis ``world_axis`` (0 x, 1 y, 2 z: R, A, S for scans)."""
        return self.world_axes().index(int(world_axis))

    def describe(self) -> str:
        return (f"shape {self.shape}, spacing {tuple(np.round(self.spacing, 6).tolist())}"
                + (f", crs {crs_name(self.crs)}" if self.crs else ""))


def check_same_world(space: Space, what: str, other: Space, other_what: str, *, equivalent_crs: bool = True) -> None:
    """``SpaceMismatchError`` unless ``other`` can be a grid of the same sample as ``space``: as many
    axes, the same CRS (a PROJ-equivalent one counts unless ``equivalent_crs`` is False: then the
    message says how to accept it), and overlapping world extents."""
    from ..errors import SpaceMismatchError
    if other.ndim != space.ndim:
        raise SpaceMismatchError(f"{other_what} is {other.ndim}D and {what} is {space.ndim}D: the grids of one "
                                 "sample have the same number of axes")
    if other.crs != space.crs:
        same = crs_equal(other.crs, space.crs)
        if not (same and equivalent_crs):
            hint = "the CRSs are equivalent by PROJ: pass equivalent_crs=True to accept" if same else "reproject first"
            raise SpaceMismatchError(f"{other_what} is in another CRS than {what}: {crs_name(other.crs)} vs "
                                     f"{crs_name(space.crs)}; the grids of one sample share one CRS ({hint})")
    a, b = space.world_box(), other.world_box()
    if np.any(a[1] <= b[0]) or np.any(b[1] <= a[0]):
        raise SpaceMismatchError(f"{other_what} and {what} do not overlap in the world: extent "
                                 f"{np.round(b, 3).tolist()} vs {np.round(a, 3).tolist()} (min, max per axis)")


def covering_grid(grid: Space, box: Space, forward: np.ndarray | None = None, *, keep: bool = False,
                  fixed: bool = False, own: bool = False) -> Space:
    """The voxels of ``grid``'s lattice, moved by the forward world -> world matrix ``forward``, that
    overlap ``box``'s world extent (with ``keep``, also ``grid``'s own moved extent; with ``own``,
    only that): a crop, pad, flip or quarter turn of ``box`` as it falls on another grid of the
    sample. Axes parallel to ``box``'s are put in ``box``'s order and sense, so a crop stays a copy
    and a flip or quarter turn a permutation."""
    n = grid.ndim
    moved = (np.eye(n + 1) if forward is None else np.asarray(forward, dtype=np.float64)) @ grid.affine
    direction = moved[:n, :n] / np.linalg.norm(moved[:n, :n], axis=0)
    cosines = direction.T @ box.direction                    # (moved axis, box axis)
    perm = np.round(cosines)
    signed = np.allclose(cosines, perm, atol=1e-6) and np.all(np.abs(perm).sum(0) == 1) and \
        np.all(np.abs(perm).sum(1) == 1)
    frame = moved.copy()
    if signed:                                               # new axis j runs along the box's axis j
        frame[:n, :n] = moved[:n, :n] @ perm
    corners = [] if own else [box.world_box_corners()]
    if keep or own:
        corners.append(apply_affine(moved, _extent_corners(grid.shape)))
    index = apply_affine(np.linalg.inv(frame), np.concatenate(corners))
    lo = np.floor(index.min(0) - 0.5 + 1e-6).astype(int) + 1
    hi = np.ceil(index.max(0) + 0.5 - 1e-6).astype(int) - 1
    shape = np.maximum(hi - lo + 1, 1)
    if fixed and not keep:      # as many voxels as a box of this size covers at worst, wherever it lies,
        extent = index.max(0) - index.min(0)       # so that crops of one size stack across a batch
        shape = np.ceil(extent - 1e-6).astype(int) + 1
    start = np.eye(n + 1)
    start[:n, n] = lo
    return Space(tuple(shape.tolist()), frame @ start, grid.crs)


def _extent_corners(shape: Sequence[int]) -> np.ndarray:
    return np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in shape], indexing="ij")).reshape(len(shape), -1).T
