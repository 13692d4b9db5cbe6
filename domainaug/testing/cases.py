"""Contract cases for the core transforms."""

from __future__ import annotations

from .. import (Affine, BrightnessContrast, Compose, Crop, Elastic, Flip, Gamma, GaussianBlur, GaussianNoise, OneOf,
                Pad, RandomApply, Resample, ResampleToMatch, Rot90, SaltPepper, SomeOf)
import nibabel.orientations as nio

from ..medical import (BiasField, CTWindow, FieldStrength, Ghosting, IntensityScale, Motion, Reorient, RicianNoise,
                       SimulateLowResolution, Spike, TissueContrast)
from ..policy import RandAugment, TrivialAugment
from ..remote_sensing import AppendIndex, BandDropout, CloudShadow, Haze, RotationPolicy, SpectralJitter
from . import Case, register_case

RASTER = ("raster-nodata",)
VOLUMES = ("volume", "oblique-int16")

register_case("Affine", Case(
    random=lambda s: Affine(degrees=(-25, 25), scales=(0.85, 1.15), shear=(-0.1, 0.1), translation=(-3, 3)),
    identity=lambda s: Affine(),
    bad=[("scales", lambda: Affine(scales=(0, 1))), ("degrees", lambda: Affine(degrees=(10, -10))),
         ("p", lambda: Affine(p=1.5))]))
register_case("Elastic", Case(
    random=lambda s: Elastic(max_displacement=float(s.space.spacing.max()) * 1.5),
    identity=lambda s: Elastic(max_displacement=0.0),
    bad=[("spacing", lambda: Elastic(spacing=-1)), ("max_displacement", lambda: Elastic(max_displacement=(-1, 2)))]))
register_case("Flip", Case(
    random=lambda s: Flip(axes=(0, -1)), identity=lambda s: Flip(axes=()),
    bad=[("axes", lambda: Flip(axes="x")), ("axes", lambda: Flip(axes=(0, 0)))]))
register_case("Rot90", Case(
    random=lambda s: Rot90(axes=(0, 1)), identity=lambda s: Rot90(k=0),
    bad=[("axes", lambda: Rot90(axes=(0,))), ("k", lambda: Rot90(k="one"))]))
register_case("Crop", Case(
    random=lambda s: Crop(tuple(max(1, d - 4) for d in s.space.shape)),
    identity=lambda s: Crop(s.space.shape, mode="center"),
    bad=[("size", lambda: Crop(0)), ("mode", lambda: Crop(4, mode="middle")),
         ("ratios", lambda: Crop(4, mode="label", ratios=[0, 0])), ("ratios", lambda: Crop(4, ratios=[1, -1]))]))
register_case("Pad", Case(
    random=lambda s: Pad(tuple(d + 3 for d in s.space.shape)), identity=lambda s: Pad(1),
    bad=[("size", lambda: Pad((4, -1)))]))
register_case("Resample", Case(
    random=lambda s: Resample(float(s.space.spacing.min()) * 1.3),
    identity=lambda s: Resample(s.space.spacing.tolist()),
    bad=[("spacing", lambda: Resample(0)), ("spacing", lambda: Resample([])), ("spacing", lambda: Resample()),
         ("spacing", lambda: Resample(1.0, target="image"))]))
register_case("ResampleToMatch", Case(          # one grid: the target is the sample's grid (tests/test_many_grids.py)
    random=lambda s: ResampleToMatch("label"), identity=lambda s: ResampleToMatch("label"),
    bad=[("target", lambda: ResampleToMatch(3))]))
register_case("Gamma", Case(
    random=lambda s: Gamma((0.5, 2.0)), identity=lambda s: Gamma(1.0),
    bad=[("gamma", lambda: Gamma(0)), ("layers", lambda: Gamma(layers="image"))]))
register_case("BrightnessContrast", Case(
    random=lambda s: BrightnessContrast((-0.2, 0.2), (0.7, 1.3)), identity=lambda s: BrightnessContrast(0.0, 1.0),
    bad=[("contrast", lambda: BrightnessContrast(contrast=-1))]))
