"""The core: space, sample, transform contract, records, randomness and the kernels."""

from .boxes import Boxes
from .random import generator_for
from .record import ParamRecord
from .sample import DEFAULT_LABEL_INTERPOLATION, Layer, Role, Sample
from .schedule import Schedule
from .space import Space
from .transform import (
                        Compose,
                        IntensityTransform,
                        OneOf,
                        RandomApply,
                        SomeOf,
                        SpatialTransform,
                        Transform,
                        replay,
                        transform_from_dict,
)

__all__ = ["Space", "Layer", "Role", "Sample", "ParamRecord", "Transform", "SpatialTransform", "IntensityTransform",
           "Compose", "OneOf", "SomeOf", "RandomApply", "replay", "transform_from_dict", "generator_for",
           "DEFAULT_LABEL_INTERPOLATION", "Schedule", "Boxes"]
