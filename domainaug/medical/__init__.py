"""Medical imaging: MR/CT physics and artefacts, canonical orientation, synthesis for rare classes, presets.

Built on the core only: every transform is a core ``Transform``; spatial ones go through the one
resampler. Lengths are in mm.
"""

from .artefacts import CoarseDropout, HistogramShift, Swap
from .contrast import FieldStrength, IntensityScale, SimulateLowResolution, TissueContrast, robust_range
from .kspace import Ghosting, GibbsRinging, Motion, Spike
from .orientation import Reorient
from .physics import CT_WINDOWS, BiasField, CTWindow, RicianNoise
from .presets import preset, presets
from .synthesis import GenerativeSynthesis, LabelsToImage, LesionPaste, region_mask

__all__ = ["preset", "presets", "BiasField", "RicianNoise", "CTWindow", "CT_WINDOWS", "Spike", "Ghosting", "Motion",
           "Reorient", "IntensityScale", "TissueContrast", "SimulateLowResolution", "FieldStrength", "robust_range",
           "GibbsRinging", "Swap", "HistogramShift", "CoarseDropout", "LabelsToImage", "LesionPaste",
           "GenerativeSynthesis", "region_mask"]
