"""A ``Sample`` to and from a MONAI-style dict of ``MetaTensor``s and a TorchIO ``Subject``.

MONAI's ``MetaTensor.affine`` and TorchIO's ``Image.affine`` map array indices (i, j, k) of voxel
centres to RAS+ mm, as domainaug does, so data and affine pass through unchanged. The libraries
are imported only when these functions are called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..core.sample import Layer, Role, Sample, as_label
from ..core.space import Space
from ..errors import ParameterError, SpaceMismatchError
from ..extras import require

__all__ = ["to_monai", "from_monai", "to_torchio", "from_torchio", "sample_from_parts"]


def _plain(t: Any) -> torch.Tensor:
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)


def _space_of(affine: Any, shape: tuple[int, ...], name: str) -> Space:
    a = np.asarray(_plain(affine).detach().cpu().numpy() if isinstance(affine, torch.Tensor) else affine,
                   dtype=np.float64)
    n = len(shape)
    if a.shape == (4, 4) and n == 2:                               # MONAI keeps 4x4 affines for 2D data
        a = a[np.ix_([0, 1, 3], [0, 1, 3])]
    if a.shape != (n + 1, n + 1):
        raise ParameterError(f"{name}.affine", a.shape, f"a {(n + 1, n + 1)} affine for {n}D data")
    return Space(shape, a)


def to_monai(sample: Sample) -> dict[str, Any]:
    """``{layer name: MetaTensor(data, affine=its grid's affine)}`` for every layer."""
    require("monai", "to_monai")
    from monai.data import MetaTensor
    return {name: MetaTensor(layer.data, affine=torch.tensor(np.array(sample.space_of(name).affine, dtype=np.float64)))
            for name, layer in sample.layers.items()}


def from_monai(data: Mapping[str, Any], image: str = "image", label: str | None = "label",
               valid: str | None = None, *, keys: Sequence[str] = ()) -> Sample:
    """A Sample from a MONAI dict: ``image`` (``(C, *spatial)`` MetaTensor or tensor with an affine),
    optionally ``label`` and a boolean ``valid`` mask on the same grid, and every key of ``keys``
    (e.g. ``["t2", "mask"]``) as a layer of its own name: integer or bool data as LABEL, the rest
    INTENSITY (``domainaug.training.adapters.MonaiTransform`` picks keys for you)."""
    if image not in data:
        raise ParameterError("image", image, f"a key of the dict ({sorted(data)})")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ParameterError("keys", missing, f"keys of the dict ({sorted(data)})")
    roles = {image: ("image", Role.INTENSITY), label: ("label", Role.LABEL), valid: ("valid", Role.VALID)}
    parts: dict[str, tuple] = {}
    for key in [image, label, valid, *keys]:
        if key is None or key not in data or any(p[0] == key for p in parts.values()):
            continue
        t = _plain(data[key])
        name, role = roles.get(key, (key, Role.LABEL if not t.dtype.is_floating_point else Role.INTENSITY))
        if name in parts:
            raise ParameterError("keys", key, f"keys that do not clash with the {name!r} layer")
        parts[name] = (key, t, getattr(data[key], "affine", None), role)
    return sample_from_parts(parts, "image")


def sample_from_parts(parts: Mapping[str, tuple[str, Any, Any, Role]], reference: str) -> Sample:
    """A Sample from ``{layer name: (source key, tensor (C, *spatial), affine or None, role)}``; the
    ``reference`` layer's affine (identity when it has none) gives the space, and every other part
    must lie on that grid (shape, and affine when it has one). LABEL parts go through ``as_label``
    (whole-number floats accepted), VALID parts become bool.

    Raises:
        SpaceMismatchError: a part on another grid, naming its key, the reference key and both shapes.
    """
    ref_key, tensor, affine, _ = parts[reference]
    tensor = _plain(tensor)
    space = _space_of(affine if affine is not None else np.eye(tensor.dim()), tuple(tensor.shape[1:]), ref_key)
    layers = {}
    for name, (key, t, other, role) in parts.items():
        t = _plain(t)
        if tuple(t.shape[1:]) != space.shape or t.dim() != tensor.dim():
            raise SpaceMismatchError(f"{key!r} is on another grid than {ref_key!r}: shape {tuple(t.shape)} vs "
                                     f"{tuple(tensor.shape)}")
        if other is not None and name != reference:
            other_space = _space_of(other, space.shape, key)
            if not other_space.same_grid(space, tolerance=1e-3):
                raise SpaceMismatchError(f"{key!r} is on another grid than {ref_key!r}: "
                                         f"{other_space.differences(space)} ({key} vs {ref_key})")
        data = as_label(key, t) if role is Role.LABEL else t.bool() if role is Role.VALID else t
        layers[name] = Layer(data, role)
    return Sample(space, layers)


def to_torchio(sample: Sample) -> Any:
    """A ``torchio.Subject``: INTENSITY layers as ``ScalarImage``, LABEL (and VALID) as ``LabelMap``."""
    tio = require("torchio", "to_torchio")
    if sample.space.ndim != 3:
        raise ParameterError("sample", sample.space.describe(), "a 3D sample (TorchIO images are 3D)")
    images = {}
    for name, layer in sample.layers.items():
        cls = tio.ScalarImage if layer.role is Role.INTENSITY else tio.LabelMap
        data = layer.data.to(torch.uint8) if layer.role is Role.VALID else layer.data
        images[name] = cls(tensor=data, affine=sample.space_of(name).affine.copy())
    return tio.Subject(**images)


def from_torchio(subject: Any, image: str = "image", label: str | None = "label") -> Sample:
    """A Sample from every image of a ``torchio.Subject``: ``image`` as the ``"image"`` layer, ``label``
    (when present) as ``"label"``, and every other ``ScalarImage`` (INTENSITY) or ``LabelMap`` (LABEL)
    under its own name, all on ``image``'s grid."""
    if image not in subject:
        raise ParameterError("image", image, f"an image of the subject ({sorted(subject.keys())})")
    return sample_from_parts(torchio_parts(subject, image, label), "image")


def torchio_parts(subject: Any, image: str = "image", label: str | None = "label") -> dict[str, tuple]:
    """``{layer name: (subject key, tensor, affine, role)}`` for every image of the subject (see
    ``from_torchio`` for the names).

    Raises:
        ParameterError: a subject key that is also the layer name of another key (``"image"`` or
            ``"label"`` used for a different image).
    """
    tio = require("torchio", "torchio_parts")
    parts: dict[str, tuple] = {}
    for key, img in subject.get_images_dict(intensity_only=False).items():
        name = "image" if key == image else "label" if key == label else key
        if name in parts:
            raise ParameterError("subject", key, f"image names that do not clash with the {name!r} layer "
                                 f"(image={image!r}, label={label!r})")
        role = Role.LABEL if isinstance(img, tio.LabelMap) else Role.INTENSITY
        parts[name] = (key, img.data, np.asarray(img.affine, dtype=np.float64), role)
    return parts
