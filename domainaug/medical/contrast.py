"""Scanner and field-strength variation: intensity scaling, tissue contrast, low resolution, and a
documented field-strength composite."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..core.params import as_uniform, as_world_axes, check_choice, resolve_world_axes
from ..core.sample import Role, Sample
from ..core.transform import Compose, IntensityTransform
from ..core.values import affine_values, channel_quantiles, label_values, normalized_smooth, per_element
from ..errors import ParameterError, SampleError
from ..intensity import Gamma
from .physics import BiasField, RicianNoise

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["IntensityScale", "TissueContrast", "SimulateLowResolution", "FieldStrength", "robust_range"]


def robust_range(data: torch.Tensor, valid: torch.Tensor | None,
                 percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel 1st and 99th percentiles over valid voxels, shaped ``(C, 1, ..., 1)``."""
    lo, hi = channel_quantiles(data, valid, percentiles)
    return lo, hi


class IntensityScale(IntensityTransform):
    """Per-channel gain and offset: ``x * gain + offset * unit``, where ``unit`` is the channel's
    1st-99th percentile range over valid voxels (``units="percentile"``, default) or 1 (``"raw"``).

    Args:
        gain: Multiplicative factor, > 0; a number or a range.
        offset: Additive offset in ``units``; a number or a range.
        units: ``"percentile"`` or ``"raw"``.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = IntensityScale(gain=(0.9, 1.1), offset=(-0.05, 0.05))(sample, generator_for(0))
    """

    fresh_output = True

    def __init__(self, gain: float | tuple[float, float] = (0.9, 1.1),
                 offset: float | tuple[float, float] = (-0.05, 0.05),
                 units: str = "percentile", layers: Sequence[str] | None = None, p: float = 1.0, *,
                 per_layer: bool | None = False) -> None:
        self.gain = as_uniform("gain", gain, low=1e-6)
        self.offset = as_uniform("offset", offset)
        self.units = check_choice("units", units, ("percentile", "raw"))
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        channels = {n: sample.layer_info(n).data.shape[0] for n in self.target_layers(sample)}
        return {"gain": {n: [self.gain.draw(generator) for _ in range(c)] for n, c in channels.items()},
                "offset": {n: [self.offset.draw(generator) for _ in range(c)] for n, c in channels.items()}}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        return affine_values(data, *self._gain_offset(data, valid, params, name))

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        pairs = [self._gain_offset(data[b], None if valid is None else valid[b], p, name) for b, p in enumerate(params)]
        return affine_values(data, per_element([g for g, _ in pairs], data), per_element([o for _, o in pairs], data))

    def _gain_offset(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                     name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain, offset * unit)`` of layer ``name``, ``(C, 1, ..., 1)``."""
        shape = (-1,) + (1,) * (data.dim() - 1)
        gain = torch.tensor(params["gain"][name], dtype=data.dtype, device=data.device).view(shape)
        offset = torch.tensor(params["offset"][name], dtype=data.dtype, device=data.device).view(shape)
        if self.units == "percentile":
            lo, hi = robust_range(data, valid)
            offset = offset * (hi - lo)
        return gain, offset

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: IntensityScale((0.8, 1.2), (-0.1, 0.1)), identity=lambda s: IntensityScale(1.0, 0.0),
            bad=[("gain", lambda: IntensityScale(gain=0)), ("units", lambda: IntensityScale(units="bits"))])


class TissueContrast(IntensityTransform):
    """A random gain per label region, blended smoothly across region borders (a Gaussian of
    ``smoothing`` mm), so tissue contrast changes as it does between scanners and sequences.

    Args:
        gain: Range of each region's gain, > 0.
        label: The LABEL layer defining the regions.
        smoothing: Border width (Gaussian sigma) in mm, >= 0.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = TissueContrast(gain=(0.85, 1.15), label="label", smoothing=2.0)(sample, generator_for(0))   # mm
    """

    def __init__(self, gain: float | tuple[float, float] = (0.85, 1.15), label: str = "label", smoothing: float = 2.0,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.gain = as_uniform("gain", gain, low=1e-6)
        self.label = label
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or smoothing < 0:
            raise ParameterError("smoothing", smoothing, "a width in mm >= 0")
        self.smoothing = float(smoothing)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def check_grids(self, sample: Sample) -> None:
        """The regions are read on the label's grid: a target layer on another grid is refused by name."""
        super().check_grids(sample)
        if not sample.grids or self.label not in sample.layer_names():
            return
        try:
            targets = self.target_layers(sample)
        except ParameterError:
            return                                  # raised by name where the layers are resolved
        off = [n for n in targets if sample.space_of(n) != sample.space_of(self.label)]
        if off:
            raise SampleError(f"TissueContrast reads its regions from label {self.label!r}, and layers {off} are on "
                              "another grid than it; put ResampleToMatch(target=...) before it, or name only the "
                              "layers on the label's grid in layers=")

    def _regions(self, sample: Sample) -> torch.Tensor:
        """The label layer's one channel: one region per voxel (a map of several channels would give a
        voxel several gains, so it is refused by name rather than read from channel 0 only)."""
        if self.label not in sample.layer_names() or sample.layer_info(self.label).role is not Role.LABEL:
            raise ParameterError("label", self.label, f"a LABEL layer of the sample ({sample.layer_names(Role.LABEL)})")
        data = sample[self.label]
        if data.shape[0] != 1:
            raise ParameterError("label", self.label, f"a label layer of one channel for TissueContrast (one region "
                                 f"per voxel); {self.label!r} has {data.shape[0]}")
        return data[0]

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        values = label_values(self._regions(sample)).tolist()
        return {"gain": {str(v): self.gain.draw(generator) for v in values}}

    def gain_map(self, sample: Sample, params: dict[str, Any], like: torch.Tensor) -> torch.Tensor:
        labels = self._regions(sample).to(like.device)
        gains = torch.ones(labels.shape, dtype=like.dtype, device=like.device)
        for value, g in params["gain"].items():
            gains[labels == int(value)] = g
        sigmas = [self.smoothing / float(spacing) for spacing in sample.space.spacing]
        return normalized_smooth(gains[None], torch.ones_like(gains[None]), sigmas)

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        return data * self.gain_map(sample, params, data)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: TissueContrast((0.7, 1.3)), identity=lambda s: TissueContrast(1.0),
            bad=[("smoothing", lambda: TissueContrast(smoothing=-1)), ("gain", lambda: TissueContrast(gain=0))])


