"""MixUp and CutMix: augmentations of a *batch*, mixing each sample with a partner from it.

Both take a list of Samples of one grid shape and orientation (the output of a pipeline, before
``collate``; origins and voxel sizes may differ: patches from anywhere, other subjects, scans at
other resolutions) and return the mixed list, voxel by voxel; each mixed output is on the space of
its own sample (``samples[i]``: its origin, voxel size and points), its partner's voxels taken as
they are; each output gets a ``ParamRecord`` (``{"partner": j, "lam": ...}``) in its history,
and ``replay(samples, params)`` rebuilds the outputs from the input batch and those params.

Targets:
- **segmentation** (a LABEL layer, ``label``): CutMix pastes the same box into image, label and
  validity, so labels stay hard; MixUp makes the label a soft one-hot map ``(num_classes, ...)``
  float32 (an INTENSITY layer: use a soft Dice or cross-entropy).
- **classification** (``sample.meta["target"]``: a class index or a list of class probabilities):
  the target becomes the list of mixed class probabilities.

Layers that not every sample of the batch has (e.g. CloudShadow's ``occlusion``, added only when
it fires) are dropped here (``collate`` keeps them, marked in ``batch["present"]``); a VALID layer
on some samples (e.g. only those a rotation turned) is instead given to all, all-true where there
was none.

Boxes (``Sample.boxes``): MixUp keeps the boxes of both samples (detection MixUp); CutMix keeps a
sample's boxes less the pasted block and adds the partner's clipped to it, visibility reduced by the
share each lost (the sets' ``min_visibility``/``min_size`` apply).

Nodata (a VALID layer): MixUp keeps a pixel valid only where both inputs are; CutMix takes the
partner's validity inside the box, and its class-target weight is the share of *valid* output
pixels that came from each sample (a box over the partner's nodata border weighs nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..core.boxes import Boxes, cut_boxes, join_boxes, move_boxes
from ..core.params import check_positive_int, to_json
from ..core.random import generator_for
from ..core.record import ParamRecord
from ..core.sample import Layer, Role, Sample
from ..core.space import Space
from ..core.values import cast
from ..errors import ParameterError, SampleError, SpaceMismatchError
from .dataset import collate as default_collate
from .stack import with_common_valid

__all__ = ["MixUp", "CutMix", "mixing_collate"]


class _Mix:
    """Shared driving of batch mixes: checks, partner draw, records, replay."""

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, label: str = "label") -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ParameterError("alpha", alpha, "a number > 0 (the Beta(alpha, alpha) shape)")
        self.alpha = float(alpha)
        self.num_classes = None if num_classes is None else check_positive_int("num_classes", num_classes, 2)
        self.label = label

    def config(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "num_classes": self.num_classes, "label": self.label}

    def _draw(self, sample: Sample, partner: int, generator: torch.Generator) -> dict[str, Any]:
        """One sample's params given its partner (each mix draws its own)."""
        raise NotImplementedError

    def _mix(self, a: Sample, b: Sample, p: dict[str, Any]) -> Sample:
        """Sample ``a`` mixed with its partner ``b`` by ``p`` (each mix has its own)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    def _lam(self, generator: torch.Generator) -> float:
        """A Beta(alpha, alpha) draw from the explicit generator (inverse CDF of a uniform)."""
        from scipy import stats  # slow to import: only when a mix first draws
        u = torch.rand((), generator=generator, dtype=torch.float64).item()
        return float(stats.beta.ppf(u, self.alpha, self.alpha))

    def _check(self, samples: Sequence[Sample]) -> list[Sample]:
        samples = list(samples)
        if not samples or not all(isinstance(s, Sample) for s in samples):
            raise ParameterError("samples", type(samples).__name__, "a non-empty list of Samples")
        many = sorted({n for s in samples for n in s.grids})
        if many:
            raise SampleError(f"{type(self).__name__} mixes samples on one grid, and layers {many} are on grids of "
                              "their own; put ResampleToMatch(target=...) at the end of the pipeline")
        first = samples[0]
        for i, s in enumerate(samples[1:], 1):     # voxel sizes may differ: patches of scans at other resolutions
            turned = np.abs(s.space.direction - first.space.direction).max()
            if s.space.shape != first.space.shape or turned > 1e-4:
                raise SpaceMismatchError(f"{type(self).__name__}: samples[{i}] is on {s.space.describe()}, samples[0] "
                                         f"on {first.space.describe()} ({first.space.differences(s.space)}); mixing "
                                         "needs one grid shape and orientation (crop, pad or reorient first)")
        samples = with_common_valid(samples)          # nodata marked on some samples stays marked
        common = [n for n in samples[0].layer_names() if all(n in s.layer_names() for s in samples)]
        if "image" not in common:
            raise SpaceMismatchError(f"{type(self).__name__}: every sample needs an 'image' layer")
        return [s if len(s.layer_names()) == len(common) else s.replace(layers={n: s.layers[n] for n in common})
                for s in samples]

    def sample_params(self, samples: Sequence[Sample], generator: torch.Generator) -> list[dict[str, Any]]:
        """One dict per sample: its partner and the mixing weight (and box, for CutMix)."""
        partners = torch.randperm(len(samples), generator=generator).tolist()
        return [self._draw(samples[0], j, generator) for j in partners]

    def __call__(self, samples: Sequence[Sample], generator: torch.Generator | None = None) -> list[Sample]:
        samples = self._check(samples)
        if generator is None:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        return self.replay(samples, self.sample_params(samples, generator))

    def replay(self, samples: Sequence[Sample], params: Sequence[dict[str, Any]]) -> list[Sample]:
        """The mixed batch from the input batch and one params dict per sample (e.g. from records)."""
        samples = self._check(samples)
        if len(params) != len(samples):
            raise ParameterError("params", f"{len(params)} dicts", f"{len(samples)} (one per sample)")
        outs = []
        for i, p in enumerate(params):
            p = dict(p)
            j = p["partner"]
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(samples):
                raise ParameterError(f"params[{i}]['partner']", j, f"a sample index in [0, {len(samples) - 1}]")
            out = self._mix(samples[i], samples[j], p)
            out.history = list(samples[i].history) + [ParamRecord(type(self).__name__, to_json(self.config()), dict(p))]
            outs.append(out)
        return outs

    # --- targets -------------------------------------------------------------------------------
    def _classes(self, what: str) -> int:
        if self.num_classes is None:
            raise ParameterError("num_classes", None, f"the number of classes, to make soft {what}")
        return self.num_classes

    def _soft_target(self, target: Any) -> torch.Tensor:
        t = torch.as_tensor(target, dtype=torch.float64)
        if t.dim() == 0:
            k = self._classes("class targets")
            if not 0 <= int(t) < k or float(t) != int(t):
                raise ParameterError("meta['target']", target, f"a class index in [0, {k - 1}] or a probability list")
            return torch.nn.functional.one_hot(t.long(), k).double()
        if self.num_classes is not None and len(t) != self.num_classes:
            raise ParameterError("meta['target']", target, f"{self.num_classes} class probabilities")
        return t

    def _mix_targets(self, a: Sample, b: Sample, weight: float) -> dict[str, Any]:
        meta = dict(a.meta)
        if "target" in a.meta:
            if "target" not in b.meta:
                raise ParameterError("meta['target']", "missing on the partner", "a target on every sample")
            meta["target"] = (weight * self._soft_target(a.meta["target"]) +
                              (1 - weight) * self._soft_target(b.meta["target"])).tolist()
        return meta


def _one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """A ``(1, *spatial)`` label map as a float ``(k, *spatial)`` one-hot map."""
    return torch.nn.functional.one_hot(labels[0].long(), k).movedim(-1, 0).float()


class MixUp(_Mix):
    """Convex combination of each sample with a partner: ``lam * a + (1 - lam) * b``,
    ``lam ~ Beta(alpha, alpha)`` (Zhang et al. 2018).

    Args:
        alpha: Beta shape; small values keep most samples nearly unmixed.
        num_classes: Needed for soft labels (segmentation maps, class-index targets).
        label: The LABEL layer made soft.

    Params per sample: ``{"partner": j, "lam": lam}``.
    """

    def _draw(self, sample: Sample, partner: int, generator: torch.Generator) -> dict[str, Any]:
        return {"partner": partner, "lam": self._lam(generator)}

    def _mix(self, a: Sample, b: Sample, p: dict[str, Any]) -> Sample:
        lam = float(p["lam"])
        la, lb = a.layers, b.layers
        valid = None
        if a.valid_name is not None:
            valid = la[a.valid_name].data & lb[a.valid_name].data
        layers: dict[str, Layer] = {}
        for name, layer in la.items():
            other = lb[name].data
            if layer.role is Role.VALID:      # the one VALID layer (one grid), so its AND is ``valid``
                layers[name] = replace(layer, data=layer.data & other)
            elif layer.role is Role.LABEL:
                if name != self.label:
                    raise ParameterError("label", self.label, f"the name of the only LABEL layer to mix ({name!r} too)")
                if layer.data.shape[0] != 1 or other.shape[0] != 1:
                    raise ParameterError("label", name, f"a label layer of one channel for MixUp's soft one-hot map; "
                                         f"{name!r} has {max(layer.data.shape[0], other.shape[0])}")
                k = self._classes("label maps")
                if int(max(layer.data.max(), other.max())) >= k:
                    raise ParameterError("num_classes", k, f"more than the largest label value "
                                         f"({int(max(layer.data.max(), other.max()))})")
                soft = lam * _one_hot(layer.data, k) + (1 - lam) * _one_hot(other, k)
                layers[name] = Layer(soft, Role.INTENSITY, 0.0, tuple(f"class{c}" for c in range(k)))
            else:
                mixed = lam * layer.data.double() + (1 - lam) * other.double()
                if valid is not None:
                    mixed = torch.where(valid, mixed, torch.full_like(mixed, layer.fill))
                layers[name] = replace(layer, data=cast(mixed, layer.data.dtype))
        return a.replace(layers=layers, meta=self._mix_targets(a, b, lam), boxes=_mixed_boxes(a, b, None))


def _mixed_boxes(a: Sample, b: Sample, block: Space | None) -> dict[str, Boxes]:
    """The boxes of a mix of ``a`` with partner ``b``, whose content lands voxel for voxel on ``a``'s
    grid: ``b``'s boxes moved onto it. MixUp (``block`` None) keeps both sets, as detection MixUp
    does; CutMix keeps ``a``'s boxes less the pasted ``block`` and ``b``'s clipped to it, each with
    its visibility reduced by the share it lost (and the sets' filters applied)."""
    if not a.boxes and not b.boxes:
        return {}
    onto = [b.space.affine @ a.space.inverse]                 # pull-back: a's world -> b's world (voxel for voxel)
    out: dict[str, Boxes] = {}
    for name in dict.fromkeys([*a.boxes, *b.boxes]):
        mine = a.boxes.get(name)
        theirs = move_boxes(b.boxes[name], onto, a.space if block is None else block) if name in b.boxes else None
        if mine is not None and block is not None:
            mine = cut_boxes(mine, block)
        if mine is not None and theirs is not None:
            out[name] = join_boxes(mine, theirs, f"boxes[{name!r}]")
        elif mine is not None:
            out[name] = mine
        elif theirs is not None:
            out[name] = theirs
    return out


class CutMix(_Mix):
    """Paste a box of the partner into each sample (Yun et al. 2019): a rectangle for rasters, a
    cuboid for volumes, covering a ``1 - lam`` share of the grid, ``lam ~ Beta(alpha, alpha)``.
    Every layer gets the same box, so labels stay hard and exactly aligned with the image.

    Params per sample: ``{"partner": j, "start": [...], "size": [...], "lam": weight of the sample
    itself in the class target}``.
    """

    def _draw(self, sample: Sample, partner: int, generator: torch.Generator) -> dict[str, Any]:
        shape = np.array(sample.space.shape)
        share = 1.0 - self._lam(generator)
        size = np.clip(np.round(shape * share ** (1.0 / len(shape))), 0, shape).astype(int)
        start = [int(torch.randint(0, int(n - s) + 1, (), generator=generator).item()) for n, s in zip(shape, size)]
        return {"partner": partner, "start": start, "size": size.tolist(), "lam": None}

    def _mix(self, a: Sample, b: Sample, p: dict[str, Any]) -> Sample:
        start, size = p["start"], p["size"]
        shape = a.space.shape
        if len(start) != len(shape) or len(size) != len(shape) or any(
                not (0 <= s and 0 <= n and s + n <= m) for s, n, m in zip(start, size, shape)):
            raise ParameterError("params['start']", start, f"a box of size {size} inside the grid {shape}")
        box = (slice(None),) + tuple(slice(s, s + n) for s, n in zip(start, size))
        layers = {}
        for name, layer in a.layers.items():
            data = layer.data.clone()
            data[box] = b[name][box]
            layers[name] = replace(layer, data=data)
        inside = torch.zeros((1,) + tuple(shape), dtype=torch.bool)
        inside[box] = True
        if a.valid_name is not None:
            valid = layers[a.valid_name].data.cpu()
            from_a, total = int((valid & ~inside).sum()), int(valid.sum())
            lam = from_a / total if total else 1.0
        else:
            lam = 1.0 - float(inside.sum()) / inside.numel()
        if p.get("lam") is None:
            p["lam"] = lam
        block = a.space.with_grid(list(size), a.space.affine @ _shift(start))
        boxes = _mixed_boxes(a, b, block) if all(size) else dict(a.boxes)
        return a.replace(layers=layers, meta=self._mix_targets(a, b, lam), boxes=boxes)


def _shift(start: Sequence[int]) -> np.ndarray:
    out = np.eye(len(start) + 1)
    out[:-1, -1] = start
    return out


def mixing_collate(mix: Callable[[list[Sample], torch.Generator], list[Sample]], seed: int = 0,
                   collate: Callable[[list[Sample]], Any] | None = None) -> Callable[[list[Any]], Any]:
    """A ``DataLoader`` ``collate_fn`` that mixes each batch (``MixUp``, ``CutMix``, or any batch op
    called as ``mix(samples, generator)``, e.g. ``medical.LesionPaste`` with the batch as donors),
    then collates it. The batch's generator comes from ``seed``, the samples' ``meta["draw"]``
    (seed, epoch, index, set by ``AugmentedDataset``) and their records, so it differs per batch
    and epoch and does not depend on worker count or order."""
    import hashlib
    import json
    finish = collate or default_collate

    def collate_fn(batch: list[Any]) -> Any:
        samples = [s for item in batch for s in (item if isinstance(item, list) else [item])]
        key = [[s.meta.get("draw"), [r.to_dict() for r in s.history]] for s in samples]   # draw: (seed, epoch, index)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).digest()
        generator = generator_for(seed, 0, int.from_bytes(digest[:7], "little"))
        return finish(mix(samples, generator))

    return collate_fn
