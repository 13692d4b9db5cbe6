"""What every reader and writer shares: the load size limit, the one place values are fitted to
an on-disk type, and how what a reader returned becomes layers (one file or many).

- **Size limit.** A reader checks the size a file *declares* before it allocates anything: the
  in-memory size (at least 4 bytes a voxel, as intensity layers are float32 in memory) must stay
  under ``DOMAINAUG_MAX_LOAD_GB`` (environment variable, GiB; default ``DEFAULT_MAX_LOAD_GB``).
- **Values to disk.** ``to_disk`` is applied once, at save: integer types get values rounded to the
  nearest integer (ties to even) and clipped to the type's range, after removing the file's
  scaling (``raw = (value - inter) / slope``); float types get the values as they are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.sample import Layer, Role, as_label, intensity_dtype
from ..core.space import Space
from ..errors import DomainaugError

__all__ = ["MAX_LOAD_ENV", "DEFAULT_MAX_LOAD_GB", "max_load_bytes", "check_load_size", "to_disk",
           "smallest_integer_dtype", "fits", "intensity_tensor", "file_validity", "file_fill", "label_layer",
           "grid_error"]

MAX_LOAD_ENV = "DOMAINAUG_MAX_LOAD_GB"
DEFAULT_MAX_LOAD_GB = 16.0


def max_load_bytes() -> int:
    """The largest in-memory size ``load`` accepts, in bytes (``DOMAINAUG_MAX_LOAD_GB`` GiB)."""
    text = os.environ.get(MAX_LOAD_ENV)
    try:
        gb = float(text) if text else DEFAULT_MAX_LOAD_GB
    except ValueError as exc:
        raise DomainaugError(f"{MAX_LOAD_ENV}={text!r} is invalid: expected a size in GiB") from exc
    if not math.isfinite(gb) or gb <= 0:
        raise DomainaugError(f"{MAX_LOAD_ENV}={text!r} is invalid: expected a positive size in GiB")
    return int(gb * 2**30)


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**27 else f"{n / 2**20:.3g} MiB" if n >= 2**17 else f"{int(n)} bytes"


def check_load_size(path: Any, shape: Sequence[int], itemsize: int) -> None:
    """A ``DomainaugError`` naming ``path``, the declared shape and sizes when the data would take
    more memory than ``max_load_bytes()`` (float32 in memory: at least 4 bytes an element)."""
    count = math.prod(int(s) for s in shape)
    need = count * max(int(itemsize), 4)
    limit = max_load_bytes()
    if need > limit:
        raise DomainaugError(f"{path}: declares {'x'.join(str(int(s)) for s in shape)} elements of {itemsize} "
                             f"bytes ({_gib(count * itemsize)} on disk, {_gib(need)} in memory), over the load "
                             f"limit of {_gib(limit)} (set {MAX_LOAD_ENV} to raise it)")


def fits(values: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every value is one ``dtype`` holds exactly (integers in range; any value for floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return True
    if values.size == 0:
        return True
    if values.dtype.kind == "f" and not bool(np.all(values == np.round(values))):
        return False
    info = np.iinfo(dtype)
    return info.min <= values.min() and values.max() <= info.max


def smallest_integer_dtype(values: np.ndarray, candidates: Sequence[Any]) -> np.dtype:
    """The first of ``candidates`` that holds every (integer) value."""
    for candidate in candidates:
        if fits(values, np.dtype(candidate)):
            return np.dtype(candidate)
    lo, hi = (values.min(), values.max()) if values.size else (0, 0)
    raise DomainaugError(f"integer values {lo}..{hi} fit none of {[np.dtype(c).name for c in candidates]}")


def to_disk(values: np.ndarray, dtype: Any, slope: float | None = None, inter: float | None = None) -> np.ndarray:
    """``values`` as stored in a file of ``dtype`` with scaling ``value = raw * slope + inter``:
    for an integer ``dtype`` the raw values are rounded (ties to even) and clipped to its range,
    once, here. NaN becomes the range's lower end only if it reaches here (callers replace invalid
    voxels first)."""
    dtype = np.dtype(dtype)
    scaled = slope is not None or inter is not None
    if dtype.kind in "iu":
        if values.dtype.kind in "iub" and not scaled:
            info = np.iinfo(dtype)
            return np.clip(values, info.min, info.max).astype(dtype) if values.size else values.astype(dtype)
        raw = values.astype(np.float64)
        if scaled:
            raw = (raw - (inter or 0.0)) / (slope if slope else 1.0)
        info = np.iinfo(dtype)
        raw = np.clip(np.round(np.nan_to_num(raw, nan=info.min)), info.min, info.max)
        return raw.astype(dtype)
    if scaled:
        return ((values.astype(np.float64) - (inter or 0.0)) / (slope if slope else 1.0)).astype(dtype)
    return values.astype(dtype, copy=False)


# --- what a reader returned, as layers (``load`` of one file and of many) ---------------------------
def intensity_tensor(raw: np.ndarray, scale: tuple[float, float] | None,
                     dtype: str | torch.dtype | None) -> torch.Tensor:
    """Raw file values as a float tensor (float32 unless the file is float64 or ``dtype`` says),
    scaled once."""
    target = intensity_dtype(np.dtype(raw.dtype), dtype)
    np_target = {torch.float32: np.float32, torch.float64: np.float64}.get(target, np.float32)
    array = np.asarray(raw).astype(np_target, copy=not (raw.flags.writeable and raw.dtype == np_target
                                                         and scale is None))
    t = torch.from_numpy(np.ascontiguousarray(array))
    if scale is not None:
        t.mul_(scale[0]).add_(scale[1])
    return t if t.dtype == target else t.to(target)


def file_validity(raw: dict[str, Any], data: torch.Tensor, valid: torch.Tensor | None,
                  meta: dict[str, Any]) -> torch.Tensor | None:
    """``valid`` AND the file's own validity (nodata, masks) AND finite in every channel of ``data``
    (``None``: all valid); a file with non-finite values gets ``meta["non_finite"] = True``."""
    if raw.get("valid") is not None:
        own = torch.from_numpy(np.asarray(raw["valid"], dtype=bool))
        valid = own if valid is None else valid & own
    if not bool(torch.isfinite(data).all()):
        finite = torch.isfinite(data).all(0, keepdim=True)
        valid = finite if valid is None else valid & finite
        meta["non_finite"] = True
    return valid


def file_fill(fills: Sequence[float | None], data: torch.Tensor) -> float | str:
    """The default fill of a layer read from files with these nodata ``fills``: their value when they
    share one finite value that ``data``'s dtype holds, else ``"minimum"``."""
    shared = set(fills)
    fill = shared.pop() if len(shared) == 1 else None
    if fill is None or not np.isfinite(fill) or abs(fill) > torch.finfo(data.dtype).max:
        return "minimum"
    return fill


