"""Use a domainaug pipeline inside MONAI and TorchIO pipelines.

- ``MonaiTransform``: a MONAI ``Randomizable`` dict transform. Its generator seeds come from MONAI's
  own random state, so ``monai.utils.set_determinism`` and ``monai.data.DataLoader``'s worker seeding
  apply; keys hold ``MetaTensor``s whose affines are kept and updated.
- ``TorchioTransform``: a TorchIO ``Transform`` on a ``Subject``; its seeds come from torch's global
  generator, as every TorchIO random transform's do.
The param records of the last call are on the output: a JSON string under the ``"domainaug_records"``
key (a string, so that MONAI's default collate batches it whatever the records hold, ``None`` included;
``json.loads`` it to replay) and a list of dicts in the subject's ``domainaug_records`` attribute.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from ..core.random import generator_for
from ..core.transform import Transform
from ..errors import ParameterError
from ..io import interop

__all__ = ["MonaiTransform", "TorchioTransform"]


def _check(pipeline: Any) -> Transform:
    if not isinstance(pipeline, Transform):
        raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
    return pipeline


def _monai_base():
    from monai.transforms import MapTransform, Randomizable
    return MapTransform, Randomizable


class MonaiTransform(*_monai_base()):  # type: ignore[misc]
    """A domainaug pipeline as a MONAI dict transform on ``image_key`` (and ``label_key``)."""

    def __init__(self, pipeline: Transform, image_key: str = "image", label_key: str | None = "label") -> None:
        keys = [image_key] + ([label_key] if label_key else [])
        super().__init__(keys, allow_missing_keys=True)
        self.pipeline, self.image_key, self.label_key = _check(pipeline), image_key, label_key
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        from monai.data import MetaTensor
        self.randomize()
        sample = interop.from_monai(data, image=self.image_key, label=self.label_key)
        out = self.pipeline(sample, generator_for(self._seed))
        result = dict(data)
        affine = torch.as_tensor(out.space.affine, dtype=torch.float64)
        result[self.image_key] = MetaTensor(out["image"], affine=affine.clone())
        if self.label_key and "label" in out.layer_names():
            result[self.label_key] = MetaTensor(out["label"], affine=affine.clone())
        result["domainaug_records"] = json.dumps([r.to_dict() for r in out.history])
        return result


def _torchio_base():
    import torchio as tio
    return tio.Transform


class TorchioTransform(_torchio_base()):  # type: ignore[misc]
    """A domainaug pipeline as a TorchIO transform on a ``Subject``'s ``image`` (and ``label``)."""

    def __init__(self, pipeline: Transform, image: str = "image", label: str | None = "label", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline, self.image, self.label = _check(pipeline), image, label

    def apply_transform(self, subject: Any) -> Any:
        import torchio as tio
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        label = self.label if self.label in subject else None
        sample = interop.from_torchio(subject, image=self.image, label=label)
        out = self.pipeline(sample, generator_for(seed))
        affine = np.asarray(out.space.affine)
        subject[self.image] = tio.ScalarImage(tensor=out["image"], affine=affine.copy())
        if label is not None:
            subject[label] = tio.LabelMap(tensor=out["label"], affine=affine.copy())
        subject.domainaug_records = [r.to_dict() for r in out.history]
        return subject


