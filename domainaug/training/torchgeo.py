"""A domainaug pipeline on TorchGeo samples and batches (``TorchGeoTransform``), the georeference
kept true.

TorchGeo's ``RasterDataset.__getitem__`` returns a dict; the adapter reads the keys of the versions
it knows, by duck type (it never imports TorchGeo):

- **TorchGeo 0.8 to 0.10** (``GeoSlice`` queries): ``"image"`` ``[C, H, W]`` float32 (``[T, C, H, W]``
  with ``time_series=True``), ``"mask"`` ``[H, W]`` long (``[C, H, W]`` for several bands),
  ``"bounds"`` a 9-tensor ``[xmin, xmax, xres, ymin, ymax, yres, tmin, tmax, tres]``,
  ``"transform"`` the 9-tensor of ``rasterio.transform.from_origin(xmin, ymax, xres, yres)``, and
  (0.10) ``"crs"`` the pyproj CRS the sample was read in. Some 0.8 development versions put the
  query itself, a tuple of ``slice(start, stop, step)`` for x, y, t, under ``"bounds"``: read too.
- **TorchGeo 0.7 and before**: ``"bounds"`` a ``BoundingBox`` (``minx, maxx, miny, maxy, mint,
  maxt``), ``"crs"`` a rasterio or pyproj CRS, no ``"transform"``; the pixel size is the dataset's
  ``res`` (``for_dataset`` takes it), else the extent over the shape.

A *batch* (``stack_samples``: ``"image"`` ``[B, C, H, W]``, ``"bounds"``/``"transform"`` ``[B, 9]``
or a list of ``BoundingBox``, ``"crs"`` a list) is augmented element by element, each with its own
draw, so the same adapter is a dataset ``transforms=`` and the batch transform of a datamodule's
``on_after_batch_transfer`` (on whatever device the batch is).

Every layer moves together: the image, the mask (LABEL role: integer masks never get a new value;
a float mask, for pixel regression, is an intensity) and any other tensor of the sample whose last
two dimensions are the image's. After the pipeline, ``"bounds"`` and ``"transform"`` (same format
and dtype as given; time entries kept) describe the output grid: a crop moves them, a warp keeps
them. A grid that stops being north-up (a quarter turn of a non-square patch) cannot be written as
TorchGeo bounds and raises ``SpaceMismatchError``. Band names (``bands``, from the dataset's
``bands``) name the image channels, for ops that select bands by name. Pixels equal to ``nodata``
(from the dataset's files; TorchGeo also fills the area outside its files with it) in any band are
invalid: statistics skip them, they keep their value, and pixels the augmentation brings in from
outside hold it. The param records of the call are under ``"domainaug_records"`` (a JSON string;
a list of them for a batch).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..core.random import generator_for
from ..core.sample import Layer, Role, Sample, as_label
from ..core.space import Space, as_crs
from ..core.transform import Transform
from ..errors import ParameterError, ShapeError, SpaceMismatchError

__all__ = ["TorchGeoTransform"]

RECORDS_KEY = "domainaug_records"


def _is_bbox(value: Any) -> bool:
    return all(hasattr(value, a) for a in ("minx", "maxx", "miny", "maxy", "mint", "maxt"))


def _is_slices(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) >= 2 and all(isinstance(v, slice) for v in value)


def _batched(d: Mapping[str, Any], image: torch.Tensor | None) -> bool:
    """Whether ``d`` is a batch (``stack_samples``) rather than one sample: by its georeference,
    else by the image's dimensions."""
    for key in ("transform", "bounds"):
        value = d.get(key)
        if isinstance(value, torch.Tensor):
            return value.dim() == 2
        if _is_bbox(value):                       # (old TorchGeo BoundingBoxes were tuples)
            return False
        if isinstance(value, (list, tuple)) and value and not _is_slices(value):
            return True
    if isinstance(d.get("crs"), (list, tuple)):
        return True
    return image is not None and image.dim() == 4


def _geotransform(values: Sequence[float]) -> tuple[float, ...]:
    """``(a, b, c, d, e, f)`` of a rasterio ``Affine`` given as 6 or 9 numbers."""
    v = [float(x) for x in values]
    if len(v) not in (6, 9):
        raise ParameterError("transform", v, "the 9 numbers of a rasterio Affine (a, b, c, d, e, f, 0, 0, 1)")
    return tuple(v[:6])


