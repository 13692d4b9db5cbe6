"""Kernels: index/world math (grid), matrices (affine), control-point fields (elastic) and the one
resampler (resample: the entry point; exact, warp_cpu and warp_torch: its paths; spec: what they
share). The map model they read is ``core.maps``."""

import contextlib as _contextlib
import getpass as _getpass
import hashlib as _hashlib
import os as _os
import sys as _sys
import tempfile as _tempfile
import threading as _threading
from collections.abc import Iterator, Mapping
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


def user_cache_root(environ: Mapping[str, str] = _os.environ) -> _Path:
    """domainaug's folder in the user cache: ``$XDG_CACHE_HOME/domainaug`` (default
    ``~/.cache/domainaug``), ``~/Library/Caches/domainaug`` on macOS, ``%LOCALAPPDATA%\\domainaug``
    on Windows."""
    home = _Path(environ.get("HOME") or _Path.home())
    if _sys.platform == "win32":
        base = _Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif _sys.platform == "darwin":
        base = home / "Library" / "Caches"
    else:
        xdg = environ.get("XDG_CACHE_HOME", "")
        base = _Path(xdg) if _os.path.isabs(xdg) else home / ".cache"      # the XDG spec ignores a relative one
    return base / "domainaug"


_KERNELS_DIR = _Path(__file__).resolve().parent                # simd.py's folder: kernel_cache_dir's default


def kernel_cache_dir(folder: _Path = _KERNELS_DIR,
                     environ: Mapping[str, str] = _os.environ) -> _Path:
    """Where numba caches domainaug's compiled kernels: a folder named after ``folder/simd.py``'s
    hash, under ``$NUMBA_CACHE_DIR`` when it is set, else under ``user_cache_root()``.

    numba keys a cached kernel on the kernel's own file only, so kernels that use simd.py's
    intrinsics would keep the old code after an edit of it; a new hash is a new, empty folder."""
    digest = _hashlib.sha256((folder / "simd.py").read_bytes()).hexdigest()[:16]
    if environ.get("NUMBA_CACHE_DIR"):
        return _Path(environ["NUMBA_CACHE_DIR"]) / f"domainaug-{digest}"
    return user_cache_root(environ) / f"numba-{digest}"


@_contextlib.contextmanager
def _numba_caching_into(folder: _Path) -> Iterator[None]:
    saved = _numba.config.CACHE_DIR  # type: ignore[attr-defined]  # (numba's stubs lack it)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:                 # no writable user cache: the temporary folder, never the package
        folder = _Path(_tempfile.gettempdir()) / f"domainaug-{_user_name()}" / folder.name
    _numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        _numba.config.CACHE_DIR = saved  # type: ignore[attr-defined]


def _user_name() -> str:
    try:
        return _getpass.getuser()
    except (KeyError, OSError):
        return "user"


# The kernels are compiled into the user cache, not the installed package (numba's default is the
# source's __pycache__). numba reads CACHE_DIR when a kernel is defined, so it is set only while these
# modules define theirs: the user's own numba functions keep numba's own setting.
with _numba_caching_into(kernel_cache_dir()):
    from . import blend, exact, grid, pointwise, warp_cpu  # noqa: E402,F401 - the modules with cached kernels
