"""NIfTI through nibabel. The NIfTI affine already maps voxel centres in (i, j, k) order to RAS+ mm,
which is domainaug's convention; a 4th axis becomes channels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..core.space import Space

__all__ = ["read", "write"]


def read(path: Path) -> dict[str, Any]:
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 5 and data.shape[3] == 1:                     # (X, Y, Z, 1, C): vector images
        data = data[:, :, :, 0]
    if data.ndim not in (2, 3, 4):
        raise ValueError(f"{data.ndim}D NIfTI arrays are not supported (expected 2D, 3D, or 4D with channels last)")
    affine = img.affine
    if data.ndim == 2 and np.allclose(affine[2, :2], 0) and np.allclose(affine[:2, 2], 0):
        # an axis-aligned 2D image: a 2D space in the first two world axes (z kept in meta)
        space = Space(data.shape, affine[np.ix_([0, 1, 3], [0, 1, 3])])
        channels_first = np.ascontiguousarray(data[None])
    else:
        if data.ndim == 2:                                          # an oblique slice stays a 3D plane
            data = data[:, :, None]
        spatial = data[..., None] if data.ndim == 3 else data
        channels_first = np.ascontiguousarray(np.moveaxis(spatial, -1, 0))
        space = Space(channels_first.shape[1:], affine)
    header = img.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    if slope == 1.0 and inter == 0.0:                        # nibabel keeps the scaling on the array proxy
        slope = inter = None
    meta = {"on_disk_dtype": str(header.get_data_dtype()), "qform_code": int(qcode if qcode is not None else 0),
            "sform_code": int(scode if scode is not None else 0), "scl_slope": slope, "scl_inter": inter,
            "xyzt_units": list(header.get_xyzt_units()), "z_offset": float(affine[2, 3])}
    return {"format": "nifti", "data": channels_first, "space": space, "fill": 0.0, "meta": meta}


_NIFTI_INTS = (np.uint8, np.int16, np.int32)


def _integer_dtype(array: np.ndarray, disk: np.dtype | None) -> np.dtype:
    """The on-disk integer dtype when the values fit, else the smallest NIfTI integer type that does
    (NIfTI readers do not accept int64)."""
    lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
    for candidate in ([disk] if disk is not None and disk.kind in "iu" else []) + [np.dtype(t) for t in _NIFTI_INTS]:
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    raise ValueError(f"integer values {lo}..{hi} do not fit a NIfTI integer type")


def write(path: Path, data: np.ndarray, space: Space, meta: dict[str, Any], fill: float, valid, channels) -> None:
    affine = space.affine
    if space.ndim == 2:                                             # a 2D image in the z = z_offset plane
        affine = np.eye(4)
        affine[np.ix_([0, 1, 3], [0, 1, 3])] = space.affine
        affine[2, 3] = meta.get("z_offset", 0.0)
    array = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    disk = np.dtype(meta["on_disk_dtype"]) if meta.get("on_disk_dtype") else None
    if array.dtype.kind in "iub":
        dtype = _integer_dtype(array, disk)
        array = array.astype(dtype)
    elif disk is not None and (disk.kind == "f" or meta.get("scl_slope") is not None):
        dtype = disk                     # scaled integers: nibabel picks slope/intercept for the new values
    else:
        dtype = array.dtype
    img = nib.Nifti1Image(array, affine, dtype=dtype)
    header = img.header
    img.set_qform(affine, code=meta.get("qform_code") or 1)
    img.set_sform(affine, code=meta.get("sform_code") or 1)
    units = meta.get("xyzt_units")
    if units:
        header.set_xyzt_units(*units)
    nib.save(img, str(path))
