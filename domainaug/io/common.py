"""What every reader and writer shares: the load size limit and the one place values are fitted to
an on-disk type.

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
from typing import Any, Sequence

import numpy as np

from ..errors import DomainaugError

__all__ = ["MAX_LOAD_ENV", "DEFAULT_MAX_LOAD_GB", "max_load_bytes", "check_load_size", "to_disk",
           "smallest_integer_dtype", "fits"]

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
