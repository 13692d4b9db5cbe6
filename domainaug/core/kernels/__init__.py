"""Kernels: index/world math (grid), matrices (affine), control-point fields (elastic) and the one
resampler (resample: the entry point; exact, warp_cpu and warp_torch: its paths; spec: what they
share). The map model they read is ``core.maps``."""

import hashlib as _hashlib
import os as _os
import threading as _threading
from pathlib import Path as _Path

import numba as _numba

# Fork safety: PyTorch DataLoader workers are forked on Linux, and numba's GNU-OpenMP threading layer
# aborts a process forked after it ran. "workqueue" is fork-safe but aborts when two threads launch
# parallel kernels at once, so every launch takes ``PARALLEL_LOCK`` (each kernel already uses every
# core). The lock is re-created in forked children, which must not inherit it held. A layer the user
# chose (NUMBA_THREADING_LAYER) is kept.
if "NUMBA_THREADING_LAYER" not in _os.environ:
    _numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]  # numba.config sets it from the env

PARALLEL_LOCK = _threading.Lock()


def _reset_lock() -> None:
    global PARALLEL_LOCK
    PARALLEL_LOCK = _threading.Lock()


_os.register_at_fork(after_in_child=_reset_lock)


def parallel_lock() -> _threading.Lock:
    """The lock to hold while a parallel numba kernel runs (the current one after a fork)."""
    return PARALLEL_LOCK


def drop_stale_caches(folder: _Path) -> bool:
    """Delete numba's cached kernels in ``folder/__pycache__`` when ``folder/simd.py`` changed since
    they were compiled; True if it did. numba keys a cached kernel on the kernel's own file only, so
    kernels that use simd.py's intrinsics would keep the old code after an edit or a checkout of it.
    A hash of simd.py kept next to the cache files tells. (A fresh install has no cache to drop.)"""
    cache = folder / "__pycache__"
    try:
        digest = _hashlib.sha256((folder / "simd.py").read_bytes()).hexdigest()
        stamp = cache / "simd.sha256"
        if stamp.is_file() and stamp.read_text() == digest:
            return False
        for stale in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            stale.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(digest)
        return True
    except OSError:             # a read-only install: numba caches elsewhere, keyed on fresh files
        return False


drop_stale_caches(_Path(__file__).resolve().parent)
