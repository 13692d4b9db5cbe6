"""Curriculum schedules: a number that changes with the training epoch.

Any numeric constructor argument of any transform, its probability ``p`` included, may be a
``Schedule`` (alone, or inside a ``(min, max)`` pair)::

    Flip(axes=(0,), p=Schedule.linear(0.3, 1.0, epochs=20))         # p = 0.3 + 0.7 * epoch / 20
    Gamma(gamma=(Schedule.cosine(1.0, 0.5, 10), Schedule.cosine(1.0, 2.0, 10)))

How it works, in one step: transform classes are built by ``ScheduledConstruction`` (their
metaclass). Calling a class with ``Schedule`` arguments validates them by building the transform at
every epoch where they may be extreme (so a probability schedule leaving [0, 1] is a
``ParameterError`` up front), then returns the transform built with the values of epoch 0, which
remembers its schedules. Nothing else is wrapped: ``Transform.at_epoch(e)`` builds the same class
from the same arguments at epoch ``e`` (``build_at``); ``set_epoch(e)`` (or
``AugmentedDataset.set_epoch``) takes that state, and replay runs a record on ``at_epoch`` of the
epoch it recorded. In ``config()`` and records a schedule is the mapping ``{"schedule": kind, ...}``,
and a scheduled transform records the epoch of each draw in its params, so records replay.
"""

from __future__ import annotations

import inspect
import math
from abc import ABCMeta
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["Schedule", "has_schedule", "parse_schedules", "resolve_schedules", "key_epochs", "check_epochs",
           "ScheduledConstruction", "build_at"]

KINDS = ("linear", "cosine", "step")


def _number(name: str, v: Any) -> float | int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ParameterError(name, v, "a finite number")
    return v


