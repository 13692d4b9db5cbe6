"""NIfTI through nibabel. The NIfTI affine already maps voxel centres in (i, j, k) order to RAS+ mm,
which is domainaug's convention; a 4th axis becomes channels.

Reading checks the size the header declares before allocating: against the load limit
(``common.check_load_size``) and against the payload: an uncompressed file must hold it; a
``.gz`` cannot hold more than deflate's maximum ratio (1032:1) of its size, and its gzip trailer
(the payload size modulo 2**32) must not be smaller. The raw (unscaled) values are returned with
the file's scaling, so that intensities are scaled once, in float32.

Writing keeps the source header (``meta["header"]``): qform/sform codes and matrices (moved with
the grid when a crop or resampling changed it), ``scl_slope``/``scl_inter``, units, intent,
description. Codes 0 stay 0 unless the grid moved, then the sform is written with code 2
(aligned), the weakest claim that keeps the new geometry. Invalid voxels are written as NaN when
the on-disk type is float and the source had non-finite voxels, else as the layer's fill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..core.space import Space
from ..errors import DomainaugError
from .common import check_load_size, fits, smallest_integer_dtype, to_disk

__all__ = ["read", "read_image", "write", "check_payload", "NIFTI_INTEGER_DTYPES", "DEFLATE_MAX_RATIO"]

#: Integer types tried, in order, for labels their source type cannot hold (NIfTI readers reject int64).
NIFTI_INTEGER_DTYPES = ("uint8", "int16", "int32")
#: Deflate's largest compression ratio: a ``.gz`` of N bytes holds at most about 1032 N bytes.
DEFLATE_MAX_RATIO = 1032


def _sizes(n: int) -> str:
    return f"{n} bytes" if n < 2**20 else f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def check_payload(path: Path, header: Any) -> None:
    """A ``DomainaugError`` naming the file and the sizes when the file cannot hold the data its
    header declares (checked without decompressing)."""
    shape = header.get_data_shape()
    need = int(header.get_data_offset()) + math.prod(shape) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    dims = "x".join(map(str, shape))
    if not str(path).lower().endswith(".gz"):
        if size < need:
            raise DomainaugError(f"{path}: the header declares {dims} {header.get_data_dtype()} voxels "
                                 f"({_sizes(need)} with the header), the file has {_sizes(size)} (truncated?)")
        return
    if need > DEFLATE_MAX_RATIO * size + 1024:
        raise DomainaugError(f"{path}: the header declares {dims} {header.get_data_dtype()} voxels "
                             f"({_sizes(need)}), more than a {_sizes(size)} gzip file can hold (truncated, or "
                             "a header of another file?)")
    with open(path, "rb") as f:
        f.seek(-4, 2)
        isize = int.from_bytes(f.read(4), "little")
    if 0 < isize < need < 2**32:                 # ISIZE 0: a trailing empty member (bgzip); skip the hint
        raise DomainaugError(f"{path}: the header declares {dims} {header.get_data_dtype()} voxels "
                             f"({_sizes(need)} with the header), the gzip trailer says {_sizes(isize)} (truncated?)")


def read(path: Path) -> dict[str, Any]:
    img = nib.load(str(path))                                   # reads the header only
    if not isinstance(img, nib.Nifti1Image):                    # (Nifti2Image is one too)
        raise DomainaugError(f"{path}: nibabel read a {type(img).__name__}, not a NIfTI image")
    return read_image(img, path)


def read_image(img: Any, path: Any) -> dict[str, Any]:
    """What ``read`` returns, from a nibabel NIfTI image (loaded from ``path``, or built in memory:
    then ``path`` only names it). A file-backed image's payload is checked against its file."""
    if not isinstance(img, nib.Nifti1Image):
        raise DomainaugError(f"{path}: a {type(img).__name__}, not a NIfTI image (nibabel.Nifti1Image/Nifti2Image)")
    header = img.header
    shape = tuple(int(s) for s in img.shape)
    dtype = header.get_data_dtype()
    check_load_size(path, shape, dtype.itemsize)
    filename = img.get_filename()
    if nib.is_proxy(img.dataobj) and filename and Path(filename).is_file():
        check_payload(Path(filename), header)
    proxy = img.dataobj
    raw = np.asanyarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asanyarray(proxy)
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    scaled = not (slope == 1.0 and inter == 0.0)               # nibabel keeps the scaling on the array proxy
    data = raw
    if data.ndim == 5 and data.shape[3] == 1:                     # (X, Y, Z, 1, C): vector images
        data = data[:, :, :, 0]
    if data.ndim not in (2, 3, 4):
        raise ValueError(f"{data.ndim}D NIfTI arrays are not supported (expected 2D, 3D, or 4D with channels last)")
    affine = np.asarray(img.affine, dtype=np.float64)
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    try:
        if data.ndim == 2 and np.allclose(affine[2, :2], 0) and np.allclose(affine[:2, 2], 0):
            # an axis-aligned 2D image: a 2D space in the first two world axes (z kept in meta)
            space = Space(data.shape, affine[np.ix_([0, 1, 3], [0, 1, 3])])
            channels_first = np.ascontiguousarray(data[None])
        else:
            if data.ndim == 2:                                      # an oblique slice stays a 3D plane
                data = data[:, :, None]
            spatial = data[..., None] if data.ndim == 3 else data
            channels_first = np.ascontiguousarray(np.moveaxis(spatial, -1, 0))
            space = Space(channels_first.shape[1:], affine)
    except DomainaugError as exc:
        raise DomainaugError(f"{path}: the NIfTI affine (qform_code {int(qcode or 0)}, sform_code {int(scode or 0)}) "
                             f"is not a usable index -> world map: {exc}") from exc
    meta = {"format": "nifti", "version": 2 if isinstance(header, nib.Nifti2Header) else 1,
            "header": bytes(header.binaryblock), "on_disk_dtype": str(dtype),
            "qform_code": int(qcode or 0), "sform_code": int(scode or 0),
            "scl_slope": slope if scaled else None, "scl_inter": inter if scaled else None,
            "xyzt_units": list(header.get_xyzt_units()), "intent": list(header.get_intent()),
            "affine": affine.tolist(), "z_offset": float(affine[2, 3])}
    return {"format": "nifti", "data": channels_first, "space": space, "fill": None, "meta": meta,
            "scale": (slope, inter) if scaled else None}