def label_layer(raw: dict[str, Any], path: Any, name: str) -> tuple[Layer, dict[str, Any]]:
    """A LABEL layer and its file metadata from what a reader returned: scaling applied, unlabelled
    (nodata) pixels made 0 (``meta["unlabelled"]`` says whether 0 was also a real class)."""
    values = raw["data"]
    if raw.get("scale") is not None:
        values = values * raw["scale"][0] + raw["scale"][1]
    meta = {**raw["meta"], "path": str(path)}
    if raw.get("valid") is not None:
        lab_valid = np.broadcast_to(np.asarray(raw["valid"], dtype=bool), values.shape)
        meta["unlabelled"] = "zero" if bool((values[lab_valid] == 0).any()) else "nodata"
        values = np.where(lab_valid, values, 0)
    return Layer(as_label(f"{name} ({path})", values), Role.LABEL, 0), meta


def grid_error(space: Space, other: Space) -> str:
    """What differs between two grids, for a mismatch error (``Space.differences``, or the largest
    voxel-centre drift when the difference is below its rounding)."""
    what = space.differences(other)
    if what.startswith("nothing"):                        # a drift below differences()' rounding
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in space.shape], indexing="ij")).reshape(space.ndim, -1).T
        moved = np.abs(space.world_to_index(other.index_to_world(corners)) - corners).max()
        what = f"voxel centres up to {moved:.3g} voxels apart"
    return what
