"""domainaug: augmentation of 3D medical volumes and multispectral rasters, with one fused resampler."""

from .core import (DEFAULT_LABEL_INTERPOLATION, Compose, IntensityTransform, Layer, OneOf, ParamRecord, RandomApply,
                   Role, Sample, Schedule, SomeOf, Space, SpatialTransform, Transform, generator_for, replay, transform_from_dict)
from .errors import NoDataError, ParameterError, ShapeError, SpaceMismatchError
from .intensity import BrightnessContrast, GaussianBlur, GaussianNoise, Gamma, SaltPepper
from .spatial import Affine, Crop, Elastic, Flip, Pad, Resample, Rot90

__version__ = "0.1.0"

__all__ = ["Space", "Layer", "Role", "Sample", "Transform", "SpatialTransform", "IntensityTransform", "ParamRecord",
           "replay", "Compose", "OneOf", "SomeOf", "RandomApply", "Affine", "Elastic", "Flip", "Rot90", "Crop", "Pad",
           "Resample", "Gamma", "BrightnessContrast", "GaussianNoise", "GaussianBlur", "SaltPepper",
           "ParameterError", "ShapeError", "SpaceMismatchError", "NoDataError", "generator_for",
           "transform_from_dict", "DEFAULT_LABEL_INTERPOLATION", "Schedule"]

# The domain modules register their transforms, so that records naming them replay in any process
# (DataLoader workers, Dask workers) after a plain ``import domainaug``.
from . import medical, remote_sensing  # noqa: E402,F401
from .policy import RandAugment, TrivialAugment  # noqa: E402,F401
from .mix import CutMix, MixUp  # noqa: E402,F401
