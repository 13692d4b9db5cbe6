"""MR/CT intensity physics: bias field, Rician noise, CT windowing. Lengths are in mm; statistics
are over valid voxels; invalid voxels stay untouched."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.params import as_uniform, check_positive_int
from ..core.sample import Layer, Sample, batch_buffer, stacked
from ..core.transform import IntensityTransform
from ..core.values import channel_stats, per_element, seeded_noise, seeded_noise_batch
from ..errors import ParameterError, SampleError
from ..intensity import GaussianNoise

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["BiasField", "RicianNoise", "CTWindow", "CT_WINDOWS", "modality", "require_mr", "HU_AIR_BELOW"]

#: A valid minimum at or below this (in the data's units) reads as CT in Hounsfield units (air is
#: about -1000 HU); a magnitude MR image is never negative, and a z-scored one stays above about -10.
HU_AIR_BELOW = -500.0


def modality(sample: Sample) -> str | None:
    """The sample's modality as the user or the loader declared it, ``sample.meta["modality"]``
    (DICOM's codes: ``"MR"``, ``"CT"``, ...), upper case; ``None`` when undeclared."""
    value = sample.meta.get("modality")
    return None if value is None else str(value).upper()


def require_mr(op: str, sample: Sample, name: str, data: torch.Tensor, valid: torch.Tensor | None) -> None:
    """The modality check of the ops that model a magnitude MR acquisition (Rician noise, k-space
    artefacts): a sample declared as another modality (``sample.meta["modality"]``, e.g. ``"CT"``) is
    refused (``SampleError`` naming the op, the layer and the assumption); an undeclared one whose
    valid minimum is ``HU_AIR_BELOW`` or less (CT in HU) gets a ``UserWarning`` saying the same."""
    declared = modality(sample)
    if declared is not None:
        if declared not in ("MR", "MRI"):
            raise SampleError(f"{op} models a magnitude MR image (Rician noise / k-space acquisition), and "
                              f"sample.meta['modality'] is {sample.meta['modality']!r} (layer {name!r}); leave it out "
                              "of this modality's pipeline")
        return
    if data.numel() == 0 or float(data.amin()) > HU_AIR_BELOW:     # one cheap pass rules out MR
        return
    low = float(channel_stats(data, valid, ("min",))["min"].min()) if valid is None or bool(valid.any()) else 0.0
    if low <= HU_AIR_BELOW:
        warnings.warn(f"{op} models a magnitude MR image, and layer {name!r} looks like CT in Hounsfield units "
                      f"(valid minimum {low:g} <= {HU_AIR_BELOW:g}); set sample.meta['modality'] = 'CT' to have "
                      "it refused, or 'MR' if it is MR", UserWarning, stacklevel=2)


def _terms(ndim: int, order: int) -> list[tuple[int, ...]]:
    """Exponent tuples of the monomials of total degree 1 .. ``order`` (no constant: the field changes
    shape, not overall brightness)."""
    return [e for e in itertools.product(range(order + 1), repeat=ndim) if 0 < sum(e) <= order]


class BiasField(IntensityTransform):
    """Smooth multiplicative intensity inhomogeneity: ``x * exp(f(u) - mean f)``, with ``f`` a sum of
    the monomials of total degree 1 .. ``order`` of ``u``, the voxel position in mm from the grid
    centre divided by the largest half-extent (so the field is isotropic in mm whatever the voxel
    size). The field's geometric mean over the grid is 1, so overall brightness is kept.
    Coefficients of 0 are the identity.

    Args:
        coefficients: Range of every coefficient (log-scale); a number or ``(min, max)``.
        order: Polynomial degree, >= 1.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = BiasField(coefficients=(-0.2, 0.2), order=3)(sample, generator_for(0))
    """

    def __init__(self, coefficients: float | tuple[float, float] = (-0.15, 0.15), order: int = 3,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.coefficients = as_uniform("coefficients", coefficients, low=-5.0, high=5.0)
        self.order = check_positive_int("order", order)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        terms = _terms(sample.space.ndim, self.order)
        return {"coefficients": [self.coefficients.draw(generator) for _ in terms]}

    def log_field(self, sample: Sample, params: dict[str, Any], device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
        """The log field on the grid, evaluated separably: 1D powers per axis, one contraction per term."""
        space = sample.space
        terms = _terms(space.ndim, self.order)
        coefficients = params["coefficients"]
        if len(coefficients) != len(terms):
            raise ParameterError("params['coefficients']", len(coefficients), f"{len(terms)} coefficients for order "
                                 f"{self.order} in {space.ndim}D")
        half = (np.array(space.shape) - 1) * space.spacing / 2
        scale = max(float(half.max()), 1e-9)
        axes = [torch.linspace(-h / scale, h / scale, n, dtype=torch.float64) for h, n in zip(half, space.shape)]
        powers = [torch.stack([a ** k for k in range(self.order + 1)]) for a in axes]      # (order+1, n) per axis
        tensor = torch.zeros([self.order + 1] * space.ndim, dtype=torch.float64)
        for e, c in zip(terms, coefficients):
            tensor[e] = c
        # the grid mean of a product of per-axis powers is the product of their means: fold it into the
        # constant term, so the full-size field needs no extra pass to be centred
        means = [p.mean(dim=1) for p in powers]
        tensor[(0,) * space.ndim] -= float(sum(c * np.prod([means[a][e[a]].item() for a in range(space.ndim)])
                                               for e, c in zip(terms, coefficients)))
        letters = "abc"[:space.ndim]
        spec = letters + "," + ",".join(f"{letter}{letter.upper()}" for letter in letters) + "->" + letters.upper()
        return torch.einsum(spec, tensor.to(dtype), *[p.to(dtype) for p in powers]).to(device)

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if not any(params["coefficients"]):
            return data
        field = self.log_field(sample, params, data.device, data.dtype).exp_()
        return field[None].mul_(data) if data.shape[0] == 1 else data * field     # one buffer for one channel

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        """Every element's field (grid-sized, each from its own space), then one product over the batch
        (an element of zero coefficients gets a field of ones: ``x * 1`` is ``x``)."""
        fields = batch_buffer((data.shape[0], 1) + tuple(data.shape[2:]), data.dtype, data.device)
        for b, (p, s) in enumerate(zip(params, samples)):
            if any(p["coefficients"]):
                torch.exp(self.log_field(s, p, data.device, data.dtype), out=fields[b, 0])
            else:
                fields[b].fill_(1.0)
        return fields.mul_(data) if data.shape[1] == 1 else data * fields

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: BiasField((-0.5, 0.5)), identity=lambda s: BiasField(0.0),
            bad=[("coefficients", lambda: BiasField(10.0)), ("order", lambda: BiasField(order=0))])


class RicianNoise(GaussianNoise):
    """Rician noise of magnitude MR images: ``sqrt((x + n1)^2 + n2^2)``, ``n1, n2 ~ N(0, sigma)``
    (the arguments and draws of ``GaussianNoise``; only the noise model differs).

    MR only: a sample declared as another modality (``sample.meta["modality"] = "CT"``) is refused,
    and an undeclared one that looks like CT in HU gets a warning (``require_mr``); for CT noise
    use ``GaussianNoise(std, relative=False)`` in HU.

    At high SNR the mean moves from ``A`` to about ``sqrt(A^2 + sigma^2)``; in the background (A = 0)
    the noise is Rayleigh. ``sigma`` 0 is the identity.

    Args:
        std: ``sigma`` as a fraction of each channel's std over valid voxels when ``relative``
            (default), else in intensity units; a number or a range.
        relative: See ``std``.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = RicianNoise(std=(0.0, 0.05))(sample, generator_for(0))
    """

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if params["std"] == 0:
            return data
        require_mr("RicianNoise", sample, name, data, valid)
        noise = seeded_noise(params["seed"], (2,) + tuple(data.shape), data.device, data.dtype, "normal")
        return _rician(data, noise, self._scale(data, valid, params))

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        live = [b for b, p in enumerate(params) if p["std"] != 0]      # sigma 0 keeps the values (no modulus)
        for b in live:
            require_mr("RicianNoise", samples[b], name, data[b], None if valid is None else valid[b])
        if not live:
            return data
        pick = (lambda x: x) if len(live) == len(params) else (lambda x: x[live])
        own = pick(data)
        noise = seeded_noise_batch([params[b]["seed"] for b in live], (2,) + tuple(data.shape[1:]), data.device,
                                   data.dtype, "normal")
        sigma = self._scales(own, None if valid is None else pick(valid), [params[b] for b in live])
        new = _rician(own, noise.transpose(0, 1), sigma)
        if len(live) == len(params):
            return new
        out = data.clone()
        out[live] = new
        return out

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: RicianNoise((0.05, 0.2)), identity=lambda s: RicianNoise(0.0),
            bad=[("std", lambda: RicianNoise(-1.0))])


def _rician(data: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """``|data + sigma n1 + i sigma n2|`` from ``noise`` ``(2, *data.shape)`` (changed in place)."""
    return torch.hypot(noise[0].mul_(sigma).add_(data), noise[1].mul_(sigma))


#: Named CT windows as (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0), "subdural": (75.0, 215.0), "stroke": (32.0, 8.0), "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0), "abdomen": (40.0, 400.0), "liver": (60.0, 150.0), "bone": (400.0, 1800.0),
}


class CTWindow(IntensityTransform):
    """Clip Hounsfield units to a window ``[level - width/2, level + width/2]`` and, with
    ``rescale`` (default), map it to ``[0, 1]`` as float32 (an integer HU layer becomes float32).
    A sample declared as another modality than CT (``sample.meta["modality"]``) is refused.

    Args:
        window: A name in ``CT_WINDOWS`` (brain, subdural, stroke, lung, mediastinum, abdomen,
            liver, bone) or ``(level, width)`` in HU.
        level_shift: Random shift of the level in HU (augmentation), a number or range.
        width_scale: Random factor on the width, a number or range (> 0).
        rescale: Map the window to [0, 1] (float32); otherwise keep HU and the dtype.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> ct = da.Sample.from_numpy(torch.linspace(-1024, 2000, 8 ** 3).reshape(8, 8, 8), spacing=1.0)
        >>> out = CTWindow("abdomen")(ct, generator_for(0))      # level 40 HU, width 400, to [0, 1]
        >>> float(out["image"].min()), float(out["image"].max())
        (0.0, 1.0)
    """

    def __init__(self, window: str | Sequence[float] = "abdomen", level_shift: float | tuple[float, float] = 0.0,
                 width_scale: float | tuple[float, float] = 1.0, rescale: bool = True,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        if isinstance(window, str):
            if window not in CT_WINDOWS:
                raise ParameterError("window", window, "one of " + ", ".join(sorted(CT_WINDOWS)) + " or (level, width)")
        elif not (isinstance(window, (list, tuple)) and len(window) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in window) and window[1] > 0):
            raise ParameterError("window", window, "a window name or (level, width) with width > 0")
        self.window = window if isinstance(window, str) else [float(window[0]), float(window[1])]
        self.level_shift = as_uniform("level_shift", level_shift)
        self.width_scale = as_uniform("width_scale", width_scale, low=1e-3)
        self.rescale = bool(rescale)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def inference(self) -> CTWindow:
        """The nominal window, without the level and width jitter."""
        return CTWindow(self.window, 0.0, 1.0, self.rescale, self.layers, per_layer=self.per_layer)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        level, width = CT_WINDOWS[self.window] if isinstance(self.window, str) else self.window
        return {"level": level + self.level_shift.draw(generator), "width": width * self.width_scale.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        return self._window(data, *self._bounds(sample, params, name))

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        bounds = [self._bounds(s, p, name) for s, p in zip(samples, params)]
        lows, highs = per_element([b[0] for b in bounds], data), per_element([b[1] for b in bounds], data)
        return self._window(data, lows, highs, per_element([hi - lo for lo, hi in bounds], data))

    @staticmethod
    def _bounds(sample: Sample, params: dict[str, Any], name: str) -> tuple[float, float]:
        """The window ``(lo, hi)`` in HU; a sample declared as another modality than CT is refused."""
        if (declared := modality(sample)) is not None and declared != "CT":
            raise SampleError(f"CTWindow windows Hounsfield units, and sample.meta['modality'] is "
                              f"{sample.meta['modality']!r} (layer {name!r})")
        return params["level"] - params["width"] / 2, params["level"] + params["width"] / 2

    def _window(self, data: torch.Tensor, lo: Any, hi: Any, width: Any = None) -> torch.Tensor:
        clipped = data.clamp(lo, hi)
        return (clipped - lo) / (hi - lo if width is None else width) if self.rescale else clipped

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        return super().apply(self._as_float(sample, params), params)

    def apply_batch(self, samples: list[Sample], params: list[dict[str, Any]]) -> list[Sample]:
        if any(self.for_record(p) is not self for p in params):
            return [self.apply(s, p) for s, p in zip(samples, params)]
        return super().apply_batch(self._as_float_batch(samples, params), params)

    def _as_float_batch(self, samples: list[Sample], params: list[dict[str, Any]]) -> list[Sample]:
        """``_as_float`` of every element, into one float32 buffer per layer (the new dtype is a new
        buffer anyway), so that the batch path reads the elements as one view."""
        names = [[n for n, _ in self.layer_params(s, p)] for s, p in zip(samples, params)]
        if not self.rescale or any(n != names[0] for n in names) or any(s.grids for s in samples):
            return [self._as_float(s, p) for s, p in zip(samples, params)]
        out: list[dict[str, Layer]] = [{} for _ in samples]
        for n in names[0]:
            parts = [s.layers[n].data for s in samples]
            data = stacked(parts) if len({t.requires_grad for t in parts}) == 1 else None    # (as apply_batch)
            valids = [s.layers[v].data if (v := s.valid_of(n)) else None for s in samples]
            if data is None or (any(v is None for v in valids) and not all(v is None for v in valids)):
                return [self._as_float(s, p) for s, p in zip(samples, params)]
            floats = data.float()
            if valids[0] is not None:
                floats = floats.masked_fill(~stacked(valids), 0.0)      # type: ignore[arg-type,operator]
            for b, s in enumerate(samples):
                out[b][n] = replace(s.layers[n], data=floats[b], fill=0.0)
        return [s.with_layers(**layers) for s, layers in zip(samples, out)]

    def _as_float(self, sample: Sample, params: dict[str, Any]) -> Sample:
        """With ``rescale``, the target layers as float32 (the output is in [0, 1] whatever the HU
        dtype), invalid voxels 0; else ``sample``."""
        if not self.rescale:
            return sample
        layers = sample.layers
        floats = {}
        for n, _ in self.layer_params(sample, params):      # (a layer skipped by per_layer keeps its values)
            valid = layers[v].data if (v := sample.valid_of(n)) else None
            data = layers[n].data.float()
            floats[n] = replace(layers[n], data=data if valid is None else data.masked_fill(~valid, 0.0), fill=0.0)
        return sample.with_layers(**floats)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: CTWindow("brain", level_shift=(100.0, 200.0), width_scale=(0.5, 2.0), rescale=False),
            identity=lambda s: CTWindow((0.0, 1e9), rescale=False),
            bad=[("window", lambda: CTWindow("kidney")), ("width_scale", lambda: CTWindow(width_scale=0.0))])

