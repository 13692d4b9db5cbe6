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
        raise ValueError(f"{data.ndim}D NIfTI arrays are not supported (expected 3D, or 4D with channels last)")
    if data.ndim == 2:
        data = data[:, :, None]
    spatial = data[..., None] if data.ndim == 3 else data
    channels_first = np.ascontiguousarray(np.moveaxis(spatial, -1, 0))
    if channels_first.dtype.kind == "u" and channels_first.dtype.itemsize > 1:
        channels_first = channels_first.astype(np.int64 if channels_first.dtype.itemsize >= 4 else np.int32)
    header = img.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    slope, inter = float(getattr(img.dataobj, "slope", 1.0)), float(getattr(img.dataobj, "inter", 0.0))
    if slope == 1.0 and inter == 0.0:                        # nibabel keeps the scaling on the array proxy
        slope = inter = None
    meta = {"on_disk_dtype": str(header.get_data_dtype()), "qform_code": int(qcode if qcode is not None else 0),
            "sform_code": int(scode if scode is not None else 0),
            "scl_slope": None if slope is None else float(slope), "scl_inter": None if inter is None else float(inter),
            "xyzt_units": list(header.get_xyzt_units())}
    return {"format": "nifti", "data": channels_first, "space": Space(channels_first.shape[1:], img.affine),
            "fill": 0.0, "meta": meta}


def write(path: Path, data: np.ndarray, space: Space, meta: dict[str, Any], fill: float, valid, channels) -> None:
    if space.ndim != 3:
        raise ValueError("NIfTI output needs a 3D space")
    array = data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)
    img = nib.Nifti1Image(array, space.affine)
    header = img.header
    disk = np.dtype(meta["on_disk_dtype"]) if meta.get("on_disk_dtype") else None
    scaled = meta.get("scl_slope") is not None
    if disk is not None and disk.kind in "iu" and array.dtype.kind in "iu":
        info = np.iinfo(disk)
        fits = array.size == 0 or (array.min() >= info.min and array.max() <= info.max)
        header.set_data_dtype(disk if fits else array.dtype)
    elif disk is not None and (disk.kind == "f" or scaled):
        header.set_data_dtype(disk)      # scaled integers: nibabel picks slope/intercept for the new values
    else:
        header.set_data_dtype(array.dtype)
    img.set_qform(space.affine, code=meta.get("qform_code") or 1)
    img.set_sform(space.affine, code=meta.get("sform_code") or 1)
    units = meta.get("xyzt_units")
    if units:
        header.set_xyzt_units(*units)
    nib.save(img, str(path))
