"""Output buffers for large results, backed by transparent huge pages where the OS allows it.

A fresh large tensor costs more in page faults (one per 4 KiB page) than in the copy that fills it.
Linux maps 2 MiB pages on first touch in a region advised with ``MADV_HUGEPAGE``
(``/sys/kernel/mm/transparent_hugepage/enabled`` = ``madvise`` or ``always``), which cuts the
faults 512-fold. Elsewhere (other OSes, THP ``never``) this is a plain ``torch.empty``;
``DOMAINAUG_HUGEPAGES=0`` turns the advice off.

Fresh pages still cost: the kernel zeroes every page it maps and, once memory is fragmented, stalls
to compact it into huge pages (timings: docs/performance.md). So large buffers are recycled, as
PyTorch's CUDA allocator does: the pool keeps a reference to every large buffer it hands out and
reuses one once nothing else refers to its storage (the storage's use count and its Python object's
refcount are back to the pool's own). A buffer whose storage moved (``share_memory_``, ``resize_``)
is dropped, never reused. Buffers tracked, in use or free: at most ``DOMAINAUG_BUFFER_POOL_MB``
(default 512; 0 turns recycling off); beyond that, buffers are plain ones.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
import threading

import numpy as np
import numpy.typing as npt
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
    except (ValueError, OverflowError):
        return 512 << 20


class _Entry:
    """A pooled buffer and what refers to it when nobody else does."""

    __slots__ = ("raw", "ptr", "nbytes", "storage", "uses", "refs")

    def __init__(self, raw: torch.Tensor) -> None:
        self.raw, self.ptr = raw, raw.data_ptr()
        # the storage's Python object is one per storage: whoever holds it (``untyped_storage()``, a
        # TypedStorage) raises its refcount, not the storage's use count
        self.storage = raw.untyped_storage()
        self.nbytes = self.storage.nbytes()
        self.uses = torch._C._storage_Use_Count(self.storage._cdata)
        self.refs = sys.getrefcount(self.storage)

    def free(self) -> bool:
        return torch._C._storage_Use_Count(self.storage._cdata) == self.uses and \
            sys.getrefcount(self.storage) == self.refs

    def moved(self) -> bool:
        """The storage was moved to shared memory or resized since: never hand it out again."""
        return self.raw.data_ptr() != self.ptr or self.storage.nbytes() != self.nbytes or self.storage.is_shared()


class _Pool:
    """Large buffers handed out, most recently used last; one is free when only the pool refers to
    it. Callers hold ``lock`` from ``take`` or ``add`` until the buffer is referenced elsewhere. The
    buffers tracked (in use or free) total at most ``limit`` bytes, so the memory the
    pool keeps beyond what callers hold is bounded at all times; larger demand gets plain buffers."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: list[_Entry] = []
        self.lock = threading.Lock()

    def free_bytes(self) -> int:
        return sum(e.nbytes for e in self.entries if e.free())

    def take(self, nbytes: int) -> torch.Tensor | None:
        """A free buffer of ``nbytes`` to ``1.25 * nbytes`` (+1 page), or None."""
        self.entries = [e for e in self.entries if not e.moved()]
        for i, entry in enumerate(self.entries):
            if nbytes <= entry.nbytes <= nbytes + nbytes // 4 + HUGE_PAGE and entry.free():
                self.entries.append(self.entries.pop(i))
                return entry.raw
        return None

    def add(self, raw: torch.Tensor) -> None:
        """Track ``raw`` if the buffers tracked stay within the limit (dropping free ones first)."""
        need = raw.numel()
        while sum(e.nbytes for e in self.entries) + need > self.limit:
            free = next((i for i, e in enumerate(self.entries) if e.free()), None)
            if free is None:
                return                                    # all in use: ``raw`` stays a plain buffer
            del self.entries[free]                        # the least recently used free buffer
        self.entries.append(_Entry(raw))


_POOL = _Pool(_pool_limit())


def _after_fork() -> None:                # a thread may have held the lock at the fork
    _POOL.lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


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
        if raw is None:
            raw = torch.empty(nbytes + HUGE_PAGE, dtype=torch.uint8)
            if _POOL.limit:
                _POOL.add(raw)
        start = (raw.data_ptr() + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1)
        out = raw[start - raw.data_ptr():start - raw.data_ptr() + nbytes].view(dtype).view(shape)
    if fresh and _MADVISE is not None:    # advice only: failure is harmless
        _MADVISE(start, (nbytes // HUGE_PAGE + 1) * HUGE_PAGE, _MADV_HUGEPAGE)
    return out


def empty_like(tensor: torch.Tensor) -> torch.Tensor:
    """``empty`` with the shape and dtype of ``tensor``, on its device (buffers are pooled on the CPU)."""
    if tensor.device.type != "cpu":
        return torch.empty(tuple(tensor.shape), dtype=tensor.dtype, device=tensor.device)
    return empty(tuple(tensor.shape), tensor.dtype)


def empty_like_numpy(shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """``empty`` for numpy callers (the array shares the tensor's memory and keeps it alive)."""
    return empty(shape, torch.from_numpy(np.empty(0, dtype)).dtype).numpy()
