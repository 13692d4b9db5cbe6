"""Training integration: a PyTorch ``Dataset`` whose augmentation does not depend on DataLoader
workers, and a ``collate`` that keeps every layer, point set, grid and param record.

Every sample of every epoch gets its own generator from ``(seed, epoch, index)``, so the output
depends neither on ``num_workers`` nor on worker order, and workers never repeat each other's draws.
Call ``set_epoch`` before each epoch, as with a ``DistributedSampler`` (under Lightning, the
``DomainaugEpochs`` callback of ``domainaug.training.lightning`` does it). The epoch lives in a
shared-memory tensor, so it reaches ``persistent_workers=True`` workers too, which hold their own
copy of the dataset: set it before the loader's ``iter()`` of that epoch (items prefetched before
the call keep the epoch they were drawn at).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..core.params import check_positive_int
from ..core.random import generator_for
from ..core.sample import Sample
from ..core.transform import Compose, SpatialTransform, Transform
from ..errors import ParameterError, SampleError
from .stack import stack_samples

__all__ = ["AugmentedDataset", "SharedEpoch", "collate", "with_patch"]

Item = Any   # a Sample, an image path, an (image path, label path) pair, or a {layer name: path} mapping


class SharedEpoch:
    """The epoch of the next draws, kept in shared memory: worker processes that hold a copy of the
    object (DataLoader workers, persistent ones included; nnU-Net's background augmenters) read the
    epoch set in the main process. ``set_epoch`` also drives the ``pipeline``'s schedules."""

    pipeline: Transform

    def _share_epoch(self) -> None:
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        """The epoch of the next draws (``set_epoch``), as every worker process sees it."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next draws; it also drives the pipeline's schedules (curriculum)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ParameterError("epoch", epoch, "a non-negative integer")
        self._epoch.fill_(epoch)
        self.pipeline.set_epoch(epoch)


class AugmentedDataset(SharedEpoch, Dataset):
    """``items`` augmented by ``pipeline``; item ``i`` of epoch ``e`` uses ``generator_for(seed, e, i)``.

    Args:
        items: Samples, image paths, ``(image, label)`` path pairs, or mappings of layer name to
            path(s) (``{"t1": ..., "flair": ..., "label": ...}``; loaded with ``domainaug.io.load``,
            one grid per sample).
        pipeline: Any transform (usually a ``Compose`` or a preset).
        seed: Base seed of the run.
        loader: Optional ``item -> Sample`` for other kinds of items.
        patches: Patches per item and load (MONAI's ``num_samples``): with ``patches=k`` an item is
            loaded once and the pipeline (which should end in a ``Crop``, e.g. ``mode="label"``)
            runs ``k`` times on it, with generators ``(seed, epoch, index * k + j)``; the item is a
            list of ``k`` Samples, and ``collate`` flattens the lists into one batch.
        equivalent_crs: For path items: accept a label whose CRS PROJ calls equal to the image's
            (``domainaug.io.load(..., equivalent_crs=True)``).
        labels: For mapping items: the names of LABEL layers (``domainaug.io.load(..., labels=)``).
    """

    def __init__(self, items: Sequence[Item], pipeline: Transform, seed: int = 0,
                 loader: Callable[[Item], Sample] | None = None, patches: int | None = None, *,
                 equivalent_crs: bool = False, labels: Sequence[str] = ("label",)) -> None:
        if not isinstance(pipeline, Transform):
            raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ParameterError("seed", seed, "a non-negative integer")
        self.patches = None if patches is None else check_positive_int("patches", patches)
        self.items, self.pipeline, self.seed, self.loader = list(items), pipeline, seed, loader
        self.equivalent_crs = bool(equivalent_crs)
        self.labels = (labels,) if isinstance(labels, str) else tuple(labels)
        self._share_epoch()

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Sample:
        item = self.items[index]
        if self.loader is not None:
            return self.loader(item)
        if isinstance(item, Sample):
            return item
        from .. import io as dio
        if isinstance(item, (str, os.PathLike)):
            return dio.load(item)
        if isinstance(item, Mapping):
            return dio.load(item, labels=self.labels, equivalent_crs=self.equivalent_crs)
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return dio.load(item[0], label=item[1], equivalent_crs=self.equivalent_crs)
        raise ParameterError(f"items[{index}]", type(item).__name__, "a Sample, a path, an (image, label) pair or a "
                             "{layer: path} mapping")

    def _stamp(self, sample: Sample, draw: int, epoch: int) -> Sample:
        """Where the sample's draw came from: ``meta["draw"] = [seed, epoch, index]`` (batch-level
        steps such as ``mixing_collate`` derive their own generator from it)."""
        sample.meta["draw"] = [self.seed, epoch, draw]
        return sample

    def __getitem__(self, index: int) -> Sample | list[Sample]:
        epoch = self.epoch                          # read once: the main process may set the next one meanwhile
        if self.pipeline.epoch != epoch:            # a worker process holding an older pipeline copy
            self.pipeline.set_epoch(epoch)
        try:
            sample = self.load(index)
            if self.patches is None:
                return self._stamp(self.pipeline(sample, generator_for(self.seed, epoch, index)), index, epoch)
            return [self._stamp(self.pipeline(sample, generator_for(self.seed, epoch, index * self.patches + j)),
                                index * self.patches + j, epoch) for j in range(self.patches)]
        except Exception as e:                     # name the item: a worker's traceback alone does not
            item = self.items[index]
            what = repr(item) if isinstance(item, (str, os.PathLike, tuple, list)) else type(item).__name__
            raise SampleError(f"item {index} ({what}), epoch {self.epoch}: {type(e).__name__}: {e}") from e


def with_patch(pipeline: Transform, crop: Transform) -> Compose:
    """``pipeline`` with ``crop`` placed right after its leading spatial steps (a preset's
    reorientation, affine, elastic), so the crop fuses with them and only the patch is resampled;
    the steps after it then run on the patch. The order of the steps is kept."""
    steps = list(pipeline.transforms) if isinstance(pipeline, Compose) and pipeline.p == 1.0 else [pipeline]
    lead = next((i for i, t in enumerate(steps) if not isinstance(t, SpatialTransform)), len(steps))
    return Compose(steps[:lead] + [crop] + steps[lead:])


def collate(batch: Sequence[Sample]) -> dict[str, Any]:
    """A batch dict for ``DataLoader(collate_fn=collate)`` that drops nothing a sample holds.

    Keys: every layer name of any sample (``"image"``, ``"label"``, ``"valid"``, ``"occlusion"``,
    ...) stacked to ``(B, C, *spatial)``; ``"present"``: ``{layer: (B,) bool}``, false where a sample
    lacked that layer (its slot then holds the layer's ``fill``; mask the loss with it; a sample
    without a VALID layer is valid everywhere and gets an all-true one); ``"points"``: one
    ``{name: (N, ndim) float64}`` dict per sample (ragged, world units) and ``"points_inside"`` (their
    in-view flags); ``"boxes"``: one ``{name: Boxes}`` dict per sample (ragged, world units, labels in
    step; ``Boxes.to_torchvision(space)`` gives a detection model's targets); ``"affine"``: ``(B, n+1,
    n+1)`` float64 index-to-world of each sample's grid and ``"crs"``: one string or ``None`` per
    sample, to georeference predictions; ``"target"`` when every sample has ``meta["target"]`` (class
    index, or probabilities after MixUp/CutMix); ``"records"``: each sample's param records as
    JSON-ready dicts, so a batch can be replayed or logged. Lists of Samples (``patches=k``) are
    flattened. See ``domainaug.training.stack``."""
    batch = [s for item in batch for s in (item if isinstance(item, list) else [item])]   # patches
    out = stack_samples(batch)
    if all("target" in s.meta for s in batch):      # classification targets (class index or probabilities)
        targets = [s.meta["target"] for s in batch]
        whole = all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in targets)
        out["target"] = torch.tensor([int(t) for t in targets] if whole else targets,
                                     dtype=torch.int64 if whole else torch.float32)
    return out

