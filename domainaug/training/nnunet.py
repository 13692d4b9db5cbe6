"""nnU-Net v2: a trainer whose training augmentation is a domainaug pipeline, and the
batchgeneratorsv2 transform behind it for custom trainers.

``nnUNetTrainerDomainaug`` is nnU-Net's default trainer with the augmentation part of
``get_training_transforms`` (spatial transform, noise, blur, brightness, contrast, low resolution,
gamma, mirroring) replaced by one ``DomainaugTransform``; everything nnU-Net needs after it is
nnU-Net's own, taken from its ``get_training_transforms`` as it is: ``MaskImageTransform`` (when
the plans normalise with a mask), ``RemoveLabelTransform(-1, 0)``, the cascade's one-hot
previous-stage transforms, ``ConvertSegmentationToRegionsTransform`` (region training) and
``DownsampleSegForDSTransform`` (deep-supervision targets). Validation transforms, the data loader
(which cuts nnU-Net's enlarged initial patch, foreground oversampling included) and everything else
are unchanged.

The pipeline: the class attribute ``domainaug_pipeline`` of a subclass (a ``Transform``, a preset
name or a pipeline YAML path), else the environment variable ``DOMAINAUG_PIPELINE`` (a preset
name, e.g. ``brain-mri``, or a YAML file such as ``domainaug presets brain-mri`` prints); one of
them is required. ``DOMAINAUG_SEED`` (default 0) is the base seed. Make the trainer discoverable by
``nnUNetv2_train``/``nnUNetv2_predict`` through nnU-Net's external trainer path::

    export nnUNet_extTrainer="$(python -m domainaug.training.nnunet)"
    export DOMAINAUG_PIPELINE=brain-mri
    nnUNetv2_train 1 3d_fullres 0 -tr nnUNetTrainerDomainaug

Units: nnU-Net trains on its preprocessed arrays, resampled to the configuration's ``spacing``
(in the plans, in the array axis order nnU-Net transposed to), so each case is a ``Sample`` on an
axis-aligned grid of that spacing and every mm parameter (translations, elastic control spacing,
blur sigma) means mm. The arrays carry no orientation: world axes are array axes, so
``Reorient`` is a no-op and R/L/A/P/S/I axis names mean nnU-Net's transposed axes, and intensities
are nnU-Net-normalised (z-scores; CT clipped and z-scored): intensity steps that expect raw HU
(``CTWindow``) or magnitudes do not belong in this pipeline.

Randomness: each case's generator is ``generator_for(seed, epoch, k)`` with ``k`` drawn from
NumPy's global generator, which nnU-Net's background workers seed apart and which also places the
patches, so workers never repeat each other's draws. The epoch (for schedules) is set at each
epoch start and reaches the workers through shared memory; nnU-Net's workers prefetch batches, so
an epoch's first batches may come from the previous epoch's schedule.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..extras import require

require("nnunetv2", "domainaug.training.nnunet")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform  # noqa: E402
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms  # noqa: E402
from batchgeneratorsv2.transforms.utils.nnunet_masking import MaskImageTransform  # noqa: E402
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTransform  # noqa: E402
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402

from ..core.params import check_positive_int  # noqa: E402
from ..core.random import generator_for  # noqa: E402
from ..core.sample import Layer, Role, Sample  # noqa: E402
from ..core.space import Space  # noqa: E402
from ..core.transform import Transform  # noqa: E402
from ..errors import ParameterError, ShapeError  # noqa: E402
from ..spatial import Crop  # noqa: E402
from .dataset import SharedEpoch, with_patch  # noqa: E402

__all__ = ["DomainaugTransform", "nnUNetTrainerDomainaug", "TRAINER_PATH", "resolve_pipeline"]

#: The folder to put in ``nnUNet_extTrainer``: one module that imports ``nnUNetTrainerDomainaug``.
TRAINER_PATH = str(Path(__file__).resolve().parent / "nnunet_ext")

_CUDA = torch.device("cuda")     # nnU-Net's default device

#: The first transforms of nnU-Net's training list that are not augmentation: from here on it is kept.
_KEPT_FROM = (MaskImageTransform, RemoveLabelTransform)


def resolve_pipeline(value: str | os.PathLike[str] | Transform) -> Transform:
    """A ``Transform`` as it is, a preset name (medical or remote sensing), or a pipeline YAML file."""
    if isinstance(value, Transform):
        return value
    from .. import medical, remote_sensing
    from ..offline import resolve_pipeline as resolve
    if isinstance(value, str) and value in medical.presets() + remote_sensing.presets():
        return resolve(value, None)
    if isinstance(value, (str, os.PathLike)) and Path(value).is_file():
        return resolve(None, str(value))
    raise ParameterError("pipeline", str(value), "a Transform, a preset name (" + ", ".join(
        sorted(medical.presets() + remote_sensing.presets())) + ") or an existing pipeline YAML file")


class DomainaugTransform(SharedEpoch, BasicTransform):
    """A domainaug pipeline as a batchgeneratorsv2 transform, for nnU-Net's data loaders.

    It takes nnU-Net's per-case ``data_dict`` (``image``: ``(C, *spatial)`` float tensor,
    ``segmentation``: ``(S, *spatial)`` int16 with ``-1`` outside the image), builds a ``Sample`` on
    an axis-aligned grid of ``spacing`` (mm, in the array's axis order: the plans' configuration
    ``spacing``) with the image as one INTENSITY layer (fill 0) and segmentation channel ``k`` as
    LABEL layer ``"label"`` (``k = 0``) or ``"label{k}"`` (fill ``-1``, as nnU-Net pads), runs the
    pipeline and writes the layers back. With ``patch_size`` a centre ``Crop`` of that size is
    placed right after the pipeline's leading spatial steps (``with_patch``), so it fuses with
    them as nnU-Net's own spatial transform crops the enlarged patch after rotating it.

    Args:
        pipeline: The domainaug pipeline.
        spacing: Voxel size in mm per array axis.
        patch_size: The patch the trainer expects, or ``None`` (the pipeline sets the shape).
        seed: Base seed; each call draws ``generator_for(seed, epoch, k)`` with ``k`` from NumPy's
            global generator (``get_parameters`` returns ``{"draw": [seed, epoch, k]}``).
    """

    def __init__(self, pipeline: Transform, spacing: Sequence[float], patch_size: Sequence[int] | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        if not isinstance(pipeline, Transform):
            raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
        self.spacing = tuple(float(s) for s in spacing)
        self.patch_size = None if patch_size is None else tuple(int(p) for p in patch_size)
        if self.patch_size is not None and len(self.patch_size) != len(self.spacing):
            raise ParameterError("patch_size", list(self.patch_size), f"{len(self.spacing)} sizes, one per axis of "
                                 "spacing")
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.pipeline = pipeline if self.patch_size is None else with_patch(pipeline, Crop(self.patch_size,
                                                                                           mode="center"))
        self._share_epoch()                          # nnU-Net's background workers read it

    def get_parameters(self, **data_dict: Any) -> dict[str, Any]:
        return {"draw": [self.seed, self.epoch, int(np.random.randint(0, 2 ** 31 - 1))]}

    def sample(self, image: torch.Tensor, segmentation: torch.Tensor | None) -> Sample:
        """The case as a Sample (see the class docstring)."""
        if image.dim() != len(self.spacing) + 1:
            raise ShapeError(f"image has shape {tuple(image.shape)}; DomainaugTransform with spacing {self.spacing} "
                             f"needs (C, {len(self.spacing)} spatial axes)")
        layers = {"image": Layer(image.float(), Role.INTENSITY, 0.0)}
        if segmentation is not None:
            if tuple(segmentation.shape[1:]) != tuple(image.shape[1:]):
                raise ShapeError(f"segmentation has shape {tuple(segmentation.shape)}; the image is "
                                 f"{tuple(image.shape)}")
            for k in range(segmentation.shape[0]):
                layers["label" if k == 0 else f"label{k}"] = Layer(segmentation[k:k + 1], Role.LABEL, -1)
        return Sample(Space.from_spacing(tuple(image.shape[1:]), self.spacing), layers)

    def apply(self, data_dict: dict[str, Any], **params: Any) -> dict[str, Any]:
        image, segmentation = data_dict["image"], data_dict.get("segmentation")
        seed, epoch, k = params["draw"]
        if self.pipeline.epoch != epoch:             # a worker process holding an older pipeline copy
            self.pipeline.set_epoch(epoch)
        out = self.pipeline(self.sample(image, segmentation), generator_for(seed, epoch, k))
        if self.patch_size is not None and tuple(out.space.shape) != self.patch_size:
            raise ShapeError(f"the pipeline gives shape {tuple(out.space.shape)}; nnU-Net's patch is "
                             f"{self.patch_size} (a spatial step after the patch crop changed it)")
        data_dict["image"] = out["image"].to(image.dtype)
        if segmentation is not None:
            names = ["label" if k == 0 else f"label{k}" for k in range(segmentation.shape[0])]
            data_dict["segmentation"] = torch.cat([out[n] for n in names]).to(segmentation.dtype)
        return data_dict


class nnUNetTrainerDomainaug(nnUNetTrainer):
    """nnU-Net's default trainer with a domainaug pipeline as its training augmentation (see the
    module docstring for what is replaced and what is kept, and how to select the pipeline)."""

    #: A Transform, preset name or YAML path; ``None`` reads ``DOMAINAUG_PIPELINE``.
    domainaug_pipeline: str | Transform | None = None
    #: Base seed; ``None`` reads ``DOMAINAUG_SEED`` (default 0).
    domainaug_seed: int | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        source = self.domainaug_pipeline if self.domainaug_pipeline is not None else \
            os.environ.get("DOMAINAUG_PIPELINE")
        if source is None:
            raise ParameterError("DOMAINAUG_PIPELINE", None, "a preset name or pipeline YAML file in the environment "
                                 "variable (or a subclass's domainaug_pipeline)")
        self.pipeline = resolve_pipeline(source)
        seed = self.domainaug_seed if self.domainaug_seed is not None else os.environ.get("DOMAINAUG_SEED", "0")
        self.seed = check_positive_int("DOMAINAUG_SEED", int(seed), minimum=0)
        self.augmentation: DomainaugTransform | None = None

    def get_training_transforms(self, patch_size: Sequence[int], rotation_for_DA: Any,
                                deep_supervision_scales: Any, mirror_axes: Any, do_dummy_2d_data_aug: bool,
                                use_mask_for_norm: Any = None, is_cascaded: bool = False,
                                foreground_labels: Any = None, regions: Any = None,
                                ignore_label: Any = None) -> BasicTransform:
        nnunet = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        steps = list(nnunet.transforms)
        first = next((i for i, t in enumerate(steps) if isinstance(t, _KEPT_FROM)), None)
        if first is None:
            raise RuntimeError("nnU-Net's training transforms have no RemoveLabelTransform: this nnU-Net version "
                               "builds them differently from the one nnUNetTrainerDomainaug was written for")
        self.augmentation = DomainaugTransform(self.pipeline, self.configuration_manager.spacing, patch_size,
                                               self.seed)
        self.augmentation.set_epoch(self.current_epoch)
        return ComposeTransforms([self.augmentation, *steps[first:]])

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.augmentation is not None:
            self.augmentation.set_epoch(int(self.current_epoch))


if __name__ == "__main__":          # python -m domainaug.training.nnunet: the folder for nnUNet_extTrainer
    print(TRAINER_PATH)
