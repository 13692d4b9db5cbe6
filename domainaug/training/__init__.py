"""Training integration: a PyTorch ``Dataset`` whose augmentation does not depend on DataLoader
workers and a ``collate`` that keeps everything a sample holds (``dataset``), batch stacking
(``stack``), batched augmentation (``batch``), batch-level mixes (``mix``), test-time augmentation
(``tta``), MONAI/TorchIO adapters (``adapters``, imported on use), the TorchGeo adapter
(``torchgeo.TorchGeoTransform``: reads TorchGeo's sample dicts without importing TorchGeo), and,
imported on use with their extras, the Lightning epoch callback (``lightning``) and the nnU-Net v2
trainer and transform (``nnunet``)."""

from ..core.random import generator_for
from .batch import BatchAugment
from .dataset import AugmentedDataset, collate, with_patch
from .mix import CutMix, MixUp, mixing_collate
from .stack import detection_targets, with_common_valid
from .torchgeo import TorchGeoTransform
from .tta import TestTimeAugmentation

__all__ = ["AugmentedDataset", "collate", "with_common_valid", "with_patch", "TestTimeAugmentation", "BatchAugment",
           "MixUp", "CutMix", "mixing_collate", "generator_for", "detection_targets", "TorchGeoTransform"]
