"""What ``load`` and ``tiles`` accept besides a local path: remote and GDAL virtual files, and image
objects already in memory.

- **Remote and virtual files.** A string that starts with a GDAL virtual file system prefix
  (``/vsicurl/``, ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``, ``/vsimem/``, ``/vsizip/``, ...) or with a URL
  scheme that GDAL reads (``http://``, ``https://``, ``s3://``, ``gs://``, ``az://``, ``ftp://``) goes
  to rasterio unchanged: no ``Path`` (which would turn ``https://`` into ``https:/``) and no local
  existence check. GDAL reads only the bytes a window needs from a Cloud-Optimised GeoTIFF (HTTP
  range requests), so ``tiles`` never downloads a remote raster whole. Only GDAL formats are read
  this way (GeoTIFF/COG, JPEG 2000); NIfTI and ITK files must be local.
- **Objects.** A ``nibabel`` NIfTI image, a ``SimpleITK.Image`` and an open ``rasterio`` dataset
  are read as their files are (same Space, values, validity and per-layer metadata), without
  writing them anywhere; an open dataset is left open. They are recognised by their type's module,
  so that checking a path never imports SimpleITK.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["is_remote", "as_source", "object_kind", "name_of", "REMOTE_PREFIXES"]

#: URL schemes GDAL reads through its virtual file systems (rasterio maps them to ``/vsi*/``).
REMOTE_PREFIXES = ("http://", "https://", "s3://", "gs://", "az://", "ftp://", "oss://")
_VSI = re.compile(r"^/vsi[a-z0-9_]+/", re.IGNORECASE)
#: A URL that went through ``pathlib.Path``: ``https://host`` became ``https:/host``.
_MANGLED = re.compile(r"^(https?|s3|gs|az|ftp|oss):/[^/]", re.IGNORECASE)


def is_remote(path: Any) -> bool:
    """Whether ``path`` is a GDAL virtual path or a URL (a string, given to rasterio as it is)."""
    if not isinstance(path, str):
        return False
    return bool(_VSI.match(path)) or path.lower().startswith(REMOTE_PREFIXES)


def mangled_url(path: Any) -> bool:
    """Whether ``path`` looks like a URL that ``pathlib.Path`` collapsed (``https:/host/...``)."""
    return isinstance(path, (str, os.PathLike)) and bool(_MANGLED.match(os.fspath(path)))


def as_source(path: str | os.PathLike) -> str | Path:
    """``path`` as a reader takes it: remote and virtual paths unchanged, local ones as a ``Path``."""
    return path if isinstance(path, str) and is_remote(path) else Path(path)


def object_kind(obj: Any) -> str | None:
    """``"nifti"``, ``"itk"`` or ``"geotiff"`` for a nibabel image, a SimpleITK image or an open
    rasterio dataset; ``None`` for anything else (paths included)."""
    if isinstance(obj, (str, os.PathLike)):
        return None
    module = type(obj).__module__ or ""
    if module.startswith("nibabel") and hasattr(obj, "dataobj") and hasattr(obj, "header"):
        return "nifti"
    if module.startswith("SimpleITK") and type(obj).__name__ == "Image":
        return "itk"
    if module.startswith("rasterio") and all(hasattr(obj, a) for a in ("read", "transform", "crs", "count")):
        return "geotiff"
    return None


def name_of(obj: Any) -> str:
    """What names ``obj`` in ``meta["path"]`` and in messages: its file when it has one (nibabel's
    ``get_filename()``, a rasterio dataset's ``name``), else ``<TypeName>``; a path as it is."""
    if object_kind(obj) is None:
        return str(obj)
    getter = getattr(obj, "get_filename", None)
    filename = getter() if callable(getter) else getattr(obj, "name", None) if object_kind(obj) == "geotiff" else None
    return str(filename) if filename else f"<{type(obj).__module__.split('.')[0]}.{type(obj).__name__}>"
