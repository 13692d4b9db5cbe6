"""MHA/MHD/NRRD files and DICOM series through SimpleITK.

ITK indexes voxels (x, y, z) and maps them to LPS mm with origin, spacing and direction; numpy
views of ITK images are (z, y, x). We transpose to (x, y, z) so that the same scan loaded from
NIfTI or from ITK gives the same array, and flip the first two world axes (LPS -> RAS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..core.space import Space

__all__ = ["read", "write"]


def _lps_to_ras(n: int) -> np.ndarray:
    flip = np.eye(n + 1)
    flip[0, 0] = flip[1, 1] = -1.0
    return flip


def read(path: Path) -> dict[str, Any]:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise ValueError("the folder holds no DICOM series")
        reader.SetFileNames(files)
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    n = image.GetDimension()
    if n not in (2, 3):
        raise ValueError(f"{n}D ITK images are not supported")
    array = sitk.GetArrayFromImage(image)                              # (z, y, x[, c])
    if image.GetNumberOfComponentsPerPixel() == 1:
        array = array[None]
    else:
        array = np.moveaxis(array, -1, 0)
    array = np.ascontiguousarray(np.transpose(array, (0,) + tuple(range(n, 0, -1))))   # (C, x, y[, z])
    direction = np.array(image.GetDirection()).reshape(n, n)
    affine = np.eye(n + 1)
    affine[:n, :n] = direction @ np.diag(image.GetSpacing())
    affine[:n, n] = image.GetOrigin()
    affine = _lps_to_ras(n) @ affine                      # 2D ITK images are in L, P too
    meta = {"on_disk_dtype": str(sitk.GetArrayViewFromImage(image).dtype)}
    return {"format": "itk", "data": array, "space": Space(array.shape[1:], affine), "fill": 0.0, "meta": meta}


def write(path: Path, data: np.ndarray, space: Space, meta: dict[str, Any], fill: float, valid, channels) -> None:
    n = space.ndim
    array = np.transpose(data, (0,) + tuple(range(n, 0, -1)))        # (C, z, y, x)
    disk = meta.get("on_disk_dtype")
    if disk and np.dtype(disk).kind in "iu" and array.dtype.kind in "iu":
        info = np.iinfo(np.dtype(disk))
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            array = array.astype(np.dtype(disk))
    if array.shape[0] == 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[0]))
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(array, 0, -1)), isVector=True)
    affine = _lps_to_ras(n) @ space.affine
    spacing = np.linalg.norm(affine[:n, :n], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine[:n, :n] / spacing).ravel().tolist())
    image.SetOrigin(affine[:n, n].tolist())
    sitk.WriteImage(image, str(path), useCompression=True)
