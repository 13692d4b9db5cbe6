"""Intensity transforms. Statistics (min, max, mean, std) are per channel over valid voxels only,
and invalid (nodata) voxels keep their values. Integer layers are rounded and clipped back to
their dtype."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .core.kernels.pointwise import power
from .core.kernels.reduce import channel_moments
from .core.params import as_layer_name, as_uniform, as_world_axes, resolve_world_axes
from .core.random import child_seed
from .core.sample import Sample, batch_buffer
from .core.transform import IntensityTransform
from .core.values import (
    affine_values,
    channel_quantiles,
    channel_stats,
    foreground,
    normalized_smooth,
    normalized_smooth_batch,
    per_element,
    seeded_noise,
    seeded_noise_batch,
)
from .errors import NoDataError, ParameterError

if TYPE_CHECKING:
    from .testing import Case

__all__ = ["Gamma", "BrightnessContrast", "GaussianNoise", "GaussianBlur", "SaltPepper", "NormalizeIntensity",
           "RescaleIntensity"]


class Gamma(IntensityTransform):
    """``x -> min + (max - min) * ((x - min) / (max - min)) ** gamma`` per channel.

    Args:
        gamma: Exponent, > 0 (< 1 brightens, > 1 darkens). A number is fixed; ``(min, max)`` is
            drawn uniformly.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = Gamma((0.7, 1.5))(sample, generator_for(0))
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

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        out = batch_buffer(tuple(data.shape), data.dtype, data.device)
        for b in range(data.shape[0]):            # (one compiled pass per element, each its own gamma)
            s = channel_stats(data[b], None if valid is None else valid[b], ("min", "max"))
            span = (s["max"] - s["min"]).clamp(min=torch.finfo(data.dtype).tiny)
            power(data[b], s["min"], span, params[b]["gamma"], out=out[b])
        return out

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

    Example:
        >>> out = BrightnessContrast(brightness=(-0.1, 0.1), contrast=(0.8, 1.2))(sample, generator_for(0))
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

    Example:
        >>> out = GaussianNoise(std=(0.0, 0.05))(sample, generator_for(0))
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
        return data + self._scale(data, valid, params) * seeded_noise(params["seed"], data.shape, data.device,
                                                                       data.dtype, "normal")

    def _scale(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any]) -> Any:
        return params["std"] * (channel_stats(data, valid, ("std",))["std"] if self.relative else 1.0)

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        noise = seeded_noise_batch([p["seed"] for p in params], data.shape[1:], data.device, data.dtype, "normal")
        return data + self._scales(data, valid, params) * noise

    def _scales(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]]) -> torch.Tensor:
        """``_scale`` of every element of a batch, ``(B, C, 1, ..., 1)``."""
        return per_element([self._scale(data[b], None if valid is None else valid[b], p)
                            for b, p in enumerate(params)], data)

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

    Example:
        >>> out = SaltPepper(amount=(0.0, 0.01))(sample, generator_for(0))
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
        return self._salted(data, u, params["amount"] * params["salt"], params["amount"], s["min"], s["max"])

    @staticmethod
    def _salted(data: torch.Tensor, u: torch.Tensor, salt_below: Any, pepper_below: Any, low: torch.Tensor,
                high: torch.Tensor) -> torch.Tensor:
        """``high`` where the uniform ``u`` < ``salt_below``, ``low`` where it is then < ``pepper_below``."""
        salt = u < salt_below
        pepper = (u >= salt_below) & (u < pepper_below)
        return torch.where(salt, high.expand_as(data), torch.where(pepper, low.expand_as(data), data))

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        stats = [channel_stats(data[b], None if valid is None else valid[b], ("min", "max"))
                 for b in range(data.shape[0])]
        u = seeded_noise_batch([p["seed"] for p in params], data.shape[1:], data.device, torch.float64, "uniform")
        salt = per_element([p["amount"] * p["salt"] for p in params], data, torch.float64)
        pepper = per_element([p["amount"] for p in params], data, torch.float64)
        return self._salted(data, u, salt, pepper, per_element([s["min"] for s in stats], data),
                            per_element([s["max"] for s in stats], data))

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

    Example:
        >>> out = GaussianBlur(sigma=(0.5, 2.0))(sample, generator_for(0))            # mm
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
        weight = torch.ones_like(data[:1]) if valid is None else valid.to(data.dtype)
        return normalized_smooth(data, weight, self._sigmas(sample, params))

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        """Elements of the same sigmas in voxels (a fixed ``sigma`` on one grid: all of them) are
        smoothed together, each group in one pass per axis."""
        weight = torch.ones_like(data[:, :1]) if valid is None else valid.to(data.dtype)
        groups: dict[tuple[float, ...], list[int]] = {}
        for b, (s, p) in enumerate(zip(samples, params)):
            groups.setdefault(tuple(self._sigmas(s, p)), []).append(b)
        if len(groups) == 1:
            return normalized_smooth_batch(data, weight, next(iter(groups)))
        out = batch_buffer(tuple(data.shape), data.dtype, data.device)
        for sigmas, members in groups.items():
            out[members] = normalized_smooth_batch(data[members], weight[members], sigmas)
        return out

    def _sigmas(self, sample: Sample, params: dict[str, Any]) -> list[float]:
        """The sigma along every array axis, in voxels of ``sample``'s grid."""
        factors = self.axis_scale or [1.0] * sample.space.ndim
        if isinstance(factors, dict):           # world axes -> the array axes that run along them
            worlds = resolve_world_axes("axis_scale", list(factors), sample.space)
            by_world = dict(zip(worlds, factors.values()))
            factors = [by_world.get(w, 1.0) for w in sample.space.world_axes()]
        if len(factors) != sample.space.ndim:
            raise ParameterError("axis_scale", self.axis_scale, f"{sample.space.ndim} factors for a "
                                 f"{sample.space.ndim}D sample")
        return [params["sigma"] * f / float(s) for f, s in zip(factors, sample.space.spacing)]

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: GaussianBlur((0.5, 2.0)), identity=lambda s: GaussianBlur(0.0),
            bad=[("sigma", lambda: GaussianBlur(-1))])