class SimulateLowResolution(IntensityTransform):
    """Thick slices / low resolution along **world** axes: along each of ``axes``, average slabs
    ``spacing`` mm thick and interpolate back linearly to the original grid (the grid is kept).

    A world axis is degraded whatever the array order: ``axes="S"`` thickens the superior-inferior
    direction of a scan stored RAS, LSA or PIR alike (the array axis that runs closest to it, from
    the affine: ``Space.array_axis``). Only valid voxels are averaged.

    Args:
        spacing: Target voxel size in mm (CRS units for rasters) along the axes; a number is fixed,
            a ``(min, max)`` range is drawn per axis.
        axes: World axes to degrade: ``"S"`` (default, superior-inferior: axial slices), ``"R"``,
            ``"A"`` (either direction's letter), ``"slice"`` (the world axis along which the voxels
            are already thickest), an index 0-2 (x, y, z; 0 and 1 for rasters), a list of them, or
            ``None`` for every axis.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = SimulateLowResolution((3.0, 6.0), axes="S")(sample, torch.Generator().manual_seed(0))

    Params: ``{"spacing": {"<world axis index>": mm}}``.
    """

    def __init__(self, spacing: float | tuple[float, float] = (2.0, 6.0),
                 axes: int | str | Sequence[int | str] | None = "S",
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.spacing = as_uniform("spacing", spacing, low=1e-6)
        self.axes = as_world_axes("axes", axes)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        axes = resolve_world_axes("axes", self.axes, sample.space)
        return {"spacing": {str(a): self.spacing.draw(generator) for a in axes}}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        out = data
        weight = torch.ones_like(data[:1]) if valid is None else valid.to(data.dtype)
        out, weight = out * weight, weight                      # only valid voxels are averaged
        for key, target in params["spacing"].items():
            world = int(key)
            if not 0 <= world < sample.space.ndim:
                raise ParameterError("params['spacing']", key, f"world axes of a {sample.space.ndim}D sample")
            axis = sample.space.array_axis(world)
            factor = int(round(target / float(sample.space.spacing[axis])))
            n = data.shape[axis + 1]
            if factor <= 1 or n < 2:
                continue
            out, weight = (_slab_average(t, axis, factor) for t in (out, weight))
        return out / weight.clamp(min=1e-12)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case

        def along(s: Sample) -> tuple[int, float]:       # the last array axis's world axis and spacing
            return s.space.world_axes()[-1], float(s.space.spacing[-1])
        return Case(
            random=lambda s: SimulateLowResolution((2 * along(s)[1], 4 * along(s)[1]), axes=along(s)[0]),
            identity=lambda s: SimulateLowResolution(along(s)[1], axes=along(s)[0]),
            bad=[("spacing", lambda: SimulateLowResolution(0)), ("axes", lambda: SimulateLowResolution(axes="q")),
                 ("axes", lambda: SimulateLowResolution(axes=3))])


def _slab_average(x: torch.Tensor, axis: int, factor: int) -> torch.Tensor:
    """Average slabs of ``factor`` voxels along spatial ``axis``, then interpolate back linearly."""
    n = x.shape[axis + 1]
    moved = x.movedim(axis + 1, -1)
    coarse = F.avg_pool1d(moved.reshape(-1, 1, n), factor, factor, ceil_mode=True, count_include_pad=False)
    fine = F.interpolate(coarse, size=n, mode="linear", align_corners=False)
    return fine.reshape(moved.shape).movedim(-1, axis + 1)


class FieldStrength(Compose):
    """Emulate scanning at ``target`` tesla an image acquired at ``source`` tesla (a composite).

    Assumptions (coarse, documented so they can be changed):
    - SNR grows roughly linearly with B0 (Pohmann et al., MRM 2016, report ~B0^1.65 in the brain at
      ultra-high field). Going down adds Rician noise with sigma up to ``noise * (source/target - 1)``
      of the image std; going up cannot remove noise and adds none.
    - Transmit-field (B1) inhomogeneity grows with B0 (Vaughan et al., MRM 2001): a bias field with
      coefficients up to ``bias * |target - source|`` (1/T).
    - T1 lengthens with B0 and T1-weighted grey/white contrast changes (Rooney et al., MRM 2007): a
      gamma within ``1 +- contrast * |log2(target / source)|``.
    Equal fields give the identity.

    Args:
        source: Field strength of the input, tesla (> 0).
        target: Field strength to emulate, tesla (> 0).
        noise: Noise scale (fraction of the image std per unit of ``source/target - 1``).
        bias: Bias-field coefficient range per tesla of difference.
        contrast: Gamma range per octave of field.
        p: Probability of applying.

    Example:
        >>> out = FieldStrength(source=3.0, target=1.5)(sample, generator_for(0))
    """

    def __init__(self, source: float = 3.0, target: float = 1.5, noise: float = 0.05, bias: float = 0.1,
                 contrast: float = 0.1, p: float = 1.0) -> None:
        for name, value in (("source", source), ("target", target)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 20:
                raise ParameterError(name, value, "a field strength in tesla, in (0, 20]")
        for name, value in (("noise", noise), ("bias", bias), ("contrast", contrast)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ParameterError(name, value, "a number >= 0")
        self.source, self.target = float(source), float(target)
        self.noise, self.bias, self.contrast = float(noise), float(bias), float(contrast)
        sigma = self.noise * max(0.0, self.source / self.target - 1)
        c = self.bias * abs(self.target - self.source)
        if c > 5.0:
            raise ParameterError("bias", bias, f"at most {5.0 / max(abs(self.target - self.source), 1e-9):.3g} per "
                                 f"tesla for a {abs(self.target - self.source):g} T change (coefficients <= 5)")
        d = self.contrast * abs(math.log2(self.target / self.source))
        super().__init__([BiasField((-c, c), order=3), Gamma((1 / (1 + d), 1 + d)), RicianNoise((0.0, sigma))], p=p)

    def arguments(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "noise": self.noise, "bias": self.bias,
                "contrast": self.contrast, "p": self.p}

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: FieldStrength(3.0, 1.5), identity=lambda s: FieldStrength(1.5, 1.5),
            bad=[("source", lambda: FieldStrength(source=0)), ("noise", lambda: FieldStrength(noise=-1))])


