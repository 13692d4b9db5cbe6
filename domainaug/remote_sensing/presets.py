"""Presets: documented pipelines per sensor, printable and editable as YAML (``preset(name).to_yaml()``).

Every preset changes the values of the ``image`` layer only (an index added by ``AppendIndex``, or
any other INTENSITY layer, moves with the spatial steps but keeps its values). Band names are read
from the channels (``bands`` explains which descriptions resolve); unnamed bands and too few bands
are refused with a message saying what is needed.

**Dates.** On a sample with one layer per date (``image_t0``, ``image_t1``, ..., see ``dates``)
every preset moves all dates by the same spatial map and draws its radiometric steps (calibration
drift, haze, noise, clouds) per date, recorded by date layer name.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.params import check_choice
from ..core.transform import Compose
from ..intensity import BrightnessContrast, GaussianBlur, GaussianNoise
from .rotation import RotationPolicy
from .spectral import CloudShadow, Haze, SpectralJitter

__all__ = ["preset", "presets"]


def _satellite(sensor: str, min_bands: int) -> Compose:
    """Dihedral symmetries (exact), a smooth spectral calibration drift (gain 0.93-1.07, bias 1% of
    range, correlated over 200 nm), light haze (30%), sensor noise (30%) and, rarely, clouds with
    shadows that are marked in an ``occlusion`` layer (10%)."""
    return Compose([
        RotationPolicy("dihedral"),
        SpectralJitter(gain=(0.93, 1.07), bias=(-0.01, 0.01), correlation_nm=200.0, sensor=sensor,
                       min_bands=min_bands),
        Haze(strength=(0.0, 0.05), exponent=(1.0, 2.0), sensor=sensor, p=0.3),
        GaussianNoise(std=(0.0, 0.02), layers=["image"], p=0.3, per_layer=None),
        CloudShadow(coverage=(0.02, 0.2), sensor=sensor, p=0.1),
    ])


def _aerial_rgbn() -> Compose:
    """Any-angle rotation (aerial tiles have no preferred orientation; corners become nodata),
    independent per-band gain/bias (camera and illumination differences), brightness/contrast, and
    a mild blur (0-0.5 m) for focus and resampling differences."""
    return Compose([
        RotationPolicy("any"),
        SpectralJitter(gain=(0.9, 1.1), bias=(-0.03, 0.03), sensor="aerial-rgbn", min_bands=4),
        BrightnessContrast(brightness=(-0.05, 0.05), contrast=(0.9, 1.1), layers=["image"], per_layer=None),
        GaussianBlur(sigma=(0.0, 0.5), layers=["image"], p=0.2, per_layer=None),
    ])


_PRESETS: dict[str, Callable[[], Compose]] = {
    "sentinel2": lambda: _satellite("sentinel2", 4),
    "landsat8": lambda: _satellite("landsat8", 4),
    "landsat": lambda: _satellite("landsat8", 4),
    "landsat7": lambda: _satellite("landsat7", 4),
    "aerial-rgbn": _aerial_rgbn,
}


def presets() -> list[str]:
    return sorted(_PRESETS)


def preset(name: str) -> Compose:
    """A fresh pipeline for ``name``; bands are read from channel names (``set_bands`` names them)."""
    return _PRESETS[check_choice("name", name, presets())]()
