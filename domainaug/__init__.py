"""domainaug: augmentation of 3D medical volumes and multispectral rasters, with one fused resampler."""

import logging as _logging
import os as _os

# Numba kernels and torch ops take turns on the same cores. After each parallel torch op, torch's
# OpenMP (libgomp) threads spin for a while by default, and a numba kernel started in that window
# shares the cores with them and runs slower; sleeping instead costs torch nothing measurable on
# volumes (docs/performance.md). libgomp reads this when torch is first imported (import domainaug before torch, or set
# it in the environment). A policy the user chose is kept (OMP_WAIT_POLICY=ACTIVE opts out), and
# processes started later inherit it, the user's own torch code included.
if not any(v in _os.environ for v in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from .core import (
    DEFAULT_LABEL_INTERPOLATION,
    Boxes,
    Compose,
    IntensityTransform,
    Layer,
    OneOf,
    ParamRecord,
    RandomApply,
    Role,
    Sample,
    Schedule,
    SomeOf,
    Space,
    SpatialTransform,
    Transform,
    generator_for,
    replay,
    transform_from_dict,
)
from .errors import NoDataError, ParameterError, ShapeError, SpaceMismatchError
from .inference import sliding_window_inference
from .intensity import (
    BrightnessContrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    NormalizeIntensity,
    RescaleIntensity,
    SaltPepper,
)
from .invert import Invert
from .spatial import (
    Affine,
    Crop,
    CropForeground,
    CropOrPad,
    Elastic,
    Flip,
    Pad,
    RandomResizedCrop,
    Resample,
    ResampleToMatch,
    Rot90,
)

__version__ = "0.1.0"

# The library logs through the "domainaug" logger hierarchy and never prints; the application (the
# domainaug command, or yours) installs handlers and sets the level.
_logging.getLogger("domainaug").addHandler(_logging.NullHandler())

__all__ = ["Space", "Layer", "Role", "Sample", "Transform", "SpatialTransform", "IntensityTransform", "ParamRecord",
           "replay", "Compose", "OneOf", "SomeOf", "RandomApply", "Affine", "Elastic", "Flip", "Rot90", "Crop", "Pad",
           "CropForeground", "CropOrPad", "RandomResizedCrop",
           "Resample", "ResampleToMatch", "Gamma", "BrightnessContrast", "GaussianNoise", "GaussianBlur", "SaltPepper",
           "NormalizeIntensity", "RescaleIntensity",
           "ParameterError", "ShapeError", "SpaceMismatchError", "NoDataError", "generator_for",
           "transform_from_dict", "DEFAULT_LABEL_INTERPOLATION", "Schedule", "Invert",
           "sliding_window_inference", "Boxes"]

# The domain modules register their transforms, so that records naming them replay in any process
# (DataLoader workers, Dask workers) after a plain ``import domainaug``.
from . import medical, remote_sensing  # noqa: E402,F401 - after the thread policy; registers their transforms
from .policy import RandAugment, TrivialAugment  # noqa: E402,F401 - public names, after the policy
from .training.mix import CutMix, MixUp  # noqa: E402,F401 - public names, after the policy