def _header_of(src: dict[str, Any]) -> Any:
    cls = nib.Nifti2Header if src.get("version") == 2 else nib.Nifti1Header
    return cls(binaryblock=src["header"], check=False).copy()


def _disk_dtype(array: np.ndarray, role: str, src: dict[str, Any], dtype: Any) -> np.dtype:
    if role == "valid":
        return np.dtype("uint8")
    disk = np.dtype(dtype) if dtype is not None else (np.dtype(src["on_disk_dtype"]) if src.get("on_disk_dtype")
                                                      else None)
    if role == "label":
        if disk is not None and (disk.kind == "f" or fits(array, disk)) and disk != np.int64:
            return disk
        return smallest_integer_dtype(array, NIFTI_INTEGER_DTYPES)
    disk = disk or array.dtype
    return np.dtype("float32") if disk.kind == "f" and disk.itemsize < 4 else disk


def write(path: Path, data: np.ndarray, space: Space, *, meta: dict[str, Any], role: str, fill: float,
          valid: np.ndarray | None, channels: Sequence[str] | None, dtype: Any = None) -> None:
    src = meta if meta.get("format") == "nifti" and meta.get("header") else {}
    affine = space.affine
    if space.ndim == 2:                                             # a 2D image in the z = z_offset plane
        affine = np.eye(4)
        affine[np.ix_([0, 1, 3], [0, 1, 3])] = space.affine
        affine[2, 3] = meta.get("z_offset", 0.0)
    disk = _disk_dtype(data, role, src, dtype)
    same_type = src.get("on_disk_dtype") is not None and np.dtype(src["on_disk_dtype"]) == disk
    slope, inter = (src.get("scl_slope"), src.get("scl_inter")) if same_type and role == "intensity" else (None, None)
    values = data.astype(np.uint8) if role == "valid" else data
    if role == "intensity" and valid is not None and not valid.all():
        invalid = ~np.broadcast_to(valid, data.shape)
        nan = disk.kind == "f" and src.get("non_finite", False)
        values = np.where(invalid, np.nan if nan else data.dtype.type(fill), data)
    raw = to_disk(values, disk, slope, inter)
    array = raw[0] if raw.shape[0] == 1 else np.moveaxis(raw, 0, -1)
    if not src:
        img = nib.Nifti1Image(array, affine, dtype=disk)
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
        nib.save(img, str(path))
        return
    header = _header_of(src)
    header.set_data_dtype(disk)
    cls = nib.Nifti2Image if src.get("version") == 2 else nib.Nifti1Image
    img = cls(array, None, header=header)
    header = img.header
    if slope is not None:
        header["scl_slope"], header["scl_inter"] = slope, inter      # the source's scaling, kept
    else:
        header["scl_slope"], header["scl_inter"] = np.nan, np.nan
    loaded = np.asarray(src["affine"], dtype=np.float64)
    index_map = np.linalg.solve(loaded, affine)                     # new index -> source index
    if not np.allclose(index_map, np.eye(4), atol=1e-6):            # the grid moved: move both forms with it
        qcode, scode = src.get("qform_code", 0), src.get("sform_code", 0)
        if qcode or scode:
            header.set_qform(header.get_qform() @ index_map, code=qcode)
            header.set_sform(header.get_sform() @ index_map, code=scode)
        else:
            header.set_qform(affine, code=0)
            if not np.allclose(header.get_best_affine(), affine, atol=1e-6):
                header.set_sform(affine, code=2)
    nib.save(img, str(path))
