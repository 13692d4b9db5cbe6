"""Intensity transforms. Statistics (min, max, mean, std) are per channel over valid voxels only,
and invalid (nodata) voxels keep their values. Integer layers are rounded and clipped back to
their dtype."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .core.kernels.pointwise import power
from .core.params import as_uniform, as_world_axes, resolve_world_axes
from .core.random import child_seed
from .core.sample import Sample
from .core.transform import IntensityTransform
from .core.values import channel_stats, normalized_smooth, seeded_noise
from .errors import ParameterError

if TYPE_CHECKING:
    from .testing import Case

__all__ = ["Gamma", "BrightnessContrast", "GaussianNoise", "GaussianBlur", "SaltPepper"]


class Gamma(IntensityTransform):
    """``x -> min + (max - min) * ((x - min) / (max - min)) ** gamma`` per channel.

    Args:
        gamma: Exponent, > 0 (< 1 brightens, > 1 darkens). A number is fixed; ``(min, max)`` is
            drawn uniformly.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.
    """

    fresh_output = True

    def __init__(self, gamma: float | tuple[float, float] = (0.7, 1.5), layers: Sequence[str] | None = None,
                 p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.gamma = as_uniform("gamma", gamma, low=1e-3)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"gamma": self.gamma.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        s = channel_stats(data, valid, ("min", "max"))
        span = (s["max"] - s["min"]).clamp(min=torch.finfo(data.dtype).tiny)
        return power(data, s["min"], span, params["gamma"])

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: Gamma((0.5, 2.0)), identity=lambda s: Gamma(1.0),
            bad=[("gamma", lambda: Gamma(0)), ("layers", lambda: Gamma(layers="image"))])


class BrightnessContrast(IntensityTransform):
    """``x -> mean + contrast * (x - mean) + brightness * (max - min)`` per channel.

    Args:
        brightness: Additive shift as a fraction of the channel's intensity range.
        contrast: Multiplicative factor about the channel mean, >= 0.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.
    """

    fresh_output = True

    def __init__(self, brightness: float | tuple[float, float] = (-0.1, 0.1),
                 contrast: float | tuple[float, float] = (0.9, 1.1), layers: Sequence[str] | None = None,
                 p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.brightness = as_uniform("brightness", brightness)
        self.contrast = as_uniform("contrast", contrast, low=0.0)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"brightness": self.brightness.draw(generator), "contrast": self.contrast.draw(generator)}

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = channel_stats(data, valid, ("min", "max", "mean"))
        c = params["contrast"]
        return torch.full_like(s["mean"], c), (1 - c) * s["mean"] + params["brightness"] * (s["max"] - s["min"])

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: BrightnessContrast((-0.2, 0.2), (0.7, 1.3)),
            identity=lambda s: BrightnessContrast(0.0, 1.0),
            bad=[("contrast", lambda: BrightnessContrast(contrast=-1))])


class GaussianNoise(IntensityTransform):
    """Add zero-mean Gaussian noise.

    Args:
        std: Standard deviation; relative to each channel's std over valid voxels when
            ``relative`` (default), else in intensity units.
        relative: See ``std``.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.
    """

    def __init__(self, std: float | tuple[float, float] = (0.0, 0.1), relative: bool = True,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.std = as_uniform("std", std, low=0.0)
        self.relative = bool(relative)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"std": self.std.draw(generator), "seed": child_seed(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        scale = params["std"] * (channel_stats(data, valid, ("std",))["std"] if self.relative else 1.0)
        return data + scale * seeded_noise(params["seed"], data.shape, data.device, data.dtype, "normal")

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: GaussianNoise((0.05, 0.2)), identity=lambda s: GaussianNoise(0.0),
            bad=[("std", lambda: GaussianNoise(-0.1))])


class SaltPepper(IntensityTransform):
    """Set a random fraction of voxels to the channel's max (salt) or min (pepper).

    Args:
        amount: Fraction of voxels changed, in [0, 1].
        salt: Fraction of the changed voxels that become salt, in [0, 1]; a number or a range.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.
    """

    def __init__(self, amount: float | tuple[float, float] = (0.0, 0.01), salt: float = 0.5,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.amount = as_uniform("amount", amount, low=0.0, high=1.0)
        self.salt = as_uniform("salt", salt, low=0.0, high=1.0)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"amount": self.amount.draw(generator), "salt": self.salt.draw(generator), "seed": child_seed(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        s = channel_stats(data, valid, ("min", "max"))
        u = seeded_noise(params["seed"], data.shape, data.device, torch.float64, "uniform")
        salt = u < params["amount"] * params["salt"]
        pepper = (u >= params["amount"] * params["salt"]) & (u < params["amount"])
        return torch.where(salt, s["max"].expand_as(data), torch.where(pepper, s["min"].expand_as(data), data))

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: SaltPepper((0.01, 0.05)), identity=lambda s: SaltPepper(0.0),
            bad=[("amount", lambda: SaltPepper(1.5))])


class GaussianBlur(IntensityTransform):
    """Gaussian smoothing with ``sigma`` in world units (mm, or CRS units), so anisotropic voxels get
    per-axis sigmas in voxels. Only valid voxels contribute (normalised convolution), which also
    handles the borders without padding artefacts.

    The kernel is truncated at 3 sigma and at the grid: never wider than ``2 n - 1`` taps on an
    axis of ``n`` voxels, which gives exactly the untruncated result (farther taps only meet the
    padding). A sigma much larger than the grid therefore costs no more than one covering it and
    tends to the mean of the valid voxels along that axis (e.g. ``sigma=1`` on an EPSG:4326 tile
    is one degree, about 10^5 pixels of 1e-5 deg).

    Args:
        sigma: Standard deviation in world units (mm, or CRS units: degrees for a geographic
            CRS), >= 0. A number is fixed; ``(min, max)`` is drawn.
        axis_scale: Optional factor per axis for an anisotropic blur (e.g. ``(1, 1, 3)``: three
            times the sigma, in mm, across thick slices); ``None`` is isotropic in world units. A
            sequence has one factor per array axis; a dict maps world axes to factors, the others
            1: ``{"S": 0}`` blurs in the axial plane only, ``{"slice": 0}`` in the plane of the
            sample's slices (its thickest world axis, read from the affine, whatever the array order).
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.
    """

    def __init__(self, sigma: float | tuple[float, float] = (0.0, 1.0),
                 axis_scale: Sequence[float] | Mapping[str | int, float] | None = None,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.sigma = as_uniform("sigma", sigma, low=0.0)
        values = list(axis_scale.values()) if isinstance(axis_scale, Mapping) else axis_scale
        if axis_scale is not None and (not isinstance(values, (list, tuple)) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values)):
            raise ParameterError("axis_scale", axis_scale, "None, one factor >= 0 per axis, or a dict from world "
                                 "axes to factors >= 0")
        self.axis_scale: list[float] | dict[str | int, float] | None
        if isinstance(axis_scale, Mapping):
            keys = as_world_axes("axis_scale", [int(k) if isinstance(k, str) and k.isdigit() else k
                                                for k in axis_scale])
            if keys is None or len(set(keys)) != len(keys):
                raise ParameterError("axis_scale", dict(axis_scale), "a dict with distinct world axes as keys")
            self.axis_scale = {k: float(v) for k, v in zip(keys, axis_scale.values())}
        else:
            self.axis_scale = None if axis_scale is None else [float(v) for v in axis_scale]
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {"sigma": self.sigma.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        factors = self.axis_scale or [1.0] * sample.space.ndim
        if isinstance(factors, dict):           # world axes -> the array axes that run along them
            worlds = resolve_world_axes("axis_scale", list(factors), sample.space)
            by_world = dict(zip(worlds, factors.values()))
            factors = [by_world.get(w, 1.0) for w in sample.space.world_axes()]
        if len(factors) != sample.space.ndim:
            raise ParameterError("axis_scale", self.axis_scale, f"{sample.space.ndim} factors for a "
                                 f"{sample.space.ndim}D sample")
        sigmas = [params["sigma"] * f / float(s) for f, s in zip(factors, sample.space.spacing)]
        weight = torch.ones_like(data[:1]) if valid is None else valid.to(data.dtype)
        return normalized_smooth(data, weight, sigmas)

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: GaussianBlur((0.5, 2.0)), identity=lambda s: GaussianBlur(0.0),
            bad=[("sigma", lambda: GaussianBlur(-1))])
