"""Load and save samples, dispatching on the file extension. Format conventions (NIfTI voxel
centres in (i, j, k) order and RAS+ mm; ITK's LPS; GeoTIFF pixel corners in (col, row) order) are
converted here and only here: a loaded ``Space`` always maps array indices of centres to world.

- ``.nii``, ``.nii.gz``: nibabel. ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr`` and DICOM folders:
  SimpleITK. ``.tif``, ``.tiff``: rasterio. URLs and GDAL virtual paths (``/vsicurl/``,
  ``/vsis3/``, ``/vsimem/``) go to rasterio unchanged; nibabel images, SimpleITK images and open
  rasterio datasets are read as their files are (``domainaug.io.sources``).
- ``load(path, label=None)`` gives layers ``"image"``, ``"label"`` (when given) and ``"valid"``
  (when the file has nodata or a mask). An image and a label on different grids is an error,
  never a silent resample.
- Many files into one sample (``domainaug.io.many``): ``load({"t1": p1, "flair": p2, "label": p3},
  labels=("label",))`` gives one layer per entry; ``load([b02.tif, b03.tif, ...])`` stacks per-band
  files as the channels of ``"image"`` (named from band descriptions or file names). Every file
  must be on one grid for now; one ``"valid"`` is the AND over the intensity layers.
- Values: intensity layers are float32 in memory (float64 when the file is, or on request); labels
  stay integer; ``"valid"`` is bool. What each layer's file was is kept in
  ``sample.meta["layers"][name]`` (on-disk dtype, scaling, NIfTI header, GeoTIFF layout, nodata,
  band descriptions, colour interpretation, tags, CRS definition).
- ``save(sample, path, layer="image", dtype=None)`` writes one layer with the sample's space (affine,
  CRS) and that metadata; values are fitted to the on-disk type there, once. Writes are atomic: a
  temporary file in the same folder is renamed when complete.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import torch

from ..core.sample import Layer, Role, Sample, resolve_fill
from ..core.space import crs_equal
from ..errors import DomainaugError, NoDataError, ParameterError, SpaceMismatchError
from ..extras import require
from .common import file_fill, file_validity, grid_error, intensity_tensor, label_layer
from .sources import as_source, is_remote, mangled_url, name_of, object_kind

__all__ = ["load", "save", "format_of", "atomic_path", "assemble"]


def format_of(path: str | os.PathLike) -> str:
    if is_remote(path):                                  # GDAL reads it; a query string is not the name
        name = str(path).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].lower()
        if name.endswith((".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")):
            raise ParameterError("path", str(path), "a local path for NIfTI and ITK files (remote and GDAL virtual "
                                 "paths are read by GDAL: GeoTIFF, Cloud-Optimised GeoTIFF, JPEG 2000)")
        return "geotiff"
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if name.endswith((".tif", ".tiff", ".jp2")):          # JPEG 2000 (Sentinel-2 products): read by GDAL
        return "geotiff"
    if name.endswith((".mha", ".mhd", ".nrrd", ".nhdr")) or p.is_dir():
        return "itk"
    raise ParameterError("path", str(path),
                         "a .nii/.nii.gz, .mha/.mhd/.nrrd/.nhdr, .tif/.tiff, .jp2 file or a DICOM folder")


def _module(fmt: str) -> ModuleType:
    """The reader/writer module of a format (``"nifti"``, ``"itk"``, ``"geotiff"``), imported on use
    (SimpleITK and rasterio load only when a file needs them)."""
    return importlib.import_module(f"{__name__}.{fmt}")


def _read(path: Any) -> dict[str, Any]:
    kind = object_kind(path)
    if kind is not None:                   # an image object: read as its file would be
        name = name_of(path)
        module = _module(kind)
        reader = module.read_dataset if kind == "geotiff" else module.read_image
        try:
            return reader(path, name)
        except DomainaugError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise DomainaugError(f"{name}: cannot read it as {kind}: {reason}") from exc
    if not isinstance(path, (str, os.PathLike)):
        raise ParameterError("path", type(path).__name__, "a path, a URL or GDAL virtual path (/vsicurl/, /vsis3/, "
                             "/vsimem/), a nibabel image, a SimpleITK image or an open rasterio dataset")
    if mangled_url(path):
        raise ParameterError("path", os.fspath(path), "a URL as a string: pathlib.Path collapsed '//' after the "
                             "scheme; pass the URL (or /vsicurl/ path) itself")
    source = as_source(path)
    if isinstance(source, Path):
        if not source.exists():
            raise ParameterError("path", str(source), "an existing file or folder")
        if source.is_file() and source.stat().st_size == 0:
            raise DomainaugError(f"{source}: the file is empty")
    fmt = format_of(source)
    reader = _module(fmt).read             # outside the try: a missing extra is named as it is
    try:
        return reader(source)
    except DomainaugError:
        raise
    except Exception as exc:  # corrupt or truncated files: name the file and the reader's reason
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DomainaugError(f"{source}: cannot read it as {fmt}: {reason}") from exc


def load(path: Any, label: Any = None, *, device: str | torch.device = "cpu",
         equivalent_crs: bool = False, dtype: str | torch.dtype | None = None,
         fill: Any = None, labels: Sequence[str] = ("label",), sensor: str | None = None) -> Sample:
    """Load an image (and optionally a label map on the same grid), or many files, into a ``Sample``.

    Args:
        path: The image file (or DICOM folder), a URL or GDAL virtual path of a raster
            (``https://``, ``/vsicurl/``, ``/vsis3/``, ``/vsimem/``: given to rasterio unchanged), or an
            image object read as its file is (a nibabel image, a ``SimpleITK.Image``, an open rasterio
            dataset, left open; ``domainaug.io.sources``); or many files on one grid (``domainaug.io.many``):
            a mapping of layer name to file (``{"t1": p1, "flair": p2, "label": p3}``; a value may
            be a list of files stacked as channels), a list of ``(name, path)`` pairs, or a list of
            per-band files (single-band GeoTIFFs, as Landsat and Sentinel-2 ship them) stacked as
            the channels of ``"image"``, named from band descriptions or file names.
        label: An optional label map on the same grid (a path or object as ``path``; not with a
            mapping: put it in the mapping).
        labels: With a mapping: the names of LABEL layers (default ``("label",)``); every other
            entry is an INTENSITY layer.
        sensor: With a list of band files: resolve channel names to this sensor's band names
            (``domainaug.remote_sensing.bands``); a name the sensor lacks is an error.
        device: Where the layers go.
        equivalent_crs: Accept a label whose CRS is written differently but denotes the same
            system, as PROJ decides (``crs_equal``: an EPSG code and its WKT, an ESRI WKT).
        dtype: The in-memory type of the image: float32 by default (float64 when the file is
            float64); the on-disk type is remembered and applied by ``save``.
        fill: The value outside the field of view and at nodata: a number, ``"minimum"`` or
            ``"mean"`` of the valid voxels. Default ``None``: the raster's nodata value when it has
            a finite one, else ``"minimum"`` (CT gets air, MRI its background). Labels fill with 0.
            With many files, a mapping of intensity layer name to fill is accepted.

    Values: intensity layers are float32 (the file's scaling, e.g. NIfTI ``scl_slope``, applied
    once); labels stay integer; ``"valid"`` is bool. A pixel is valid only where every band is valid
    (nodata, masks) and finite; invalid pixels hold the fill. Label nodata (unlabelled pixels of
    a label raster) becomes 0.

    What the file was (on-disk dtype, scaling, NIfTI header, GeoTIFF layout and metadata) is kept
    per layer in ``sample.meta["layers"][name]``; ``sample.meta["path"]``/``["format"]`` name the
    image file, and ``sample.meta["modality"]`` holds a DICOM series' Modality (``"MR"``, ``"CT"``).

    Raises:
        SpaceMismatchError: The label (or any of many files) is on another grid or CRS than the
            image (the first file), or does not overlap it; the message names both files and what
            differs. Layers on their own grids are not supported yet: resample first.
        ParameterError: Many files with a repeated layer name, the same band name twice in one
            layer (dates go in layers of their own, ``image_t<k>``), or a layer named ``"valid"``.
        DomainaugError: A file that cannot be read, declares more data than it holds, or more than
            the load limit (``DOMAINAUG_MAX_LOAD_GB``, see ``domainaug.io.common``); named.
    """
    from . import many
    if many.is_many(path):
        sample = many.load_many(path, label, read=_read, equivalent_crs=equivalent_crs, dtype=dtype, fill=fill,
                                labels=labels, sensor=sensor)
        return sample.to(device) if str(device) != "cpu" else sample
    if sensor is not None:
        raise ParameterError("sensor", sensor, "None for one file (sensor= names the bands of a list of band files; "
                             "use domainaug.remote_sensing.set_bands for one file)")
    if isinstance(fill, dict):
        raise ParameterError("fill", fill, "a number, 'minimum' or 'mean' for one file")
    sample = assemble(_read(path), None if label is None else _read(label), name_of(path),
                      None if label is None else name_of(label), equivalent_crs, dtype=dtype, fill=fill)
    return sample.to(device) if str(device) != "cpu" else sample


def assemble(image: dict[str, Any], lab: dict[str, Any] | None, path: Any, label: Any = None,
             equivalent_crs: bool = False, *, dtype: str | torch.dtype | None = None,
             fill: float | str | None = None) -> Sample:
    """A ``Sample`` from what a reader returned (whole files, or windows of them)."""
    space = image["space"]
    data = intensity_tensor(image["data"], image.get("scale"), dtype)
    image_meta = {**image["meta"], "path": str(path)}
    valid = file_validity(image, data, None, image_meta)
    if valid is not None and not bool(valid.any()):
        raise NoDataError(f"{path}: no valid voxel (nodata, mask or NaN everywhere)")
    fill_value = resolve_fill(data, valid, file_fill([image.get("fill")], data) if fill is None else fill)
    if valid is not None:                                     # canonical nodata: invalid voxels hold the fill
        data = torch.where(valid, data, torch.full_like(data, fill_value))
    layers = {"image": Layer(data, Role.INTENSITY, fill_value, image.get("channels"))}
    meta: dict[str, Any] = {"path": str(path), "format": image["format"], "layers": {"image": image_meta}}
    if image_meta.get("modality"):              # a DICOM series declares it: MR-only ops and CTWindow check it
        meta["modality"] = image_meta["modality"]
    if lab is not None:
        lab_space = lab["space"]
        if not lab_space.same_grid(space, tolerance=1e-3, equivalent_crs=equivalent_crs):
            raise SpaceMismatchError(f"label {label} is on another grid or CRS than image {path}: "
                                     f"{grid_error(space, lab_space)} (image vs label); resample one of them first"
                                     + ("" if equivalent_crs or not crs_equal(space.crs, lab_space.crs) else
                                        "; the CRSs are equivalent by PROJ: pass equivalent_crs=True to accept"))
        layers["label"], meta["layers"]["label"] = label_layer(lab, label, "label")
    if valid is not None:
        layers["valid"] = Layer(valid, Role.VALID)
    return Sample(space, layers, meta=meta)


#: What a VALID layer's file takes over from the image's source: the grid's CRS and the layout.
_VALID_KEYS = ("format", "crs", "crs_wkt", "compress", "predictor", "tiled", "blockxsize", "blockysize", "z_offset")


def save(sample: Sample, path: str | os.PathLike, layer: str = "image", *, dtype: Any = None) -> Path:
    """Write one layer of ``sample`` to ``path`` (format from the extension), atomically.

    Args:
        sample: The sample; its space gives the grid and CRS.
        path: The file (``.nii``/``.nii.gz``, ``.mha``/``.nrrd``, ``.tif``).
        layer: Which layer.
        dtype: The on-disk type; default: the layer's source type (its file's, kept at load), else
            the in-memory type (labels: the smallest integer type that holds them).

    Values are fitted to the on-disk type once, here: integers rounded to the nearest (ties to
    even) and clipped to the type's range, after removing the file's scaling (NIfTI
    ``scl_slope``/``scl_inter``, kept when the type is the source's). Invalid pixels of an intensity
    layer are written as the source's nodata value (GeoTIFF, NaN included), or NaN (float NIfTI/ITK
    whose source had NaN), else the layer's fill; a GeoTIFF whose source had no nodata gets an
    internal mask. The rest of the source's metadata is written back (see ``nifti`` and
    ``geotiff``), so load -> save -> load gives the same data, grid, CRS, nodata, dtype and bands.
    """
    if is_remote(path) or object_kind(path) is not None:
        raise ParameterError("path", name_of(path), "a local file path (save writes local files; upload the file "
                             "afterwards)")
    path = Path(path)
    fmt = format_of(path)
    if path.name.lower().endswith(".jp2"):
        raise ParameterError("path", str(path), "a .tif/.tiff path for a raster (JPEG 2000 is read, not written)")
    if layer not in sample.layer_names():
        raise ParameterError("layer", layer, f"a layer of the sample ({sample.layer_names()})")
    ndim = sample.space_of(layer).ndim
    if fmt == "geotiff" and ndim != 2:      # checked here, so that the message names this path, not a temporary
        raise ParameterError("path", str(path), f"a format for {ndim}D samples (GeoTIFF holds 2D rasters)")
    if dtype is not None:
        try:
            dtype = np.dtype(str(dtype).replace("torch.", ""))
        except TypeError as exc:
            raise ParameterError("dtype", dtype, "a numpy dtype name (uint8, int16, float32, ...)") from exc
        if dtype.kind not in "iuf":
            raise ParameterError("dtype", str(dtype), "an integer or float dtype")
    data_layer = sample.layers[layer]
    layers_meta = sample.meta.get("layers", {})
    if data_layer.role is Role.VALID:
        image_meta = layers_meta.get(sample.meta.get("reference", "image"), {})   # the first intensity layer's file
        meta = {k: image_meta[k] for k in _VALID_KEYS if k in image_meta}
    else:
        meta = dict(layers_meta.get(layer, {}))
    valid_name = sample.valid_of(layer)
    valid = sample.layers[valid_name].data.cpu().numpy()[0] if valid_name and data_layer.role is Role.INTENSITY \
        else None
    tensor = data_layer.data.detach().cpu()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    data = tensor.numpy()
    writer = _module(fmt).write
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, verify=lambda tmp: verify_written(tmp, path, fmt, data.size)) as tmp:
        writer(tmp, data, sample.space_of(layer), meta=meta, role=data_layer.role.value, fill=data_layer.fill,
               valid=valid, channels=data_layer.channels, dtype=dtype)
    return path


def verify_written(tmp: Path, path: Path, fmt: str, values: int) -> None:
    """``DomainaugError`` naming ``path`` unless the file just written at ``tmp`` reads back whole:
    ``values`` voxel values, and (GeoTIFF) its last row readable, (NIfTI) as many bytes as its header
    says. GDAL only logs some write errors (a full disk under a small untiled GeoTIFF), so a write
    is never trusted before its rename."""
    try:
        if fmt == "geotiff":
            import rasterio
            from rasterio.windows import Window
            with rasterio.open(tmp) as src:
                found = src.count * src.height * src.width
                if found == values:
                    src.read(src.count, window=Window(0, src.height - 1, src.width, 1))
        elif fmt == "nifti":
            import nibabel as nib
            image: Any = nib.load(str(tmp))
            found = int(np.prod(image.shape))
            expected = int(image.dataobj.offset) + found * image.header.get_data_dtype().itemsize
            size = tmp.stat().st_size
            if str(tmp).endswith(".gz"):          # the gzip trailer holds the uncompressed size (mod 2**32)
                with open(tmp, "rb") as f:
                    f.seek(-4, os.SEEK_END)
                    size = int.from_bytes(f.read(4), "little")
                expected %= 2**32
            if size != expected:
                raise DomainaugError(f"{size} bytes where the header needs {expected}")
        else:
            sitk = require("SimpleITK", "reading and writing MHA/MHD/NRRD and DICOM")
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(tmp))
            reader.ReadImageInformation()
            found = int(np.prod(reader.GetSize())) * reader.GetNumberOfComponents()
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is not what was written
        raise DomainaugError(f"{path}: the file written does not read back ({type(exc).__name__}: {exc}); is the "
                             "disk full or the folder failing?") from exc
    if found != values:
        raise DomainaugError(f"{path}: the file written holds {found} values, not {values}; is the disk full?")


class atomic_path:
    """A temporary path beside ``path`` (same extension) that replaces ``path`` on success and is
    removed on failure, so no half-written file is ever left under the final name. On success the
    temporary is checked by ``verify`` (if given) and fsynced before the rename, and the folder after
    it, so a crash or a full disk never leaves an empty or partial file under the final name."""

    def __init__(self, path: Path, verify: Callable[[Path], None] | None = None) -> None:
        self.path = Path(path)
        self.verify = verify
        suffix = "".join(self.path.suffixes) or ""
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name.split('.')[0]}.", suffix=".tmp" + suffix,
                                    dir=self.path.parent)
        os.close(fd)
        os.unlink(name)
        self.tmp = Path(name)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                if self.verify is not None:
                    self.verify(self.tmp)
                _fsync(self.tmp)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                raise
            os.replace(self.tmp, self.path)
            _fsync(self.path.parent)
        elif self.tmp.exists():
            self.tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