@dataclass(frozen=True)
class Schedule:
    """``linear``/``cosine``: from ``start`` at epoch 0 to ``end`` at ``epochs``, constant after.
    ``step``: ``values[i]`` from ``milestones[i-1]`` on (``values[0]`` before the first milestone).
    ``integer=True`` rounds the values (for counts and sizes, e.g. a crop size); otherwise they are
    floats, so ``Schedule.linear(0, 1, 10)`` is a smooth ramp."""

    kind: str
    start: float = 0.0
    end: float = 0.0
    epochs: int = 1
    values: tuple = ()
    milestones: tuple = ()
    integer: bool = False

    @classmethod
    def linear(cls, start: float, end: float, epochs: int, integer: bool = False) -> Schedule:
        return cls._ramp("linear", start, end, epochs, integer)

    @classmethod
    def cosine(cls, start: float, end: float, epochs: int, integer: bool = False) -> Schedule:
        """Half a cosine from ``start`` to ``end``: slow at both ends."""
        return cls._ramp("cosine", start, end, epochs, integer)

    @classmethod
    def step(cls, values: list[float], milestones: list[int], integer: bool = False) -> Schedule:
        if not isinstance(values, (list, tuple)) or not values:
            raise ParameterError("values", values, "a non-empty list of numbers")
        if not isinstance(milestones, (list, tuple)) or len(milestones) != len(values) - 1 or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones) or \
                list(milestones) != sorted(set(milestones)):
            raise ParameterError("milestones", milestones, f"{len(values) - 1} increasing epochs >= 1 "
                                 "(one per change of value)")
        return cls("step", values=tuple(_number("values", v) for v in values), milestones=tuple(milestones),
                   integer=bool(integer))

    @classmethod
    def _ramp(cls, kind: str, start: float, end: float, epochs: int, integer: bool = False) -> Schedule:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ParameterError("epochs", epochs, "an integer >= 1 (the epoch where the schedule ends)")
        return cls(kind, _number("start", start), _number("end", end), epochs, integer=bool(integer))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Schedule:
        kind = d.get("schedule")
        if kind not in KINDS:
            raise ParameterError("schedule", kind, "one of " + ", ".join(KINDS))
        try:
            if kind == "step":
                return cls.step(d["values"], d["milestones"], d.get("integer", False))
            return cls._ramp(kind, d["start"], d["end"], d["epochs"], d.get("integer", False))
        except KeyError as e:
            raise ParameterError("schedule", d, f"a {kind} schedule with {e.args[0]!r}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.kind == "step":
            out = {"schedule": "step", "values": list(self.values), "milestones": list(self.milestones)}
        else:
            out = {"schedule": self.kind, "start": self.start, "end": self.end, "epochs": self.epochs}
        return {**out, "integer": True} if self.integer else out

    def at(self, epoch: int) -> float | int:
        if self.kind == "step":
            value = self.values[sum(epoch >= m for m in self.milestones)]
        else:
            t = min(epoch / self.epochs, 1.0)
            t = t if self.kind == "linear" else (1.0 - math.cos(math.pi * t)) / 2.0
            value = self.start + (self.end - self.start) * t
        return int(round(value)) if self.integer else float(value)

    def key_epochs(self) -> list[int]:
        """Epochs where the value is extreme (every other value lies between two of these)."""
        return [0, *self.milestones] if self.kind == "step" else [0, self.epochs]


def parse_schedules(value: Any) -> Any:
    """Schedule mappings (from JSON/YAML) become ``Schedule`` objects, inside lists too."""
    if isinstance(value, dict) and "schedule" in value:
        return Schedule.from_json(value)
    if isinstance(value, (list, tuple)):
        return type(value)(parse_schedules(v) for v in value)
    return value


def has_schedule(value: Any) -> bool:
    if isinstance(value, Schedule):
        return True
    return isinstance(value, (list, tuple)) and any(has_schedule(v) for v in value)


def resolve_schedules(value: Any, epoch: int) -> Any:
    """``value`` with every schedule replaced by its value at ``epoch``."""
    if isinstance(value, Schedule):
        return value.at(epoch)
    if isinstance(value, (list, tuple)):
        return type(value)(resolve_schedules(v, epoch) for v in value)
    return value


def key_epochs(value: Any) -> set[int]:
    if isinstance(value, Schedule):
        return set(value.key_epochs())
    if isinstance(value, (list, tuple)):
        return set().union(*(key_epochs(v) for v in value)) if value else set()
    return set()


def check_epochs(schedules: list[Any]) -> list[int]:
    """Epochs at which to validate a transform's scheduled arguments. One schedule is extreme at its
    key epochs (and just before a step), but two schedules in one argument (a ``(min, max)`` pair
    of different kinds) can cross in between: then every epoch up to the last key one is checked
    (at most 1000, then 1000 evenly spaced)."""
    keys = set().union(*(key_epochs(v) for v in schedules))
    keys |= {e - 1 for e in keys if e > 0}
    if sum(_count(v) for v in schedules) > 1:
        last = max(keys)
        keys |= set(range(last + 1)) if last <= 1000 else set(np.linspace(0, last, 1000).astype(int).tolist())
    return sorted(keys)


def _count(value: Any) -> int:
    if isinstance(value, (list, tuple)):
        return sum(_count(v) for v in value)
    if isinstance(value, dict):
        return sum(_count(v) for v in value.values())
    return int(has_schedule(value))


def _resolved(arguments: tuple[tuple, dict[str, Any]], epoch: int) -> tuple[tuple, dict[str, Any]]:
    args, kwargs = arguments
    return tuple(resolve_schedules(v, epoch) for v in args), {k: resolve_schedules(v, epoch) for k, v in kwargs.items()}


_SIGNATURES: dict[type, inspect.Signature] = {}


def _signature(cls: type[Any]) -> inspect.Signature:
    """The constructor's signature, remembered per class (every construction asks, and ops build
    helper transforms per call)."""
    found = _SIGNATURES.get(cls)
    if found is None:
        found = _SIGNATURES[cls] = inspect.signature(cls.__init__)
    return found


def _named(cls: type[Any], args: tuple, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Argument name -> value of a constructor call (``**kwargs`` entries included), or None when the
    call does not bind (the constructor then names the bad call itself)."""
    signature = _signature(cls)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return None
    named: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            named[name] = value
    return named


def build_at(cls: type, arguments: tuple[tuple, dict[str, Any]], epoch: int,
             schedules: dict[str, Any] | None = None) -> Any:
    """An instance of ``cls`` built from constructor ``arguments`` (which may hold schedules) with
    the values of ``epoch``; given its ``schedules`` (argument name -> schedule), it keeps them, the
    arguments and the epoch, for ``Transform.at_epoch``."""
    args, kwargs = _resolved(arguments, epoch)
    out = ABCMeta.__call__(cls, *args, **kwargs)
    if schedules is not None:
        out._schedules, out._arguments, out.epoch = schedules, arguments, epoch
    return out


class ScheduledConstruction(ABCMeta):
    """The metaclass of transforms: every argument is first made of built-in containers
    (``params.as_builtin``: an OmegaConf ``ListConfig``/``DictConfig`` from Hydra is a list/dict);
    a call with ``Schedule`` arguments (or their JSON mappings)
    validates them at every epoch where they may be extreme, then returns the transform built at
    epoch 0 with ``_schedules`` (argument name -> schedule) and ``_arguments`` (the call) kept, for
    ``Transform.at_epoch``. A call without schedules is an ordinary construction."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        from .params import as_builtin  # (params imports this module)
        args = tuple(parse_schedules(as_builtin(v)) for v in args)
        kwargs = {k: parse_schedules(as_builtin(v)) for k, v in kwargs.items()}
        named = _named(cls, args, kwargs)
        scheduled = {k: v for k, v in (named or {}).items() if has_schedule(v)}
        if not scheduled and any(has_schedule(v) for v in args):
            scheduled = {"*args": list(args)}
        if not scheduled:
            return super().__call__(*args, **kwargs)
        for epoch in check_epochs(list(scheduled.values())):
            build_at(cls, (args, kwargs), epoch)
        return build_at(cls, (args, kwargs), 0, scheduled)
