"""Argument helpers shared by every transform: ranges, choices, axes, JSON-ready conversion."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ParameterError
from .schedule import Schedule

if TYPE_CHECKING:
    from .space import Space

__all__ = ["as_builtin", "Uniform", "PerAxis", "as_uniform", "as_per_axis", "draw_per_axis", "check_choice",
           "check_positive_int", "as_size", "as_axes", "as_lengths", "to_json",
           "WORLD_AXIS_NAMES", "as_world_axes", "resolve_world_axes"]


def as_builtin(value: Any) -> Any:
    """``value`` with the containers of config libraries made built-in, at any depth: a ``Mapping``
    that is not a ``dict`` becomes a ``dict`` and a ``Sequence`` that is not a ``list``, ``tuple``,
    ``str`` or ``bytes`` becomes a ``list`` (OmegaConf's ``DictConfig``/``ListConfig``, as Hydra's
    ``instantiate`` passes them without ``_convert_``). The metaclass of transforms applies it to
    every constructor argument, so each validation helper sees lists, tuples and dicts only.
    Anything else (tensors, arrays, transforms) is returned as it is, and so is a container with
    nothing to convert (the same object)."""
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, dict):
        items = {k: as_builtin(v) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if isinstance(value, (list, tuple)):
        converted = [as_builtin(v) for v in value]
        if all(a is b for a, b in zip(converted, value)):
            return value
        return converted if isinstance(value, list) else tuple(converted)
    if isinstance(value, Mapping):
        return {k: as_builtin(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, memoryview):
        return [as_builtin(v) for v in value]
    return value


@dataclass(frozen=True)
class Uniform:
    """A fixed value (``low == high``) or a uniform range ``[low, high]``."""

    low: float
    high: float

    @property
    def fixed(self) -> bool:
        return self.low == self.high

    def draw(self, generator: torch.Generator) -> float:
        """One draw, in float64 on the CPU, so that params never depend on device or dtype."""
        u = torch.rand((), generator=generator, dtype=torch.float64).item()
        return self.low + (self.high - self.low) * u

    def to_json(self) -> float | list[float]:
        return self.low if self.fixed else [self.low, self.high]


def as_uniform(name: str, value: Any, low: float | None = None, high: float | None = None) -> Uniform:
    """A number is fixed; a ``(min, max)`` pair is a uniform range. Both ends must lie in ``[low, high]``."""
    if isinstance(value, Uniform):
        pair = (value.low, value.high)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        pair = (float(value[0]), float(value[1]))
    else:
        raise ParameterError(name, value, "a number or a (min, max) pair of numbers")
    a, b = pair
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ParameterError(name, value, "finite numbers")
    if a > b:
        raise ParameterError(name, value, "min <= max")
    if low is not None and a < low:
        raise ParameterError(name, value, f"min >= {low}")
    if high is not None and b > high:
        raise ParameterError(name, value, f"max <= {high}")
    return Uniform(a, b)


@dataclass(frozen=True)
class PerAxis:
    """One ``Uniform`` per axis (world axis, angle or shear pair), each drawn on its own."""

    values: tuple[Uniform, ...]

    def draw(self, generator: torch.Generator) -> list[float]:
        return [v.draw(generator) for v in self.values]

    def to_json(self) -> list[list[float]]:
        """Always ``[min, max]`` pairs, so that a 2D per-axis value never reads back as one range."""
        return [[v.low, v.high] for v in self.values]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def as_per_axis(name: str, value: Any, low: float | None = None, high: float | None = None) -> Uniform | PerAxis:
    """A value shared by every axis, or one per axis.

    A number is fixed and a ``(min, max)`` pair of numbers is a uniform range, each drawn
    independently per axis; any other sequence gives one number or pair per axis (its length is
    checked against the sample by ``draw_per_axis``). A pair of two numbers is always a range, so
    per-axis fixed values for two axes are written as pairs: ``[(5, 5), (0, 0)]``.
    """
    if isinstance(value, PerAxis):
        value = value.to_json()
    if _is_number(value) or isinstance(value, Uniform):
        return as_uniform(name, value, low, high)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value):
        if value[0] > value[1]:
            raise ParameterError(name, value, "min <= max: a pair of numbers is one (min, max) range for every "
                                 "axis; fixed values for two axes are written as pairs, e.g. [(5, 5), (0, 0)]")
        return as_uniform(name, value, low, high)
    if not isinstance(value, (tuple, list)) or not value:
        raise ParameterError(name, value, "a number, a (min, max) pair, or one number or pair per axis")
    return PerAxis(tuple(as_uniform(name, v, low, high) for v in value))


def draw_per_axis(name: str, spec: Uniform | PerAxis, count: int, ndim: int,
                  generator: torch.Generator) -> list[float]:
    """``count`` draws for a ``ndim``-D sample: ``count`` independent draws of a shared value, or
    one per entry of a per-axis value (which must have ``count`` entries)."""
    if isinstance(spec, Uniform):
        return [spec.draw(generator) for _ in range(count)]
    if len(spec.values) != count:
        raise ParameterError(name, spec.to_json(), f"a number, a (min, max) pair, or a list of exactly {count} "
                             f"numbers or pairs for a {ndim}D sample")
    return spec.draw(generator)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ParameterError(name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")
    return value


def as_layer_name(name: str, value: Any, optional: bool = False) -> Any:
    """``value`` checked as the name of a layer (a non-empty string), or ``None`` when ``optional``."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ParameterError(name, value, "None or the name of a layer" if optional else "the name of a layer")
    return value