class TorchGeoTransform:
    """A domainaug pipeline as a transform of TorchGeo sample dicts and batches (see the module).

    Args:
        pipeline: Any domainaug transform.
        bands: Names of the image channels (TorchGeo's ``dataset.bands``); default: unnamed.
        nodata: The value that marks invalid pixels in the image (the dataset files' nodata);
            ``None``: every pixel is valid. NaN is accepted.
        res: The pixel size ``(xres, yres)`` (or one number) for TorchGeo 0.7 samples, whose
            ``BoundingBox`` holds no pixel size; default: the extent over the shape.
        image_key: The key of the image (INTENSITY, the reference grid).
        mask_key: The key of the mask.

    Seeds come from ``generator`` when the call is given one, else from torch's global generator
    (which DataLoader seeds per worker), as TorchIO's transforms do.
    """

    def __init__(self, pipeline: Transform, *, bands: Sequence[str] | None = None, nodata: float | None = None,
                 res: float | Sequence[float] | None = None, image_key: str = "image", mask_key: str = "mask") -> None:
        if not isinstance(pipeline, Transform):
            raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
        self.pipeline = pipeline
        self.bands = None if bands is None or len(bands) == 0 else tuple(str(b) for b in bands)
        if nodata is not None and (isinstance(nodata, bool) or not isinstance(nodata, numbers.Real)):
            raise ParameterError("nodata", nodata, "None or a number (the files' nodata value)")
        self.nodata = None if nodata is None else float(nodata)
        if res is not None:
            pair: tuple[Any, ...] = (res, res) if isinstance(res, numbers.Real) else tuple(res)  # type: ignore[arg-type]
            if len(pair) != 2 or not all(isinstance(r, numbers.Real) and float(r) > 0 for r in pair):
                raise ParameterError("res", res, "None, a positive pixel size or an (xres, yres) pair")
            res = (float(pair[0]), float(pair[1]))
        self.res = res
        self.image_key, self.mask_key = image_key, mask_key

    @classmethod
    def for_dataset(cls, pipeline: Transform, dataset: Any, **kwargs: Any) -> TorchGeoTransform:
        """The adapter for a TorchGeo ``RasterDataset``: band names from ``dataset.bands``, nodata
        from the dataset (a ``nodata`` attribute, else the first of its files that declares one,
        read with rasterio), the pixel size from ``dataset.res``. ``kwargs`` override any of them.
        Set it as ``dataset.transforms`` or call it in ``on_after_batch_transfer``."""
        if "bands" not in kwargs:
            kwargs["bands"] = tuple(getattr(dataset, "bands", ()) or ()) or None
        if "nodata" not in kwargs:
            kwargs["nodata"] = _dataset_nodata(dataset)
        if "res" not in kwargs and getattr(dataset, "res", None):
            kwargs["res"] = dataset.res
        return cls(pipeline, **kwargs)

    # --- one sample ------------------------------------------------------------------------------
    def _space(self, d: Mapping[str, Any], shape: tuple[int, int]) -> Space:
        crs = d.get("crs")
        crs = None if crs is None else as_crs(crs)
        h, w = shape
        if d.get("transform") is not None:
            a, b, c, dd, e, f = _geotransform(torch.as_tensor(d["transform"]).double().reshape(-1).tolist())
        elif d.get("bounds") is not None:
            bounds = d["bounds"]
            if _is_bbox(bounds):
                minx, maxx, miny, maxy = (float(getattr(bounds, k)) for k in ("minx", "maxx", "miny", "maxy"))
                xres, yres = self.res or ((maxx - minx) / w, (maxy - miny) / h)
            elif _is_slices(bounds):
                x, y = bounds[0], bounds[1]
                minx, maxx, miny, maxy = float(x.start), float(x.stop), float(y.start), float(y.stop)
                xres = float(x.step) if x.step else (maxx - minx) / w
                yres = float(y.step) if y.step else (maxy - miny) / h
            else:
                v = torch.as_tensor(bounds).double().reshape(-1).tolist()
                if len(v) != 9:
                    raise ParameterError("bounds", v, "TorchGeo's 9 numbers [xmin, xmax, xres, ymin, ymax, yres, "
                                         "tmin, tmax, tres], a BoundingBox or (x, y, t) slices")
                minx, maxx, xres, miny, maxy, yres = v[:6]
            a, b, c, dd, e, f = xres, 0.0, minx, 0.0, -yres, maxy
        else:
            raise ParameterError("sample", sorted(map(str, d)), "a TorchGeo sample with 'bounds' or 'transform' "
                                 "(the georeference the adapter keeps true)")
        from rasterio.transform import Affine as GeoTransform

        from ..io.geotiff import to_space_affine
        return Space((h, w), to_space_affine(GeoTransform(a, b, c, dd, e, f)), crs)

    def to_sample(self, d: Mapping[str, Any]) -> Sample:
        """The ``Sample`` of one TorchGeo sample dict: layers ``"image"`` (or ``"image_t<k>"`` for a
        time series), ``"label"`` (an integer mask), ``"valid"`` (from ``nodata``) and one per other
        tensor on the image's grid, named by its key."""
        image = d.get(self.image_key)
        mask = d.get(self.mask_key)
        ref = image if image is not None else mask
        if not isinstance(ref, torch.Tensor):
            raise ParameterError("sample", sorted(map(str, d)), f"a TorchGeo sample with a tensor under "
                                 f"{self.image_key!r} or {self.mask_key!r}")
        shape = (int(ref.shape[-2]), int(ref.shape[-1]))
        space = self._space(d, shape)
        layers: dict[str, Layer] = {}
        intensity: list[str] = []
        if image is not None:
            if image.dim() not in (3, 4):
                raise ShapeError(f"{self.image_key!r} has shape {tuple(image.shape)}; expected TorchGeo's [C, H, W] "
                                 "(or [T, C, H, W] for a time series)")
            stack = [image] if image.dim() == 3 else list(image.unbind(0))
            for k, frame in enumerate(stack):
                if self.bands is not None and len(self.bands) != frame.shape[0]:
                    raise ParameterError("bands", list(self.bands), f"{frame.shape[0]} band names for "
                                         f"{self.image_key!r} of shape {tuple(image.shape)}")
                name = "image" if image.dim() == 3 else f"image_t{k}"
                layers[name] = Layer(frame if frame.dtype.is_floating_point else frame.float(), Role.INTENSITY,
                                     0.0, self.bands)
                intensity.append(name)
        for key, value in d.items():
            if key in (self.image_key, "bounds", "transform", "crs", RECORDS_KEY) or \
                    not isinstance(value, torch.Tensor):
                continue
            if value.dim() not in (2, 3) or tuple(value.shape[-2:]) != shape:
                continue
            data = value[None] if value.dim() == 2 else value
            name = "label" if key == self.mask_key else str(key)
            if name in layers or name == "valid":
                raise ParameterError("sample", key, f"keys that do not clash with the {name!r} layer")
            if data.dtype.is_floating_point:
                layers[name] = Layer(data, Role.INTENSITY, 0.0)
                intensity.append(name)
            else:
                layers[name] = Layer(as_label(str(key), data), Role.LABEL, 0)
        if self.nodata is not None and intensity:
            valid = None
            for name in intensity:
                data = layers[name].data
                hit = torch.isnan(data) if math.isnan(self.nodata) else data == self.nodata
                own = ~hit.any(0, keepdim=True)
                valid = own if valid is None else valid & own
            assert valid is not None
            fill = self.nodata if math.isfinite(self.nodata) else 0.0
            for name in intensity:
                layer = layers[name]
                layers[name] = Layer(torch.where(valid, layer.data, torch.full_like(layer.data, fill)), Role.INTENSITY,
                                     fill, layer.channels)
            layers["valid"] = Layer(valid, Role.VALID)
        return Sample(space, layers)

    def _georef(self, d: Mapping[str, Any], out: Space) -> dict[str, Any]:
        """``"bounds"``/``"transform"`` of the output grid, in the formats and dtypes ``d`` gave."""
        from ..io.geotiff import to_geotransform
        t = to_geotransform(out.affine)
        a, b, c, dd, e, f = t.a, t.b, t.c, t.d, t.e, t.f
        if abs(b) > 1e-9 * abs(a) or abs(dd) > 1e-9 * abs(e) or a <= 0 or e >= 0:
            raise SpaceMismatchError(f"the augmented grid is not north-up ({out.describe()}): TorchGeo's bounds "
                                     "cannot describe it; use square patches for quarter turns (Crop before Rot90) "
                                     "or Resample onto a north-up grid")
        h, w = out.shape
        minx, maxx, maxy, miny = c, c + w * a, f, f + h * e
        result: dict[str, Any] = {}
        if d.get("transform") is not None:
            old = torch.as_tensor(d["transform"])
            new = [a, b, c, dd, e, f, 0.0, 0.0, 1.0][:old.numel()]
            result["transform"] = torch.tensor(new, dtype=old.dtype, device=old.device).reshape(old.shape) \
                if old.dtype.is_floating_point else torch.tensor(new, dtype=torch.float64).reshape(old.shape)
        bounds = d.get("bounds")
        if bounds is None:
            return result
        if _is_bbox(bounds):
            result["bounds"] = type(bounds)(minx, maxx, miny, maxy, bounds.mint, bounds.maxt)
        elif _is_slices(bounds):
            result["bounds"] = type(bounds)([slice(minx, maxx, a), slice(miny, maxy, -e), *bounds[2:]])
        else:
            given = torch.as_tensor(bounds)
            moved = given.clone().double().reshape(-1)
            moved[:6] = torch.tensor([minx, maxx, a, miny, maxy, -e], dtype=torch.float64)
            result["bounds"] = moved.to(given.dtype if given.dtype.is_floating_point else torch.float64) \
                .reshape(given.shape)
        return result

    def _one(self, d: Mapping[str, Any], generator: torch.Generator) -> dict[str, Any]:
        sample = self.to_sample(d)
        out = self.pipeline(sample, generator)
        result = dict(d)
        result.update(self._georef(d, out.space))
        for key, value in d.items():
            if not isinstance(value, torch.Tensor):
                continue
            if key == self.image_key:
                data = out["image"] if value.dim() == 3 else \
                    torch.stack([out[f"image_t{k}"] for k in range(value.shape[0])])
            else:
                name = "label" if key == self.mask_key else str(key)
                if name not in sample.layer_names() or name == "valid":
                    continue
                data = out[name]
                data = data[0] if value.dim() == 2 else data
            result[key] = data.to(value.dtype)
        result[RECORDS_KEY] = json.dumps([r.to_dict() for r in out.history])
        return result

    def __call__(self, d: Mapping[str, Any], generator: torch.Generator | None = None) -> dict[str, Any]:
        """Augment one TorchGeo sample, or each sample of a batch, keeping the georeference true."""
        if not isinstance(d, Mapping):
            raise ParameterError("sample", type(d).__name__, "a TorchGeo sample dict (or a batch of them)")
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, ()).item()))
        image = d.get(self.image_key)
        if not _batched(d, image if isinstance(image, torch.Tensor) else None):
            return self._one(d, generator_for(int(torch.randint(0, 2**62, (), generator=generator).item())))
        size = _batch_size(d)
        outs = []
        for i in range(size):
            element = {k: _element(v, i, size) for k, v in d.items()}
            seed = int(torch.randint(0, 2**62, (), generator=generator).item())
            outs.append(self._one(element, generator_for(seed)))
        batch: dict[str, Any] = {}
        for key in outs[0]:
            values = [o[key] for o in outs]
            if isinstance(d.get(key), torch.Tensor):
                shapes = {tuple(v.shape) for v in values}
                if len(shapes) > 1:
                    raise ShapeError(f"the augmented samples of the batch differ in {key!r} shape ({sorted(shapes)}): "
                                     "give the pipeline a fixed output size (Crop(size=...)) to stack them")
                batch[key] = torch.stack(values)
            else:
                batch[key] = values if isinstance(d.get(key), list) or key not in d else d[key]
        return batch


def _batch_size(d: Mapping[str, Any]) -> int:
    sizes = {int(v.shape[0]) for v in d.values() if isinstance(v, torch.Tensor) and v.dim() > 0}
    sizes |= {len(v) for v in d.values() if isinstance(v, list)}
    if len(sizes) != 1:
        raise ShapeError(f"a batch whose entries disagree on its size ({sorted(sizes)}): expected TorchGeo's "
                         "stack_samples output")
    return sizes.pop()


def _element(value: Any, i: int, size: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
        return value[i]
    if isinstance(value, list) and len(value) == size:
        return value[i]
    return value


def _dataset_nodata(dataset: Any) -> float | None:
    """A TorchGeo dataset's nodata value: its ``nodata`` attribute, else the first of its files
    (``dataset.files``) that declares one."""
    value = getattr(dataset, "nodata", None)
    if value is not None:
        return float(value)
    import rasterio
    for path in list(getattr(dataset, "files", []) or [])[:16]:
        try:
            with rasterio.open(path) as src:
                if src.nodata is not None:
                    return float(src.nodata)
        except rasterio.errors.RasterioIOError:
            continue
    return None
