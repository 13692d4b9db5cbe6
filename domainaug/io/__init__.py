"""Load and save samples, dispatching on the file extension. Format conventions (NIfTI voxel
centres in (i, j, k) order and RAS+ mm; ITK's LPS; GeoTIFF pixel corners in (col, row) order) are
converted here and only here: a loaded ``Space`` always maps array indices of centres to world.

- ``.nii``, ``.nii.gz``: nibabel. ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr`` and DICOM folders:
  SimpleITK. ``.tif``, ``.tiff``: rasterio.
- ``load(path, label=None)`` gives layers ``"image"``, ``"label"`` (when given) and ``"valid"``
  (when the file has nodata or a mask). An image and a label on different grids is an error,
  never a silent resample.
- ``save(sample, path, layer="image")`` writes one layer with the sample's space (affine, CRS) and
  the metadata kept at load (on-disk dtype, NIfTI codes, nodata, band names). Writes are atomic: a
  temporary file in the same folder is renamed when complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..core.sample import Layer, Role, Sample, as_label, as_tensor
from ..core.space import Space
from ..errors import DomainaugError, NoDataError, ParameterError, SpaceMismatchError

__all__ = ["load", "save", "format_of", "atomic_path", "assemble"]


def format_of(path: str | os.PathLike) -> str:
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if name.endswith((".tif", ".tiff")):
        return "geotiff"
    if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")) or p.is_dir():
        return "itk"
    raise ParameterError("path", str(path), "a .nii/.nii.gz, .mha/.mhd/.nrrd/.nhdr, .tif/.tiff file or a DICOM folder")


def _reader(fmt: str) -> Callable[..., dict[str, Any]]:
    if fmt == "nifti":
        from . import nifti
        return nifti.read
    if fmt == "itk":
        from . import itk
        return itk.read
    from . import geotiff
    return geotiff.read


def _writer(fmt: str) -> Callable[..., None]:
    if fmt == "nifti":
        from . import nifti
        return nifti.write
    if fmt == "itk":
        from . import itk
        return itk.write
    from . import geotiff
    return geotiff.write


def _read(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParameterError("path", str(path), "an existing file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise DomainaugError(f"{path}: the file is empty")
    fmt = format_of(path)
    try:
        return _reader(fmt)(path)
    except DomainaugError:
        raise
    except Exception as exc:  # corrupt or truncated files: name the file and the reader's reason
        raise DomainaugError(f"{path}: cannot read it as {fmt}: {exc}") from exc


def load(path: str | os.PathLike, label: str | os.PathLike | None = None, *, device: str | torch.device = "cpu",
         equivalent_crs: bool = False) -> Sample:
    """Load an image (and optionally a label map on the same grid) into a ``Sample``.

    Nodata, masks and non-finite voxels (NaN/Inf) of the image become the ``"valid"`` layer, with the
    fill value in place. Label nodata (e.g. unlabelled pixels of a label raster) becomes 0. A label
    on another grid or CRS is an error; ``equivalent_crs=True`` accepts a CRS written differently
    that denotes the same system (e.g. an EPSG code and its WKT).
    """
    sample = assemble(_read(path), None if label is None else _read(label), path, label, equivalent_crs)
    return sample.to(device) if str(device) != "cpu" else sample


def assemble(image: dict[str, Any], lab: dict[str, Any] | None, path: Any, label: Any = None,
             equivalent_crs: bool = False) -> Sample:
    """A ``Sample`` from what a reader returned (whole files, or windows of them)."""
    space = image["space"]
    data = as_tensor("image", image["data"])
    valid = None if image.get("valid") is None else torch.from_numpy(np.asarray(image["valid"], dtype=bool))
    if data.dtype.is_floating_point and not bool(torch.isfinite(data).all()):
        finite = torch.isfinite(data).all(0, keepdim=True)
        valid = finite if valid is None else valid & finite
    if valid is not None:                                     # canonical nodata: invalid voxels hold the fill
        if not bool(valid.any()):
            raise NoDataError(f"{path}: no valid voxel (nodata, mask or NaN everywhere)")
        data = torch.where(valid, data, torch.full_like(data, image["fill"]))
    layers = {"image": Layer(data, Role.INTENSITY, image["fill"], image.get("channels"))}
    meta = {"path": str(path), "format": image["format"], **image["meta"]}
    if lab is not None:
        lab_space = lab["space"]
        if equivalent_crs and lab_space.crs != space.crs and _same_crs(lab_space.crs, space.crs):
            lab_space = Space(lab_space.shape, lab_space.affine, space.crs)
        if not lab_space.same_grid(space, tolerance=1e-3):
            raise SpaceMismatchError(f"label {label} is on another grid or CRS than image {path}: "
                                     f"{lab['space'].describe()} vs {space.describe()}; resample one of them first")
        values = lab["data"]
        if lab.get("valid") is not None:                      # unlabelled pixels -> 0
            values = np.where(np.asarray(lab["valid"], dtype=bool), values, 0)
        layers["label"] = Layer(as_label(f"label ({label})", values), Role.LABEL, 0)
        meta["label_meta"] = {"path": str(label), "format": lab["format"], **lab["meta"]}
    if valid is not None:
        layers["valid"] = Layer(valid, Role.VALID)
    return Sample(space, layers, meta=meta)


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    from rasterio.crs import CRS
    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except Exception:
        return False


def save(sample: Sample, path: str | os.PathLike, layer: str = "image") -> Path:
    """Write one layer of ``sample`` to ``path`` (format from the extension), atomically."""
    path = Path(path)
    fmt = format_of(path)
    if layer not in sample.layer_names():
        raise ParameterError("layer", layer, f"a layer of the sample ({sample.layer_names()})")
    data_layer = sample.layers[layer]
    meta = dict(sample.meta.get("label_meta", {}) if data_layer.role is Role.LABEL else sample.meta)
    valid = sample.layers[sample.valid_name].data.cpu().numpy()[0] if sample.valid_name and \
        data_layer.role is Role.INTENSITY else None
    data = data_layer.data.detach().cpu().numpy()
    if data_layer.role is Role.VALID:
        data = data.astype(np.uint8)
    disk = meta.get("on_disk_dtype")
    if data_layer.role is Role.INTENSITY and disk and np.dtype(disk).kind in "iu" and meta.get("scl_slope") is None:
        info = np.iinfo(np.dtype(disk))            # values policy: rounded and clipped once, here
        data = np.clip(np.round(data), info.min, info.max).astype(np.dtype(disk))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _writer(fmt)(tmp, data, sample.space, meta=meta, fill=data_layer.fill, valid=valid,
                     channels=data_layer.channels)
    return path


class atomic_path:
    """A temporary path beside ``path`` (same extension) that replaces ``path`` on success and is
    removed on failure, so no half-written file is ever left under the final name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        suffix = "".join(self.path.suffixes) or ""
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name.split('.')[0]}.", suffix=".tmp" + suffix,
                                    dir=self.path.parent)
        os.close(fd)
        os.unlink(name)
        self.tmp = Path(name)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