def as_size(name: str, value: Any) -> tuple[int, ...]:
    """A spatial size: one positive integer (same on every axis) or one per axis."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ParameterError(name, value, "a positive integer or a tuple of positive integers (one per axis)")
    return tuple(int(v) for v in value)


def as_lengths(name: str, value: Any, ndim: int | None = None) -> float | list[float]:
    """Positive finite world lengths: one number, or one per axis (``ndim`` of them when given)."""
    single = isinstance(value, (int, float)) and not isinstance(value, bool)
    values = [value] if single else list(value) if isinstance(value, (list, tuple)) else None
    ok = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                        for v in values)
    if not ok or values is None or (ndim is not None and not single and len(values) not in (1, ndim)):
        expected = "positive world lengths (one, or one per axis)" if ndim is None else \
            f"a positive world length or {ndim} of them for a {ndim}D grid"
        raise ParameterError(name, value, expected)
    return float(values[0]) if single else [float(v) for v in values]


def as_axes(name: str, value: Any) -> tuple[int, ...] | None:
    """``None`` (every axis) or a tuple of axis indices (negative counts from the end)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                       for v in value):
        raise ParameterError(name, value, "None, an axis index or a tuple of axis indices")
    if len(set(value)) != len(value):
        raise ParameterError(name, value, "distinct axes")
    return tuple(int(v) for v in value)


def resolve_axes(name: str, axes: Sequence[int] | None, ndim: int) -> list[int]:
    """Axes made non-negative for a sample with ``ndim`` spatial dimensions."""
    if axes is None:
        return list(range(ndim))
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ParameterError(name, tuple(axes), f"axes in [-{ndim}, {ndim - 1}] for a {ndim}D sample")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ParameterError(name, tuple(axes), "distinct axes")
    return out


#: Names of world axes: RAS+ letters for scans (either direction names the axis) and x, y, z.
WORLD_AXIS_NAMES: dict[str, int] = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2, "X": 0, "Y": 1, "Z": 2}


def as_world_axes(name: str, value: Any) -> list[int | str] | None:
    """``None`` (every world axis), or world axes: an index (0 x, 1 y, 2 z), a letter of
    ``WORLD_AXIS_NAMES`` (``"S"``: superior-inferior of RAS+ scans) or ``"slice"`` (the world axis
    along which the voxels are thickest, read from each sample's affine), one or a list of them."""
    if value is None:
        return None
    items = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    expected = ("None, or world axes: an index 0-2 (x, y, z), a letter R/L/A/P/S/I/x/y/z or 'slice', "
                "one or a list of them")
    if not isinstance(items, (list, tuple)) or not items:
        raise ParameterError(name, value, expected)
    out: list[int | str] = []
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2:
            out.append(int(v))
        elif isinstance(v, str) and (v.upper() in WORLD_AXIS_NAMES or v.lower() == "slice"):
            out.append(v.lower() if v.lower() == "slice" else v.upper())
        else:
            raise ParameterError(name, value, expected)
    named = [WORLD_AXIS_NAMES[a] if isinstance(a, str) and a != "slice" else a for a in out]
    if len(set(named)) != len(named):
        raise ParameterError(name, value, "distinct world axes (R and L, A and P, S and I name one axis each)")
    return out


def resolve_world_axes(name: str, axes: Sequence[int | str] | None, space: Space) -> list[int]:
    """World axis indices of ``axes`` (from ``as_world_axes``) on ``space``: ``"slice"`` is the world
    axis of the array axis with the largest spacing (world z when it ties for the largest, e.g. on
    an isotropic grid); letters R/L/A/P/S/I need a 3D scan."""
    n = space.ndim
    if axes is None:
        return list(range(n))
    out: list[int] = []
    for a in axes:
        if a == "slice":
            spacing = space.spacing
            thick = [space.world_axes()[i] for i in range(n) if spacing[i] >= spacing.max() * (1 - 1e-6)]
            w = 2 if n == 3 and 2 in thick else thick[0]
        elif isinstance(a, str):
            if n != 3 and a in "RLAPSI":
                raise ParameterError(name, list(axes), f"world axes of a {n}D sample: 0/x and 1/y (R/L/A/P/S/I "
                                     "name the axes of a 3D scan)")
            w = WORLD_AXIS_NAMES[a]
        else:
            w = int(a)
        if w >= n:
            raise ParameterError(name, list(axes), f"world axes of a {n}D sample (0 to {n - 1})")
        if w in out:
            raise ParameterError(name, list(axes), f"distinct world axes on this sample ({a!r} names axis {w} twice)")
        out.append(w)
    return out


def per_axis(name: str, value: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Broadcast a one-element size to ``ndim`` axes, or check it has ``ndim`` entries."""
    if len(value) == 1:
        return value * ndim
    if len(value) != ndim:
        raise ParameterError(name, value, f"1 or {ndim} values for a {ndim}D sample")
    return value


def to_json(value: Any) -> Any:
    """Make constructor arguments JSON-ready: tuples become lists, ranges become pairs."""
    if isinstance(value, (Uniform, PerAxis, Schedule)):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