register_case("GaussianNoise", Case(
    random=lambda s: GaussianNoise((0.05, 0.2)), identity=lambda s: GaussianNoise(0.0),
    bad=[("std", lambda: GaussianNoise(-0.1))]))
register_case("GaussianBlur", Case(
    random=lambda s: GaussianBlur((0.5, 2.0)), identity=lambda s: GaussianBlur(0.0),
    bad=[("sigma", lambda: GaussianBlur(-1))]))
register_case("SaltPepper", Case(
    random=lambda s: SaltPepper((0.01, 0.05)), identity=lambda s: SaltPepper(0.0),
    bad=[("amount", lambda: SaltPepper(1.5))]))
register_case("Compose", Case(
    random=lambda s: Compose([Affine(degrees=(-10, 10)), Elastic(), Flip(axes=(0,), p=0.5), Gamma((0.8, 1.2))]),
    identity=lambda s: Compose([Affine(), Flip(axes=())]),
    bad=[("transforms", lambda: Compose([1]))], moves_points=True))
register_case("OneOf", Case(
    random=lambda s: OneOf([Affine(degrees=(-20, 20)), Elastic()]), identity=lambda s: OneOf([Affine()]),
    bad=[("weights", lambda: OneOf([Affine()], weights=[-1])), ("transforms", lambda: OneOf([]))]))
register_case("SomeOf", Case(
    random=lambda s: SomeOf([Affine(degrees=(-20, 20)), Flip(axes=(0,)), Gamma()], n=(1, 3)),
    identity=lambda s: SomeOf([Affine()], n=1),
    bad=[("n", lambda: SomeOf([Affine()], n=3))]))
register_case("RandomApply", Case(
    random=lambda s: RandomApply([Affine(degrees=(-20, 20)), Gamma()], p=0.7),
    identity=lambda s: RandomApply([Affine()], p=1.0),
    bad=[("p", lambda: RandomApply([Affine()], p=-0.1))]))
register_case("SpectralJitter", Case(
    random=lambda s: SpectralJitter(gain=(0.8, 1.2), bias=(-0.05, 0.05), correlation_nm=150.0),
    identity=lambda s: SpectralJitter(gain=1.0, bias=0.0),
    bad=[("gain", lambda: SpectralJitter(gain=0)), ("bands", lambda: SpectralJitter(bands="B1")),
         ("sensor", lambda: SpectralJitter(sensor="spot9"))], kinds=RASTER))
register_case("Haze", Case(
    random=lambda s: Haze(strength=(0.05, 0.2)), identity=lambda s: Haze(strength=0.0),
    bad=[("strength", lambda: Haze(strength=-1)), ("exponent", lambda: Haze(exponent=20))], kinds=RASTER))
register_case("BandDropout", Case(
    random=lambda s: BandDropout(max_bands=2), identity=lambda s: BandDropout(p=0.0),
    bad=[("max_bands", lambda: BandDropout(0)), ("value", lambda: BandDropout(value="nan"))], kinds=RASTER))
register_case("CloudShadow", Case(
    random=lambda s: CloudShadow(coverage=(0.1, 0.4)), identity=lambda s: CloudShadow(coverage=0.0),
    bad=[("coverage", lambda: CloudShadow(coverage=1.5)), ("shadow_shift", lambda: CloudShadow(shadow_shift=-1))],
    kinds=RASTER))
register_case("AppendIndex", Case(
    random=lambda s: AppendIndex("NDVI"), identity=lambda s: AppendIndex("NDWI"),
    bad=[("index", lambda: AppendIndex("XYZ"))], kinds=RASTER))
register_case("RotationPolicy", Case(
    random=lambda s: RotationPolicy("dihedral"), identity=lambda s: RotationPolicy("none"),
    bad=[("policy", lambda: RotationPolicy("sometimes")), ("axes", lambda: RotationPolicy(axes=(0,)))]))
register_case("BiasField", Case(
    random=lambda s: BiasField((-0.5, 0.5)), identity=lambda s: BiasField(0.0),
    bad=[("coefficients", lambda: BiasField(10.0)), ("order", lambda: BiasField(order=0))]))
