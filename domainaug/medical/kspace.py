"""MRI artefacts through k-space (``torch.fft``): spikes, ghosting, motion, Gibbs ringing.

Each returns a magnitude image, as a scanner does: ``|ifft(k')|`` of the changed k-space ``k'``, so
a non-negative input gives a non-negative output. A signed input (z-scored, or offset) is read as
a magnitude image shifted by its minimum ``m < 0`` (per channel): the artefact is computed on
``x - m`` and the result shifted back, so it never drops below ``m``.

They model an MR acquisition: a sample declared as another modality (``sample.meta["modality"]``)
is refused, and one that looks like CT in HU gets a warning (``physics.require_mr``). Spike and ghosting change
k-space Hermitian-symmetrically and motion mixes k-space segments of rigidly moved copies
symmetrically in ``+f``/``-f``, so before the magnitude the image is real (real FFTs for motion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..core.params import as_uniform, as_world_axes, check_positive_int, resolve_world_axes
from ..core.sample import Layer, Role, Sample
from ..core.transform import IntensityTransform
from ..errors import ParameterError
from ..spatial import Affine
from .physics import require_mr

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["Spike", "Ghosting", "Motion", "GibbsRinging"]


def _floor(data: torch.Tensor) -> torch.Tensor:
    """Per-channel ``min(0, min(x))``, shaped ``(C, 1, ..., 1)``: the shift that makes ``x`` a
    non-negative (magnitude) image."""
    low = data.reshape(data.shape[0], -1).amin(1).clamp(max=0)
    return low.view((-1,) + (1,) * (data.dim() - 1))


def _spectrum(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The k-space of ``data`` made non-negative (``_floor``), the floor, and the spatial dims."""
    dims = tuple(range(1, data.dim()))
    floor = _floor(data)
    return torch.fft.fftn(data - floor, dim=dims), floor, dims


def _frequencies(n: int, device: torch.device) -> torch.Tensor:
    """Signed frequency index of each FFT bin (0, 1, ..., -1)."""
    return torch.fft.fftfreq(n, d=1.0 / n, device=device).round().long()


