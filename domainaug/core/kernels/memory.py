"""Output buffers for large results, backed by transparent huge pages where the OS allows it.

A fresh 48 MB tensor costs more in page faults than in the copy that fills it: 12 000 faults of
4 KiB each took ~15 ms here, while copying the data takes ~4 ms. Linux maps 2 MiB pages on first
touch in a region advised with ``MADV_HUGEPAGE`` (``/sys/kernel/mm/transparent_hugepage/enabled``
= ``madvise`` or ``always``), which cuts the faults 512-fold: a fresh 48 MB buffer filled in 4 ms
instead of 18 ms on this VM. Elsewhere (other OSes, THP ``never``) this is a plain ``torch.empty``;
``DOMAINAUG_HUGEPAGES=0`` turns the advice off.

Fresh pages still cost: the kernel zeroes every page it maps (~2 ms per 48 MB here) and, once memory
is fragmented, stalls to compact it into huge pages (single calls of 30-70 ms were measured on a
12x1024x1024 dihedral transform that otherwise takes 10 ms). So large buffers are recycled, as
PyTorch's CUDA allocator does: the pool keeps a reference to every large buffer it hands out and
reuses one once nothing else refers to its storage (the storage's use count is back to the pool's
own). A buffer whose storage moved (``share_memory_``, ``resize_``) is dropped, never reused. Free
buffers kept: at most ``DOMAINAUG_BUFFER_POOL_MB`` (default 512; 0 turns recycling off).
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading

import numpy as np
import torch

__all__ = ["empty", "empty_like", "empty_like_numpy", "HUGE_MIN_BYTES", "pool_bytes"]

HUGE_PAGE = 1 << 21
#: Below this, a buffer is a plain ``torch.empty`` (advice costs a syscall; small buffers are reused).
HUGE_MIN_BYTES = 8 << 20
_MADV_HUGEPAGE = 14


def _madvise():
    if not sys.platform.startswith("linux") or os.environ.get("DOMAINAUG_HUGEPAGES", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_MADVISE = _madvise()


def _pool_limit() -> int:
    try:
        return max(0, int(float(os.environ.get("DOMAINAUG_BUFFER_POOL_MB", "512")) * (1 << 20)))
    except ValueError:
        return 512 << 20


class _Pool:
    """Large buffers handed out, most recently used last; one is free when only the pool refers to
    it. Callers hold ``lock`` from ``take`` or ``add`` until the buffer is referenced elsewhere, then
    ``trim``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: list[tuple[torch.Tensor, int, int]] = []    # (raw bytes, data pointer, own use count)
        self.lock = threading.Lock()

    @staticmethod
    def _free(entry) -> bool:
        raw, ptr, own = entry
        return torch._C._storage_Use_Count(raw.untyped_storage()._cdata) == own

    def free_bytes(self) -> int:
        return sum(e[0].numel() for e in self.entries if self._free(e))

    def take(self, nbytes: int) -> torch.Tensor | None:
        """A free buffer of ``nbytes`` to ``1.25 * nbytes`` (+1 page), or None."""
        # a storage moved to shared memory or resized since: let it go
        self.entries = [e for e in self.entries if e[0].data_ptr() == e[1] and not e[0].untyped_storage().is_shared()]
        for i, entry in enumerate(self.entries):
            if nbytes <= entry[0].numel() <= nbytes + nbytes // 4 + HUGE_PAGE and self._free(entry):
                self.entries.append(self.entries.pop(i))
                return entry[0]
        return None

    def add(self, raw: torch.Tensor) -> None:
        self.entries.append((raw, raw.data_ptr(), torch._C._storage_Use_Count(raw.untyped_storage()._cdata)))

    def trim(self) -> None:
        while self.free_bytes() > self.limit:
            del self.entries[next(i for i, e in enumerate(self.entries) if self._free(e))]   # least recently used
        del self.entries[:-64]                                # (buffers still in use: only forgotten)


_POOL = _Pool(_pool_limit())


def pool_bytes() -> int:
    """Bytes of free buffers the pool holds now."""
    with _POOL.lock:
        return _POOL.free_bytes()


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor; large ones are recycled buffers, or new ones advised
    onto huge pages before any page is touched (the tensor is a view into a buffer up to 2 MiB
    larger, aligned to 2 MiB)."""
    size = math.prod(shape)
    item = torch.empty((), dtype=dtype).element_size()
    nbytes = size * item
    if nbytes < HUGE_MIN_BYTES:
        return torch.empty(shape, dtype=dtype)
    with _POOL.lock:
        raw = _POOL.take(nbytes + HUGE_PAGE) if _POOL.limit else None
        fresh = raw is None
        if fresh:
            raw = torch.empty(nbytes + HUGE_PAGE, dtype=torch.uint8)
            if _POOL.limit:
                _POOL.add(raw)
        start = (raw.data_ptr() + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        out = raw[start - raw.data_ptr():start - raw.data_ptr() + nbytes].view(dtype).view(shape)
        _POOL.trim()                                  # (after ``out`` exists: the buffer taken is not free)
    if fresh and _MADVISE is not None:    # advice only: failure is harmless
        _MADVISE(start, (nbytes // HUGE_PAGE + 1) * HUGE_PAGE, _MADV_HUGEPAGE)
    return out


def empty_like(tensor: torch.Tensor) -> torch.Tensor:
    """``empty`` with the shape and dtype of ``tensor``, on its device (buffers are pooled on the CPU)."""
    if tensor.device.type != "cpu":
        return torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device=tensor.device)
    return empty(tuple(tensor.shape), tensor.dtype)


def empty_like_numpy(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``empty`` for numpy callers (the array shares the tensor's memory and keeps it alive)."""
    return empty(shape, torch.from_numpy(np.empty(0, dtype)).dtype).numpy()
