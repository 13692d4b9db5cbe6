"""Use a domainaug pipeline inside MONAI and TorchIO pipelines; each adapter moves every image it is
given, or refuses.

- ``MonaiTransform``: a MONAI ``Randomizable`` + ``InvertibleTransform`` dict transform. Its generator
  seeds come from MONAI's own random state, so ``monai.utils.set_determinism`` and
  ``monai.data.DataLoader``'s worker seeding apply. Every key holding an image moves (see the class);
  ``MetaTensor`` metadata is kept (``filename_or_obj`` and the rest) with the affine updated to the
  output grid, and the call is pushed on ``applied_operations`` so ``Invertd`` and ``SaveImaged`` work.
- ``TorchioTransform``: a TorchIO random transform on a ``Subject``; every ``ScalarImage`` and
  ``LabelMap`` moves. Its seeds come from torch's global generator, as every TorchIO random
  transform's do. The subject's history gets a ``DomainaugReplay`` (the records of the call), so
  ``subject.apply_inverse_transform()`` maps every image back onto the input grid.
The param records of the last call are on the output: a JSON string under the ``"domainaug_records"``
key (a string, so that MONAI's default collate batches it whatever the records hold, ``None`` included;
``json.loads`` it to replay) and a list of dicts in the subject's ``domainaug_records`` attribute.

Inversion undoes the spatial part of the records (through ``TestTimeAugmentation.back``: the one
resampler, linear for intensities and the LABEL rule for integer data or labels); intensity
changes are not undone, as in MONAI and TorchIO. Voxels the augmentation did not see come back as 0.

MONAI and TorchIO are imported only when ``MonaiTransform`` or ``TorchioTransform`` (or
``DomainaugReplay``) is first used: the classes are built on first access of the name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.random import generator_for
from ..core.sample import Role, Sample
from ..core.space import Space
from ..core.transform import Transform, replay
from ..errors import ParameterError
from ..extras import require
from ..io import interop

__all__ = ["MonaiTransform", "TorchioTransform", "DomainaugReplay", "invert_records"]  # noqa: F822 - the classes are built lazily by __getattr__


def _check(pipeline: Any) -> Transform:
    if not isinstance(pipeline, Transform):
        raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
    return pipeline


def invert_records(data: torch.Tensor, source: Space, records: Sequence[Any], *, labels: bool) -> torch.Tensor:
    """``data`` ``(C, *spatial)`` on the grid that ``records`` made from ``source``, resampled back onto
    ``source`` (the spatial part of the records; voxels the view did not cover become 0): linear
    for intensities, the LABEL rule per channel when ``labels``. The dtype is kept."""
    from ..invert import Invert
    invert = Invert(list(records), source)
    if labels:
        return invert(data if not data.dtype.is_floating_point else data.to(torch.int64), mode="nearest").to(data.dtype)
    back = invert(data if data.dtype.is_floating_point else data.to(torch.float32))
    return back if data.dtype.is_floating_point else back.round().to(data.dtype)


def _is_label_dtype(t: Any) -> bool:
    dtype = t.dtype if isinstance(t, torch.Tensor) else torch.from_numpy(np.zeros(0, dtype=t.dtype)).dtype
    return not dtype.is_floating_point and not dtype.is_complex


def _space_dict(space: Space) -> dict[str, Any]:
    return {"shape": list(space.shape), "affine": np.asarray(space.affine, dtype=np.float64).tolist(),
            "crs": space.crs}


def _space_from(doc: dict[str, Any]) -> Space:
    return Space(tuple(doc["shape"]), np.asarray(doc["affine"], dtype=np.float64), doc.get("crs"))


# --- MONAI ------------------------------------------------------------------------------------------

def _make_monai() -> type:
    require("monai", "MonaiTransform")
    from monai.data import MetaTensor
    from monai.transforms import InvertibleTransform, MapTransform, Randomizable
    from monai.utils import TraceKeys

    class MonaiTransform(MapTransform, Randomizable, InvertibleTransform):
        """A domainaug pipeline as a MONAI dict transform that moves every image key of the dict.

        Args:
            pipeline: Any domainaug transform.
            keys: The keys to augment, as in MONAI's dictionary transforms. Default (``None``):
                every ``torch.Tensor``/``MetaTensor``/``numpy`` array with as many dimensions as
                ``image_key``'s (other values, e.g. class targets, pass through); one whose spatial
                shape differs from ``image_key``'s raises ``SpaceMismatchError`` naming it (never
                left unwarped).
            label_keys: Keys that hold labels (LABEL role: never a new value). Integer and bool
                tensors are labels whatever this says; default: ``("label",)``.
            image_key: The reference key (the ``"image"`` layer; its grid is the sample's).
            allow_missing_keys: As in MONAI: missing ``keys`` are skipped instead of raising.

        Layer names seen by the pipeline: ``image_key`` -> ``"image"``, the first label key present
        -> ``"label"`` (so ``Crop(mode="label")`` finds it), every other key under its own name.
        Outputs: ``MetaTensor``s (numpy in, numpy out) with the input's meta and
        ``applied_operations``, the affine of the output grid, labels in their input dtype, and the
        call pushed on ``applied_operations`` (records and source grid in its ``extra_info``), so
        ``Invertd``/``Compose.inverse`` map predictions back and ``SaveImaged`` writes them.
        """

        def __init__(self, pipeline: Transform, keys: Any = None, label_keys: Any = None, *,
                     image_key: str = "image", allow_missing_keys: bool = False) -> None:
            self._explicit = None if keys is None else ([keys] if isinstance(keys, str) else list(keys))
            super().__init__(self._explicit or [image_key], allow_missing_keys=allow_missing_keys)
            self.pipeline, self.image_key = _check(pipeline), image_key
            self.label_keys = ("label",) if label_keys is None else \
                ((label_keys,) if isinstance(label_keys, str) else tuple(label_keys))
            self._seed = 0

        def randomize(self, data: Any = None) -> None:
            self._seed = int(self.R.randint(0, 2**31 - 1))

        def _selected(self, d: dict[Hashable, Any]) -> list[Hashable]:
            if self.image_key not in d:
                raise ParameterError("image_key", self.image_key, f"a key of the dict ({sorted(map(str, d))})")
            ndim = d[self.image_key].ndim
            if self._explicit is not None:
                missing = [k for k in self._explicit if k not in d]
                if missing and not self.allow_missing_keys:
                    raise ParameterError("keys", missing, f"keys of the dict ({sorted(map(str, d))}), or "
                                         "allow_missing_keys=True")
                keys = [k for k in self._explicit if k in d]
                return keys if self.image_key in keys else [self.image_key] + keys
            return [k for k, v in d.items() if isinstance(v, (torch.Tensor, np.ndarray)) and v.ndim == ndim]

        def __call__(self, data: dict[Hashable, Any]) -> dict[Hashable, Any]:
            self.randomize()
            d = dict(data)
            keys = self._selected(d)
            first_label = next((k for k in self.label_keys if k in keys and k != self.image_key), None)
            names: dict[Hashable, str] = {}
            parts: dict[str, tuple] = {}
            for key in keys:
                value = d[key]
                tensor = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
                label = key != self.image_key and (key in self.label_keys or _is_label_dtype(tensor))
                name = "image" if key == self.image_key else "label" if key == first_label else str(key)
                if name in parts:
                    raise ParameterError("keys", key, f"keys that do not clash with the {name!r} layer "
                                         f"(image_key={self.image_key!r}, label_keys={list(self.label_keys)})")
                affine = value.affine if isinstance(value, MetaTensor) else None
                parts[name] = (str(key), tensor, affine, Role.LABEL if label else Role.INTENSITY)
                names[key] = name
            sample = interop.sample_from_parts(parts, "image")
            out = self.pipeline(sample, generator_for(self._seed))
            records = [r.to_dict() for r in out.history]
            source, target = _space_dict(sample.space), np.array(out.space.affine, dtype=np.float64)
            for key, name in names.items():
                value, layer = d[key], out[name]
                if layer.dtype != parts[name][1].dtype and parts[name][3] is Role.LABEL:
                    layer = layer.to(parts[name][1].dtype)             # labels in their input dtype
                if not isinstance(value, torch.Tensor):
                    d[key] = layer.cpu().numpy()
                    continue
                meta = copy.deepcopy(value.meta) if isinstance(value, MetaTensor) else {}
                ops = copy.deepcopy(value.applied_operations) if isinstance(value, MetaTensor) else []
                affine = torch.as_tensor(target)
                old = value.affine if isinstance(value, MetaTensor) else None
                if old is not None and tuple(old.shape) == (4, 4) and target.shape == (3, 3):  # MONAI's 4x4 in 2D
                    full = torch.eye(4, dtype=torch.float64)
                    full[np.ix_([0, 1, 3], [0, 1, 3])] = affine
                    affine = full
                meta["affine"] = affine.clone()
                result = MetaTensor(layer.detach().clone(), meta=meta, applied_operations=ops)
                mode = "label" if parts[name][3] is Role.LABEL else "linear"
                d[key] = self.push_transform(result, orig_size=tuple(sample.space.shape),
                                             extra_info={"records": records, "source": source, "mode": mode})
            d["domainaug_records"] = json.dumps(records)
            return d

        def inverse(self, data: dict[Hashable, Any]) -> dict[Hashable, Any]:
            """Every ``MetaTensor`` of ``data`` whose last applied operation is this transform's, mapped
            back onto the grid it came from (``Invertd`` gives a prediction the image's operations)."""
            d = dict(data)
            for key, value in list(d.items()):
                if not isinstance(value, MetaTensor) or not value.applied_operations:
                    continue
                try:
                    self.check_transforms_match(value.applied_operations[-1])
                except RuntimeError:
                    continue
                value = value.clone()           # pop from a copy: the caller's tensor keeps its history
                d[key] = value
                xform = self.pop_transform(value, check=False)
                extra = xform[TraceKeys.EXTRA_INFO]
                source = _space_from(extra["source"])
                labels = extra.get("mode") in ("label", "nearest") or _is_label_dtype(value)
                back = invert_records(value.as_tensor(), source, extra["records"], labels=labels)
                meta = copy.deepcopy(value.meta)
                affine = torch.tensor(np.array(source.affine, dtype=np.float64))
                old = value.affine
                if tuple(old.shape) == (4, 4) and tuple(affine.shape) == (3, 3):
                    full = torch.eye(4, dtype=torch.float64)
                    full[np.ix_([0, 1, 3], [0, 1, 3])] = affine
                    affine = full
                meta["affine"] = affine
                d[key] = MetaTensor(back, meta=meta, applied_operations=value.applied_operations)
            return d

    MonaiTransform.__module__ = __name__
    MonaiTransform.__qualname__ = "MonaiTransform"
    return MonaiTransform


# --- TorchIO ----------------------------------------------------------------------------------------

def _make_torchio() -> tuple[type, type]:
    require("torchio", "TorchioTransform")
    import torchio as tio
    from torchio.transforms.augmentation import RandomTransform

    def _write(subject: Any, parts: dict[str, tuple], out: Sample, affine: np.ndarray) -> None:
        for name, (key, tensor, _, _) in parts.items():
            img = subject[key]
            data = out[name]
            if data.dtype != tensor.dtype and not tensor.dtype.is_floating_point:
                data = data.to(tensor.dtype)                               # labels in their input dtype
            img.set_data(data.detach().clone())
            img.affine = affine.copy()

    class DomainaugReplay(tio.Transform):
        """The deterministic record of one ``TorchioTransform`` call in a subject's history: replays
        ``records`` on every image (``invert_transform=False``) or maps every image back onto the
        ``source`` grid (the inverse, from ``subject.apply_inverse_transform()``)."""

        def __init__(self, records: list[dict[str, Any]], source: dict[str, Any], image: str = "image",
                     label: str | None = "label", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.records, self.source, self.image, self.label = records, source, image, label
            self.invert_transform = False
            self.args_names = ["records", "source", "image", "label"]

        def apply_transform(self, subject: Any) -> Any:
            source = _space_from(self.source)
            if not self.invert_transform:
                parts = interop.torchio_parts(subject, self.image, self.label)
                sample = interop.sample_from_parts(parts, "image")
                out = replay(sample, self.records)
                _write(subject, parts, out, np.asarray(out.space.affine))
                return subject
            for img in subject.get_images(intensity_only=False):
                labels = isinstance(img, tio.LabelMap) or _is_label_dtype(img.data)
                img.set_data(invert_records(img.data, source, self.records, labels=labels))
                img.affine = np.asarray(source.affine, dtype=np.float64).copy()
            return subject

    class TorchioTransform(RandomTransform):
        """A domainaug pipeline as a TorchIO transform on a ``Subject``: every ``ScalarImage``
        (INTENSITY) and ``LabelMap`` (LABEL) moves; ``image`` is the ``"image"`` layer (the reference
        grid; images on another grid raise ``SpaceMismatchError``), ``label`` the ``"label"`` layer,
        the others keep their names. The call adds a ``DomainaugReplay`` to the subject's history, so
        ``subject.get_composed_history()`` replays it and ``subject.apply_inverse_transform()`` undoes
        its spatial part."""

        def __init__(self, pipeline: Transform, image: str = "image", label: str | None = "label",
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.pipeline, self.image, self.label = _check(pipeline), image, label

        def apply_transform(self, subject: Any) -> Any:
            seed = int(torch.randint(0, 2**31 - 1, ()).item())
            parts = interop.torchio_parts(subject, self.image, self.label)
            if "image" not in parts:
                raise ParameterError("image", self.image, f"an image of the subject ({sorted(subject.keys())})")
            sample = interop.sample_from_parts(parts, "image")
            out = self.pipeline(sample, generator_for(seed))
            _write(subject, parts, out, np.asarray(out.space.affine))
            records = [r.to_dict() for r in out.history]
            record = DomainaugReplay(records, _space_dict(sample.space), self.image, self.label)
            subject.add_transform(record, record._get_reproducing_arguments())
            subject.domainaug_records = records
            return subject

    for cls in (DomainaugReplay, TorchioTransform):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return TorchioTransform, DomainaugReplay


_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> type:
    """``MonaiTransform`` imports MONAI, ``TorchioTransform``/``DomainaugReplay`` TorchIO, on first use."""
    if name not in _BUILT:
        if name == "MonaiTransform":
            _BUILT[name] = _make_monai()
        elif name in ("TorchioTransform", "DomainaugReplay"):
            _BUILT["TorchioTransform"], _BUILT["DomainaugReplay"] = _make_torchio()
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _BUILT[name]