def _pair(name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """A ``(a, b)`` pair of finite numbers with ``low <= a < b <= high``."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not low <= value[0] < value[1] <= high:
        raise ParameterError(name, value, f"a pair (a, b) of finite numbers with {low} <= a < b <= {high}")
    return float(value[0]), float(value[1])


def _fixed(name: str, value: Any, nonzero: bool = False) -> float | list[float] | None:
    """``None``, a finite number, or one finite number per channel (non-zero when ``nonzero``)."""
    if value is None:
        return None
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else \
        list(value) if isinstance(value, (list, tuple)) and value else None
    if values is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                 and (v != 0 or not nonzero) for v in values):
        raise ParameterError(name, value, "None, a finite number or one per channel" + (", not 0" if nonzero else ""))
    return float(values[0]) if not isinstance(value, (list, tuple)) else [float(v) for v in values]


def _per_channel(name: str, value: float | list[float], channels: int, channel_wise: bool, layer: str,
                 like: torch.Tensor) -> torch.Tensor:
    """A fixed statistic as ``(C, 1, ..., 1)``: a number for every channel, or one per channel."""
    values = [value] * channels if isinstance(value, float) else value
    if len(values) != channels or (isinstance(value, list) and not channel_wise and channels > 1):
        raise ParameterError(name, value, f"a number, or {channels} (one per channel of layer {layer!r}) with "
                             "channel_wise=True")
    return torch.tensor(values, dtype=like.dtype, device=like.device).view((-1,) + (1,) * (like.dim() - 1))


def _region(valid: torch.Tensor | None, sample: Sample, mask: str | None, name: str,
            transform: str) -> torch.Tensor | None:
    """The voxels the statistics are taken over: valid ones, inside layer ``mask`` (> 0) when given."""
    if mask is None:
        return valid
    if mask not in sample.layer_names():
        raise ParameterError("mask", mask, f"a layer on the grid of layer {name!r} for {transform} "
                             f"({sample.layer_names()})")
    inside = foreground(sample, mask, "mask", transform)
    region = inside if valid is None else inside & valid
    if not bool(region.any()):
        raise NoDataError(f"{transform}: mask layer {mask!r} marks no valid voxel of layer {name!r}; its statistics "
                          "are undefined")
    return region


def _pooled(data: torch.Tensor, region: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``data`` and ``region`` as one channel holding every channel's voxels (statistics over all channels)."""
    flat = data.reshape(1, -1)
    return flat, None if region is None else region.expand_as(data).reshape(1, -1)


def _stacked_affine(affines: list[tuple[torch.Tensor, torch.Tensor]], data: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-element ``(gain, bias)`` pairs as the batch's ``(B, C, 1, ..., 1)`` gain and bias."""
    return tuple(per_element([a[k] for a in affines], data) for k in (0, 1))


def _broadcast(stat: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """A pooled statistic as ``(C, 1, ..., 1)``."""
    return stat.reshape(1).expand(data.shape[0]).reshape((-1,) + (1,) * (data.dim() - 1))


class NormalizeIntensity(IntensityTransform):
    """Z-score: ``x -> (x - mean) / std`` over the valid voxels (MONAI ``NormalizeIntensity``,
    TorchIO ``ZNormalization``). Deterministic: ``Compose.inference()`` keeps it.

    The statistics are taken over valid voxels only (and, with ``mask``, only those inside a mask
    layer), and every valid voxel is changed; invalid voxels keep their values. The standard
    deviation is the population one (``ddof=0``, as MONAI); a channel of zero spread is only
    centred (its std taken as 1, as MONAI does). Intensity layers are float in memory (DESIGN §9),
    so the z-scores are never rounded or clipped.

    Args:
        subtrahend: Fixed value subtracted instead of the mean (intensity units): a number, or one
            per channel (with ``channel_wise``). ``None``: the mean.
        divisor: Fixed divisor instead of the std (intensity units, not 0): a number, or one per
            channel. ``None``: the std.
        nonzero: Only voxels whose value is not 0 enter the statistics and change; zeros stay 0
            (MONAI's ``nonzero``, e.g. skull-stripped background).
        channel_wise: Statistics per channel (default). ``False``: one mean and std over every
            channel of the layer, as MONAI's and TorchIO's default (a layer of bands of different
            scales is better served per channel, hence this default).
        mask: Name of a layer (e.g. ``"brain"``) whose voxels > 0, in any channel, are the ones the
            statistics are taken over (TorchIO's ``masking_method``); every valid voxel is then
            normalised with them. It must be on the grid of the layers it normalises.
        layers: INTENSITY layers to change (default: all); each is normalised with its own statistics.
        p: Probability of applying.
        per_layer: Draw ``p`` once per target layer (there is nothing else to draw).

    Raises:
        NoDataError: ``mask`` marks no valid voxel.
        ParameterError: A per-channel ``subtrahend``/``divisor`` whose length is not the layer's
            channel count, or a ``mask`` not on the layer's grid.

    Example:
        >>> from domainaug.testing import make_volume
        >>> out = NormalizeIntensity()(make_volume())
        >>> abs(float(out["image"].mean())) < 1e-6, round(float(out["image"].std(unbiased=False)), 4)
        (True, 1.0)
    """

    deterministic = True
    fresh_output = True

    def __init__(self, subtrahend: float | Sequence[float] | None = None,
                 divisor: float | Sequence[float] | None = None, *, nonzero: bool = False,
                 channel_wise: bool = True, mask: str | None = None,
                 layers: Sequence[str] | None = None, p: float = 1.0, per_layer: bool | None = False) -> None:
        self.subtrahend = _fixed("subtrahend", subtrahend)
        self.divisor = _fixed("divisor", divisor, nonzero=True)
        self.nonzero = bool(nonzero)
        self.channel_wise = bool(channel_wise)
        self.mask = as_layer_name("mask", mask, optional=True)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {}

    def _moments(self, data: torch.Tensor, region: torch.Tensor | None, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(subtrahend, divisor)`` shaped ``(C, 1, ..., 1)``; ``region`` is ``(1 or C, *spatial)``
        (a channel with no voxel in its region gets 0 and 1)."""
        c = data.shape[0]
        shape = (-1,) + (1,) * (data.dim() - 1)
        mean, std = np.zeros(c), np.ones(c)
        if self.subtrahend is None or self.divisor is None:
            if self.channel_wise:
                n, m, sd = channel_moments(data, region)
            else:
                n, m, sd = channel_moments(*_pooled(data, region))
                n, m, sd = (np.broadcast_to(v, (c,)) for v in (n, m, sd))
            mean, std = np.where(n > 0, m, 0.0), np.where((n > 0) & (sd > 0), sd, 1.0)
        def fixed(what: str, value: float | list[float] | None, measured: np.ndarray) -> torch.Tensor:
            if value is not None:
                return _per_channel(what, value, c, self.channel_wise, name, data)
            return torch.from_numpy(np.ascontiguousarray(measured)).to(device=data.device, dtype=data.dtype).view(shape)

        sub, div = fixed("subtrahend", self.subtrahend, mean), fixed("divisor", self.divisor, std)
        return sub, div

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.nonzero:
            return None
        sub, div = self._moments(data, _region(valid, sample, self.mask, name, "NormalizeIntensity"), name)
        return 1.0 / div, -sub / div

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if not self.nonzero:
            return super().transform_layer(data, valid, params, sample, name)
        region = self._nonzero_region(data, _region(valid, sample, self.mask, name, "NormalizeIntensity"))
        if not bool(region.any()):
            return data.clone()                # no non-zero voxel: nothing to normalise (as MONAI)
        return torch.where(region, affine_values(data, *self._nonzero_affine(data, region, name)), data)

    @staticmethod
    def _nonzero_region(data: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        """The voxels ``nonzero`` normalises: non-zero ones of ``region``."""
        return data != 0 if region is None else (data != 0) & region

    def _nonzero_affine(self, data: torch.Tensor, region: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain, bias)`` of the ``nonzero`` normalisation; identity where ``region`` is empty (it then
        changes no voxel)."""
        if not bool(region.any()):
            return torch.ones(()), torch.zeros(())
        sub, div = self._moments(data, region, name)
        return 1.0 / div, -sub / div

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor | None:
        if not self.nonzero:
            return super().transform_batch(data, valid, params, samples, name)
        regions = [_region(None if valid is None else valid[b], s, self.mask, name, "NormalizeIntensity")
                   for b, s in enumerate(samples)]
        region = self._nonzero_region(data, None if regions[0] is None else torch.stack(regions))  # type: ignore[arg-type]
        affines = [self._nonzero_affine(data[b], region[b], name) for b in range(data.shape[0])]
        return torch.where(region, affine_values(data, *_stacked_affine(affines, data)), data)

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: NormalizeIntensity(), identity=lambda s: NormalizeIntensity(0.0, 1.0),
            bad=[("divisor", lambda: NormalizeIntensity(divisor=0)),
                 ("subtrahend", lambda: NormalizeIntensity("a")),  # type: ignore[arg-type]  # (wrong on purpose)
                 ("mask", lambda: NormalizeIntensity(mask=3))])  # type: ignore[arg-type]  # (wrong on purpose)


class RescaleIntensity(IntensityTransform):
    """Map input values linearly onto ``out``: from the input's ``percentiles`` over valid voxels
    (TorchIO ``RescaleIntensity``, MONAI ``ScaleIntensityRangePercentiles``), or from fixed input
    values ``in_range`` (MONAI ``ScaleIntensityRange``, e.g. a CT window in HU). Deterministic:
    ``Compose.inference()`` keeps it.

    ``x -> out_lo + (x - a) * (out_hi - out_lo) / (b - a)``, with ``(a, b)`` the percentiles or
    ``in_range``; with ``clip`` the result is clipped to ``out`` (TorchIO clips at the percentiles,
    the same thing). A channel with ``a == b`` becomes ``out_lo``. Percentiles are exact on the CPU
    (every valid voxel, with the linear interpolation of ``numpy.percentile``) and taken on a regular
    subsample of 2**20 voxels on other devices. Invalid voxels keep their values.

    Args:
        out: Output range ``(lo, hi)``, ``lo < hi``, in output intensity units.
        percentiles: Input percentiles ``(p_lo, p_hi)`` in [0, 100] mapped to ``out``; the default
            ``(0, 100)`` is the minimum and maximum (TorchIO's default).
        in_range: Fixed input values ``(a, b)`` mapped to ``out`` instead of percentiles.
        clip: Clip the output to ``out`` (default; MONAI's default is ``False``).
        channel_wise: Percentiles per channel (default). ``False``: over every channel of the layer
            together (TorchIO's behaviour).
        mask: Name of a layer whose voxels > 0 (any channel) are the ones the percentiles are
            taken over; every valid voxel is rescaled.
        layers: INTENSITY layers to change (default: all); each is rescaled from its own percentiles.
        p: Probability of applying.
        per_layer: Draw ``p`` once per target layer (there is nothing else to draw).

    Raises:
        ParameterError: Both ``percentiles`` (other than the default) and ``in_range`` given.
        NoDataError: ``mask`` marks no valid voxel.

    Example:
        >>> from domainaug.testing import make_volume
        >>> out = RescaleIntensity(out=(0, 1), percentiles=(0.5, 99.5))(make_volume())
        >>> float(out["image"].min()), float(out["image"].max())
        (0.0, 1.0)
    """

    deterministic = True
    fresh_output = True

    def __init__(self, out: Sequence[float] = (0.0, 1.0), percentiles: Sequence[float] = (0.0, 100.0),
                 in_range: Sequence[float] | None = None, *, clip: bool = True, channel_wise: bool = True,
                 mask: str | None = None, layers: Sequence[str] | None = None, p: float = 1.0,
                 per_layer: bool | None = False) -> None:
        self.out = _pair("out", out)
        self.percentiles = _pair("percentiles", percentiles, 0.0, 100.0)
        self.in_range = None if in_range is None else _pair("in_range", in_range)
        if self.in_range is not None and self.percentiles != (0.0, 100.0):
            raise ParameterError("in_range", in_range, "None when percentiles are given (one of the two)")
        self.clip = bool(clip)
        self.channel_wise = bool(channel_wise)
        self.mask = as_layer_name("mask", mask, optional=True)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {}

    def _input_range(self, data: torch.Tensor, valid: torch.Tensor | None, sample: Sample,
                     name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.in_range is not None:
            lo = torch.full((data.shape[0],) + (1,) * (data.dim() - 1), self.in_range[0], dtype=data.dtype,
                            device=data.device)
            return lo, torch.full_like(lo, self.in_range[1])
        region = _region(valid, sample, self.mask, name, "RescaleIntensity")
        values, where = (data, region) if self.channel_wise else _pooled(data, region)
        if self.percentiles == (0.0, 100.0):
            s = channel_stats(values, where, ("min", "max"))
            lo, hi = s["min"], s["max"]
        else:
            lo, hi = channel_quantiles(values, where, self.percentiles, exact=True)
        if not self.channel_wise:
            lo, hi = _broadcast(lo, data), _broadcast(hi, data)
        return lo.reshape((-1,) + (1,) * (data.dim() - 1)), hi.reshape((-1,) + (1,) * (data.dim() - 1))

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.clip:
            return None
        return self._affine(data, valid, sample, name)

    def _affine(self, data: torch.Tensor, valid: torch.Tensor | None, sample: Sample,
                name: str) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self._input_range(data, valid, sample, name)
        span = (hi - lo).double()
        gain = torch.where(span > 0, (self.out[1] - self.out[0]) / span.clamp(min=1e-300), torch.zeros_like(span))
        return gain.to(data.dtype), (self.out[0] - lo.double() * gain).to(data.dtype)

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        return self._rescaled(data, *self._affine(data, valid, sample, name))

    def _rescaled(self, data: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = affine_values(data, gain, bias)
        return out.clamp_(*self.out) if self.clip else out

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        affines = [self._affine(data[b], None if valid is None else valid[b], s, name) for b, s in enumerate(samples)]
        return self._rescaled(data, *_stacked_affine(affines, data))

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: RescaleIntensity(percentiles=(1, 99)),
            identity=lambda s: RescaleIntensity(out=(0, 1), in_range=(0, 1), clip=False),
            bad=[("out", lambda: RescaleIntensity(out=(1, 0))), ("percentiles", lambda: RescaleIntensity(
                percentiles=(0, 101))), ("in_range", lambda: RescaleIntensity(percentiles=(1, 99), in_range=(0, 1)))])