register_case("RicianNoise", Case(
    random=lambda s: RicianNoise((0.05, 0.2)), identity=lambda s: RicianNoise(0.0),
    bad=[("std", lambda: RicianNoise(-1.0))]))
register_case("CTWindow", Case(
    random=lambda s: CTWindow("brain", level_shift=(100.0, 200.0), width_scale=(0.5, 2.0), rescale=False),
    identity=lambda s: CTWindow((0.0, 1e9), rescale=False),
    bad=[("window", lambda: CTWindow("kidney")), ("width_scale", lambda: CTWindow(width_scale=0.0))]))
register_case("Spike", Case(
    random=lambda s: Spike((0.1, 0.3), num_spikes=2), identity=lambda s: Spike(0.0),
    bad=[("num_spikes", lambda: Spike(num_spikes=0)), ("intensity", lambda: Spike(-1.0))]))
register_case("Ghosting", Case(
    random=lambda s: Ghosting((2, 4), intensity=(0.5, 0.9)), identity=lambda s: Ghosting(intensity=0.0),
    bad=[("num_ghosts", lambda: Ghosting(num_ghosts=1)), ("intensity", lambda: Ghosting(intensity=2.0))]))
register_case("Motion", Case(
    random=lambda s: Motion((-5.0, 5.0), (-3.0, 3.0)), identity=lambda s: Motion(0.0, 0.0),
    bad=[("num_movements", lambda: Motion(num_movements=0)), ("axis", lambda: Motion(axis="x"))]))
register_case("Reorient", Case(
    random=lambda s: Reorient("PIR"), identity=lambda s: Reorient("".join(nio.aff2axcodes(s.space.affine))),
    bad=[("orientation", lambda: Reorient("RAX")), ("orientation", lambda: Reorient("RRS"))], kinds=VOLUMES))
register_case("IntensityScale", Case(
    random=lambda s: IntensityScale((0.8, 1.2), (-0.1, 0.1)), identity=lambda s: IntensityScale(1.0, 0.0),
    bad=[("gain", lambda: IntensityScale(gain=0)), ("units", lambda: IntensityScale(units="bits"))]))
register_case("TissueContrast", Case(
    random=lambda s: TissueContrast((0.7, 1.3)), identity=lambda s: TissueContrast(1.0),
    bad=[("smoothing", lambda: TissueContrast(smoothing=-1)), ("gain", lambda: TissueContrast(gain=0))]))
register_case("SimulateLowResolution", Case(
    random=lambda s: SimulateLowResolution((2 * float(s.space.spacing[-1]), 4 * float(s.space.spacing[-1]))),
    identity=lambda s: SimulateLowResolution(float(s.space.spacing[-1])),
    bad=[("spacing", lambda: SimulateLowResolution(0)), ("axes", lambda: SimulateLowResolution(axes="z"))]))
register_case("FieldStrength", Case(
    random=lambda s: FieldStrength(3.0, 1.5), identity=lambda s: FieldStrength(1.5, 1.5),
    bad=[("source", lambda: FieldStrength(source=0)), ("noise", lambda: FieldStrength(noise=-1))]))
register_case("RandAugment", Case(
    random=lambda s: RandAugment(n=3, magnitude=8, ops="remote_sensing" if s.space.ndim == 2 else "medical"),
    identity=lambda s: RandAugment(n=2, magnitude=0, ops=["identity"]),
    bad=[("magnitude", lambda: RandAugment(magnitude=11)), ("ops", lambda: RandAugment(ops=["warp"])),
         ("n", lambda: RandAugment(n=-1))]))
register_case("TrivialAugment", Case(
    random=lambda s: TrivialAugment(ops="remote_sensing" if s.space.ndim == 2 else "medical"),
    identity=lambda s: TrivialAugment(ops=["identity"]),
    bad=[("max_magnitude", lambda: TrivialAugment(max_magnitude=-1)), ("ops", lambda: TrivialAugment(ops="x"))]))
