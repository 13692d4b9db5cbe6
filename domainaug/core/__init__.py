"""The core: space, sample, transform contract, records, randomness and the kernels."""

from .record import ParamRecord
from .sample import DEFAULT_LABEL_INTERPOLATION, Layer, Role, Sample
from .space import Space
from .transform import (Compose, IntensityTransform, OneOf, RandomApply, SomeOf, SpatialTransform, Transform, replay,
                        transform_from_dict)
from .random import generator_for
from .schedule import Schedule

__all__ = ["Space", "Layer", "Role", "Sample", "ParamRecord", "Transform", "SpatialTransform", "IntensityTransform",
           "Compose", "OneOf", "SomeOf", "RandomApply", "replay", "transform_from_dict", "generator_for",
           "DEFAULT_LABEL_INTERPOLATION", "Schedule"]
