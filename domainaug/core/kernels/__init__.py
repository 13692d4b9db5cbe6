"""Kernels: index/world math (grid), matrices (affine), control-point fields (elastic), map
composition (fuse) and the one resampler (resample)."""

import os as _os
import threading as _threading

import numba as _numba

# Fork safety: PyTorch DataLoader workers are forked on Linux, and numba's GNU-OpenMP threading layer
# aborts a process forked after it ran. "workqueue" is fork-safe but aborts when two threads launch
# parallel kernels at once, so every launch takes ``PARALLEL_LOCK`` (each kernel already uses every
# core). The lock is re-created in forked children, which must not inherit it held. A layer the user
# chose (NUMBA_THREADING_LAYER) is kept.
if "NUMBA_THREADING_LAYER" not in _os.environ:
    _numba.config.THREADING_LAYER = "workqueue"

PARALLEL_LOCK = _threading.Lock()


def _reset_lock() -> None:
    global PARALLEL_LOCK
    PARALLEL_LOCK = _threading.Lock()


_os.register_at_fork(after_in_child=_reset_lock)


def parallel_lock() -> _threading.Lock:
    """The lock to hold while a parallel numba kernel runs (the current one after a fork)."""
    return PARALLEL_LOCK
