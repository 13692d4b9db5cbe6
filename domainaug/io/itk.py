"""MHA/MHD/NRRD files and DICOM series through SimpleITK.

ITK indexes voxels (x, y, z) and maps them to LPS mm with origin, spacing and direction; numpy
views of ITK images are (z, y, x). We transpose to (x, y, z) so that the same scan loaded from
NIfTI or from ITK gives the same array, and flip the first two world axes (LPS -> RAS)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.space import Space
from ..errors import DomainaugError
from ..extras import require
from .common import check_load_size, fits, smallest_integer_dtype, to_disk

sitk = require("SimpleITK", "MHA/MHD/NRRD files and DICOM folders")

__all__ = ["read", "read_image", "write"]


def _lps_to_ras(n: int) -> np.ndarray:
    flip = np.eye(n + 1)
    flip[0, 0] = flip[1, 1] = -1.0
    return flip


def read(path: Path) -> dict[str, Any]:
    modality = None                          # DICOM's Modality (0008,0060): "MR", "CT", ...
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(path))
        if not files:
            raise ValueError("the folder holds no DICOM series")
        reader.SetFileNames(files)
        image = reader.Execute()
        header = sitk.ImageFileReader()
        header.SetFileName(files[0])
        header.ReadImageInformation()
        modality = header.GetMetaData("0008|0060").strip() if header.HasMetaDataKey("0008|0060") else None
    else:
        info = sitk.ImageFileReader()
        info.SetFileName(str(path))
        info.ReadImageInformation()                               # the header only: check before allocating
        itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * info.GetDimension(), info.GetPixelID(),
                                                                   info.GetNumberOfComponents())).dtype).itemsize
        check_load_size(path, (info.GetNumberOfComponents(),) + tuple(info.GetSize()), itemsize)
        image = sitk.ReadImage(str(path))
    return read_image(image, path, modality)


def read_image(image: Any, path: Any, modality: str | None = None) -> dict[str, Any]:
    """What ``read`` returns, from a ``SimpleITK.Image`` (``path`` names it in messages)."""
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
    try:
        space = Space(array.shape[1:], affine)
    except DomainaugError as exc:
        raise DomainaugError(f"{path}: origin, spacing and direction are not a usable index -> world map: {exc}") \
            from exc
    meta = {"format": "itk", "on_disk_dtype": str(sitk.GetArrayViewFromImage(image).dtype)}
    if modality:
        meta["modality"] = modality
    return {"format": "itk", "data": array, "space": space, "fill": None, "meta": meta}


#: Integer types tried, in order, for labels their source type cannot hold.
ITK_INTEGER_DTYPES = ("uint8", "int16", "uint16", "int32", "int64")


def write(path: Path, data: np.ndarray, space: Space, *, meta: dict[str, Any], role: str, fill: float,
          valid: np.ndarray | None, channels: Sequence[str] | None, dtype: Any = None) -> None:
    """Write with the on-disk dtype kept (any source format's), values rounded and clipped to it once
    (``common.to_disk``); invalid voxels hold the fill (NaN when the type is float and the source had NaN)."""
    n = space.ndim
    disk = np.dtype(dtype) if dtype is not None else (np.dtype(meta["on_disk_dtype"]) if meta.get("on_disk_dtype")
                                                      else None)
    if role == "valid":
        disk = np.dtype("uint8")
    elif role == "label":
        disk = disk if disk is not None and (disk.kind == "f" or fits(data, disk)) else \
            smallest_integer_dtype(data, ITK_INTEGER_DTYPES)
    else:
        if dtype is None and (meta.get("scl_slope") is not None or meta.get("scl_inter") is not None):
            disk = np.dtype("float32")            # a scaled NIfTI source: ITK files cannot hold the scaling
        disk = disk or data.dtype
        disk = np.dtype("float32") if disk.kind == "f" and disk.itemsize < 4 else disk
    values = data.astype(np.uint8) if role == "valid" else data
    if role == "intensity" and valid is not None and not valid.all():
        nan = disk.kind == "f" and meta.get("non_finite", False)
        values = np.where(~np.broadcast_to(valid, data.shape), np.nan if nan else data.dtype.type(fill), data)
    array = np.transpose(to_disk(values, disk), (0,) + tuple(range(n, 0, -1)))        # (C, z, y, x)
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
