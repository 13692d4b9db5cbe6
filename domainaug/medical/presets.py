"""Presets per domain: documented pipelines, printable and editable as YAML (``preset(name).to_yaml()``).
Lengths are in mm; each needs a 3D sample."""

from __future__ import annotations

from collections.abc import Callable

from ..core.params import check_choice
from ..core.transform import Compose
from ..intensity import Gamma, GaussianBlur, GaussianNoise
from ..spatial import Affine, Elastic, Flip
from .kspace import Ghosting, Motion, Spike
from .orientation import Reorient
from .physics import BiasField, CTWindow, RicianNoise


def _brain_mri() -> Compose:
    """RAS orientation; rotations up to 10 deg, scaling +-10%, shifts up to 5 mm; a mild elastic
    warp (control points 40 mm apart, up to 4 mm, 30%); bias field (50%), gamma (50%), Rician noise
    (30%), blur up to 1 mm (20%); rare ghosting, spikes and motion (10%, 5%, 10%)."""
    return Compose([
        Reorient("RAS"),
        Affine(degrees=(-10, 10), scales=(0.9, 1.1), translation=(-5, 5)),
        Elastic(spacing=40.0, max_displacement=(0.0, 4.0), p=0.3),
        BiasField(coefficients=(-0.3, 0.3), order=3, p=0.5),
        Gamma(gamma=(0.7, 1.5), p=0.5),
        RicianNoise(std=(0.0, 0.1), p=0.3),
        GaussianBlur(sigma=(0.0, 1.0), p=0.2),
        Ghosting(p=0.1), Spike(p=0.05), Motion(p=0.1),
    ])


def _ct_body() -> Compose:
    """RAS orientation; rotations up to 10 deg, scaling +-10%, left-right flips (50%); elastic warp
    (50 mm control points, up to 5 mm, 30%); HU noise up to 20 HU (30%); an abdomen window with a
    jittered level (+-20 HU) and width (x0.9-1.1), rescaled to [0, 1]."""
    return Compose([
        Reorient("RAS"),
        Affine(degrees=(-10, 10), scales=(0.9, 1.1), translation=(-10, 10)),
        Flip(axes=(0,), p=0.5),
        Elastic(spacing=50.0, max_displacement=(0.0, 5.0), p=0.3),
        GaussianNoise(std=(0.0, 20.0), relative=False, p=0.3),
        CTWindow("abdomen", level_shift=(-20.0, 20.0), width_scale=(0.9, 1.1)),
    ])


def _prostate_mri() -> Compose:
    """Thick-slice T2 (e.g. 0.5x0.5x3.6 mm): RAS; in-plane rotation about the slice axis only (up to
    15 deg, rigid in mm), scaling +-10%; a gentle elastic warp with 30 mm control points;
    bias field (50%), gamma (50%), Rician noise (30%), in-plane blur up to 0.5 mm (20%). The slice
    axis is read from each sample's affine (the world axis of its thickest voxels: S for axial, R
    for sagittal, A for coronal acquisitions), not from the array order."""
    return Compose([
        Reorient("RAS"),
        Affine(degrees={"slice": (-15.0, 15.0)}, scales=(0.9, 1.1)),
        Elastic(spacing=30.0, max_displacement=(0.0, 3.0), p=0.3),
        BiasField(coefficients=(-0.2, 0.2), order=2, p=0.5),
        Gamma(gamma=(0.8, 1.25), p=0.5),
        RicianNoise(std=(0.0, 0.08), p=0.3),
        GaussianBlur(sigma=(0.0, 0.5), axis_scale={"slice": 0.0}, p=0.2),
    ])


_PRESETS: dict[str, Callable[[], Compose]] = {"brain-mri": _brain_mri, "ct-body": _ct_body,
                                                 "prostate-mri": _prostate_mri}


def presets() -> list[str]:
    return sorted(_PRESETS)


def preset(name: str) -> Compose:
    """A fresh pipeline for ``name`` (``presets()`` lists them)."""
    return _PRESETS[check_choice("name", name, presets())]()