class Spike(IntensityTransform):
    """Herringbone artefact: spikes in k-space at random frequencies (and their mirrors); the
    output is the magnitude image (see the module docstring).

    Args:
        intensity: Spike amplitude as a fraction of the largest k-space magnitude of the channel.
        num_spikes: How many spikes (each with its mirror).
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = Spike(intensity=(0.05, 0.2), num_spikes=1)(sample, generator_for(0))
    """

    grid_params = True          # k-space positions are drawn for the grid's shape

    def __init__(self, intensity: float | tuple[float, float] = (0.05, 0.2), num_spikes: int = 1,
                 layers: Sequence[str] | None = None, p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.intensity = as_uniform("intensity", intensity, low=0.0)
        self.num_spikes = check_positive_int("num_spikes", num_spikes)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        freqs = [[int(torch.randint(-(n // 2), (n + 1) // 2, (), generator=generator).item())
                  for n in sample.space.shape]
                 for _ in range(self.num_spikes)]
        return {"frequencies": freqs, "intensity": self.intensity.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if params["intensity"] == 0:
            return data
        require_mr("Spike", sample, name, data, valid)
        k, floor, dims = _spectrum(data)
        peak = k.abs().flatten(1).amax(1)
        for f in params["frequencies"]:
            for sign in (1, -1):                          # the mirror keeps k-space Hermitian: a real image
                index = tuple(int((sign * fi) % n) for fi, n in zip(f, data.shape[1:]))
                k[(slice(None),) + index] += params["intensity"] * peak / (1 if any(f) else 2)
        return (torch.fft.ifftn(k, dim=dims).abs() + floor).to(data.dtype)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Spike((0.1, 0.3), num_spikes=2), identity=lambda s: Spike(0.0),
            bad=[("num_spikes", lambda: Spike(num_spikes=0)), ("intensity", lambda: Spike(-1.0))])


class Ghosting(IntensityTransform):
    """Ghosts along the phase-encoding axis: every ``num_ghosts``-th k-space plane along ``axis``
    (except the centre) is scaled by ``1 - intensity``, which replicates the image at 1/num_ghosts
    of the field of view. The output is the magnitude image (see the module docstring).

    Args:
        num_ghosts: Spacing of the affected planes (ghost count), a number or range of integers.
        axis: Phase-encoding axis; ``None`` draws one.
        intensity: Attenuation of those planes, in [0, 1].
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = Ghosting(num_ghosts=(2, 6), intensity=(0.3, 0.8))(sample, generator_for(0))
    """

    def __init__(self, num_ghosts: int | tuple[int, int] = (2, 8), axis: int | None = None,
                 intensity: float | tuple[float, float] = (0.3, 0.8), layers: Sequence[str] | None = None,
                 p: float = 1.0, *, per_layer: bool | None = False) -> None:
        pair = (num_ghosts, num_ghosts) if isinstance(num_ghosts, int) and not isinstance(num_ghosts, bool) else \
            tuple(num_ghosts) if isinstance(num_ghosts, (list, tuple)) else ()
        if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in pair) \
                or pair[0] > pair[1]:
            raise ParameterError("num_ghosts", num_ghosts, "an integer >= 2 or a (min, max) pair of them")
        lo, hi = pair
        self.num_ghosts = num_ghosts if isinstance(num_ghosts, int) else [lo, hi]
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
            raise ParameterError("axis", axis, "None or an axis index")
        self.axis = axis
        self.intensity = as_uniform("intensity", intensity, low=0.0, high=1.0)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        lo, hi = (self.num_ghosts, self.num_ghosts) if isinstance(self.num_ghosts, int) else self.num_ghosts
        ndim = sample.space.ndim
        axis = self.axis if self.axis is not None else int(torch.randint(0, ndim, (), generator=generator).item())
        if not -ndim <= axis < ndim:
            raise ParameterError("axis", axis, f"an axis of a {ndim}D sample")
        return {"num_ghosts": lo + int(torch.randint(0, hi - lo + 1, (), generator=generator).item()),
                "axis": axis % ndim, "intensity": self.intensity.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if params["intensity"] == 0:
            return data
        require_mr("Ghosting", sample, name, data, valid)
        k, floor, dims = _spectrum(data)
        axis = params["axis"] + 1
        f = _frequencies(data.shape[axis], data.device)
        planes = ((f % params["num_ghosts"]) == 0) & (f != 0)               # symmetric in f: stays real
        scale = torch.where(planes, 1.0 - params["intensity"], 1.0).to(k.real.dtype)
        shape = [1] * data.dim()
        shape[axis] = -1
        return (torch.fft.ifftn(k * scale.view(shape), dim=dims).abs() + floor).to(data.dtype)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Ghosting((2, 4), intensity=(0.5, 0.9)), identity=lambda s: Ghosting(intensity=0.0),
            bad=[("num_ghosts", lambda: Ghosting(num_ghosts=1)), ("intensity", lambda: Ghosting(intensity=2.0))])


class Motion(IntensityTransform):
    """Rigid motion during acquisition: k-space is filled, segment by segment along the phase axis
    (centre first), from copies of the image moved by small random rotations and translations (mm);
    the image is the magnitude of the inverse transform of the mixed k-space (see the module
    docstring). Movements are rotations about, and translations along, world axes (``Affine``).

    Args:
        degrees: Rotation range of each movement (degrees).
        translation: Translation range of each movement (mm).
        num_movements: Movements during the scan (segments = movements + 1).
        axis: Phase-encoding axis.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer, e.g. the same gamma for all contrasts).
        p: Probability of applying.

    Example:
        >>> out = Motion(degrees=(-3, 3), translation=(-3, 3), num_movements=2)(sample, generator_for(0))
    """

    def __init__(self, degrees: float | tuple[float, float] = (-3.0, 3.0),
                 translation: float | tuple[float, float] = (-3.0, 3.0),
                 num_movements: int = 2, axis: int = 0, layers: Sequence[str] | None = None, p: float = 1.0, *,
                 per_layer: bool | None = False) -> None:
        self.degrees = as_uniform("degrees", degrees, low=-45, high=45)
        self.translation = as_uniform("translation", translation)
        self.num_movements = check_positive_int("num_movements", num_movements)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ParameterError("axis", axis, "an axis index")
        self.axis = axis
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        if not -sample.space.ndim <= self.axis < sample.space.ndim:
            raise ParameterError("axis", self.axis, f"an axis of a {sample.space.ndim}D sample")
        mover = Affine(degrees=self.degrees.to_json(), translation=self.translation.to_json())
        moves = [mover.sample_params(sample, generator) for _ in range(self.num_movements)]
        cuts = sorted(torch.rand(self.num_movements, generator=generator, dtype=torch.float64).tolist())
        return {"movements": moves, "cuts": cuts}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        if not any(any(m["degrees"]) or any(m["translation"]) for m in params["movements"]):
            return data                                        # no movement: the acquisition is exact
        require_mr("Motion", sample, name, data, valid)
        axis = self.axis % (data.dim() - 1) + 1
        dims = tuple(range(1, data.dim()))
        floor = _floor(data)
        data_m = data - floor                                 # a magnitude image; outside the view is 0 there
        k = torch.fft.rfftn(data_m, dim=dims)                 # real FFTs: half the work of complex ones
        n = data.shape[axis]
        ring = _frequencies(n, data.device).abs()                 # |f|: +f and -f stay in one segment
        if axis == data.dim() - 1:
            ring = ring[: n // 2 + 1]                             # rfftn keeps the non-negative half here
        rings = int(n // 2 + 1)
        bounds = [0] + [int(round(c * rings)) for c in params["cuts"]] + [rings]   # centre of k-space first
        probe = Sample(sample.space, {"image": Layer(data_m, Role.INTENSITY, 0.0)})
        for segment, move in enumerate(params["movements"]):
            lines = torch.nonzero((ring >= bounds[segment + 1]) & (ring < bounds[segment + 2]))[:, 0]
            if len(lines):
                moved = Affine().apply(probe, move)["image"]
                km = torch.fft.rfftn(moved, dim=dims)
                k.index_copy_(axis, lines, km.index_select(axis, lines))
        return (torch.fft.irfftn(k, s=data.shape[1:], dim=dims).abs() + floor).to(data.dtype)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Motion((-5.0, 5.0), (-3.0, 3.0)), identity=lambda s: Motion(0.0, 0.0),
            bad=[("num_movements", lambda: Motion(num_movements=0)), ("axis", lambda: Motion(axis="x"))])  # type: ignore[arg-type]  # (wrong on purpose)



class GibbsRinging(IntensityTransform):
    """Gibbs ringing (truncation artefact): k-space is cut to its central ``fraction`` along each of
    the world ``axes``, as an acquisition matrix too small for the field of view does; the output
    is the magnitude image (see the module docstring). Along an axis of ``n`` voxels the kept
    frequencies are ``|f| <= fraction * n / 2`` (symmetric, so the image stays real before the
    magnitude): ``fraction`` 1 keeps everything (the identity), smaller values ring more and blur.

    A world axis is cut whatever the array order (``axes="A"`` is the anterior-posterior phase
    direction of a file stored RAS or LSA alike: the array axis closest to it, ``Space.array_axis``).
    On a volume of ``n`` voxels per axis (``n`` odd) that varies along one axis only, MONAI's
    ``GibbsNoise(alpha)`` (a ball of radius ``(1 - alpha) * sqrt(2) * n / 2`` in k-space) equals
    ``fraction = sqrt(2) * (1 - alpha)`` here (tested).

    Args:
        fraction: Kept share of k-space along each axis, in [0, 1]; a number is fixed, a
            ``(min, max)`` range is drawn once per axis.
        axes: World axes to truncate: ``None`` (default, every axis), a letter (``"R"``, ``"A"``,
            ``"S"``, either direction), ``"slice"`` (the axis of the thickest voxels), an index 0-2
            (x, y, z; 0 and 1 on rasters), or a list of them.
        layers: INTENSITY layers to change (default: all).
        per_layer: One draw per target layer, recorded by layer name (default: one draw shared
            by every target layer).
        p: Probability of applying.

    Example:
        >>> out = GibbsRinging((0.3, 0.7), axes="A")(sample, torch.Generator().manual_seed(0))

    Params: ``{"fraction": {"<world axis index>": fraction}}``.
    """

    def __init__(self, fraction: float | tuple[float, float] = (0.4, 0.9),
                 axes: int | str | Sequence[int | str] | None = None, layers: Sequence[str] | None = None,
                 p: float = 1.0, *, per_layer: bool | None = False) -> None:
        self.fraction = as_uniform("fraction", fraction, low=0.0, high=1.0)
        self.axes = as_world_axes("axes", axes)
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        axes = resolve_world_axes("axes", self.axes, sample.space)
        return {"fraction": {str(a): self.fraction.draw(generator) for a in axes}}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        cut = {}
        for key, fraction in params["fraction"].items():
            world = int(key)
            if not 0 <= world < sample.space.ndim or not 0.0 <= float(fraction) <= 1.0:
                raise ParameterError("params['fraction']", {key: fraction},
                                     f"world axes of a {sample.space.ndim}D sample and fractions in [0, 1]")
            if float(fraction) < 1.0:
                cut[sample.space.array_axis(world)] = float(fraction)
        if not cut:
            return data
        require_mr("GibbsRinging", sample, name, data, valid)
        dims = tuple(range(1, data.dim()))
        floor = _floor(data)
        k = torch.fft.rfftn(data - floor, dim=dims)          # a symmetric cut keeps the image real: real FFTs
        for axis, fraction in cut.items():
            n = data.shape[axis + 1]
            f = _frequencies(n, data.device).abs()
            if axis + 1 == data.dim() - 1:
                f = f[: n // 2 + 1]                              # rfftn keeps the non-negative half here
            keep = (f <= fraction * n / 2).to(k.real.dtype)
            shape = [1] * data.dim()
            shape[axis + 1] = len(keep)
            k.mul_(keep.view(shape))
        return (torch.fft.irfftn(k, s=data.shape[1:], dim=dims).abs_() + floor).to(data.dtype)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: GibbsRinging((0.2, 0.6)), identity=lambda s: GibbsRinging(1.0),
            bad=[("fraction", lambda: GibbsRinging(1.5)), ("axes", lambda: GibbsRinging(axes="Q"))])
