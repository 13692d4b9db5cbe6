"""The transform contract: ``config`` / ``sample_params`` / ``apply``, records, replay, composites."""

from __future__ import annotations

import copy
import functools
import inspect
import re
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import yaml

from ..errors import ParameterError, SampleError
from .params import to_json
from .schedule import has_schedule, key_epochs, parse_schedules, resolve_schedules
from .record import ParamRecord
from .sample import Layer, Role, Sample
from .space import Space, covering_grid
from .kernels.exact import exact_full
from .kernels.spec import cast
from .maps import PendingMap, Stage, forward_affine

__all__ = ["Transform", "SpatialTransform", "IntensityTransform", "Composite", "replay", "Compose", "OneOf",
           "SomeOf", "RandomApply", "transform_from_dict", "trace", "date_layers"]

SKIPPED = {"applied": False}


def _argument_names(cls: type) -> list[str]:
    """The named constructor arguments; a subclass whose ``__init__`` only forwards ``*args`` and
    ``**kwargs`` has its parent's."""
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = [p for n, p in inspect.signature(klass.__init__).parameters.items() if n != "self"]
        named = [p.name for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if named or not params:
            return named
    return []


def _at_recorded_epoch(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``apply``/``lazy``/``spatial_map(x, params)`` so that params recorded at another epoch
    (``params["epoch"]``) run on the transform as it was then."""
    if getattr(method, "__isabstractmethod__", False):
        return method

    @functools.wraps(method)
    def wrapped(self: Transform, x: Any, params: dict[str, Any], *rest: Any) -> Any:
        t = self._at(params) if self._schedules and isinstance(params, dict) else self
        return method(t, x, params, *rest)

    return wrapped


class Transform(ABC):
    """Base of every transform.

    Subclasses implement ``sample_params`` (every random draw, returning JSON-ready data) and
    ``apply`` (pure: same sample and params give the same output on any device). The constructor
    stores each argument under its own name, so ``config()`` can rebuild the object. ``p`` is the
    probability of applying; the draw is recorded (``{"applied": false}``), so a skip replays too.
    """

    registry: ClassVar[dict[str, type["Transform"]]] = {}
    p: float = 1.0
    #: The epoch the transform's schedules are evaluated at (see ``core.schedule``).
    epoch: int = 0
    _schedules: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _scheduled_init(cls.__dict__["__init__"])
        if "config" in cls.__dict__:
            cls.config = _scheduled_config(cls.__dict__["config"])
        for name in ("apply", "lazy", "spatial_map"):      # a record replays at its recorded epoch
            if name in cls.__dict__ and not inspect.isabstract(cls.__dict__[name]):
                setattr(cls, name, _at_recorded_epoch(cls.__dict__[name]))
        if not inspect.isabstract(cls):
            Transform.registry[cls.__name__] = cls

    # --- configuration -------------------------------------------------------------------------
    def _set_p(self, p: float) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ParameterError("p", p, "a probability in [0, 1]")
        self.p = float(p)

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready, so that ``type(self)(**self.config())`` is equivalent
        (schedules appear as schedules, not as their current value)."""
        return {n: to_json(self._schedules.get(n, getattr(self, n))) for n in _argument_names(type(self))}

    # --- curriculum ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Evaluate every schedule of this transform (and its children) at ``epoch``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ParameterError("epoch", epoch, "a non-negative integer")
        if self._schedules and epoch != self.epoch:
            self._rebuild(epoch)
        self.epoch = epoch

    def _rebuild(self, epoch: int) -> None:
        self.__dict__["_resolving"] = True
        try:
            args, kwargs = _call_args(*self._arguments, epoch)
            type(self).__init__(self, *args, **kwargs)
        finally:
            self.__dict__["_resolving"] = False

    def _at(self, params: dict[str, Any]) -> "Transform":
        """This transform as it was at the epoch recorded in ``params`` (itself when unscheduled)."""
        epoch = params.get("epoch")
        if not self._schedules or epoch is None or epoch == self.epoch:
            return self
        clone = copy.copy(self)
        clone._rebuild(int(epoch))
        clone.epoch = int(epoch)
        return clone

    def _stamp(self, params: dict[str, Any]) -> dict[str, Any]:
        """A scheduled transform records the epoch of its draw, so that replay rebuilds that epoch."""
        return {**params, "epoch": self.epoch} if self._schedules and params.get("applied", True) else params

    def to_dict(self) -> dict[str, Any]:
        return {"transform": type(self).__name__, "config": self.config()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    #: True for steps with no randomness (reorientation, resampling, padding): kept by ``inference()``.
    deterministic: bool = False

    def inference(self) -> "Transform | None":
        """What this transform contributes to a prediction-time pipeline: itself when it is
        ``deterministic`` and always applied, else ``None`` (a random augmentation). Steps with a
        nominal form (e.g. an unjittered CT window) override this."""
        return self if self.deterministic and self.p == 1.0 else None

    # --- the contract --------------------------------------------------------------------------
    @abstractmethod
    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        """Draw every random number this call needs. The only place randomness lives."""

    @abstractmethod
    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        """Deterministic: same sample and params give the same output, on any device."""

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        """Like ``apply``, but a spatial transform may leave its map pending (see ``Compose``).
        The default needs the data, so it resamples anything pending first."""
        return self.apply(sample.materialize(), params)

    def geometry(self, pending: PendingMap, params: dict[str, Any]) -> PendingMap:
        """``pending`` followed by this transform's spatial map (unchanged for non-spatial ops).
        Reads no data: it rebuilds where every output voxel came from, e.g. to map a prediction
        back (test-time augmentation)."""
        return pending

    # --- driving -------------------------------------------------------------------------------
    def _skipped(self, generator: torch.Generator) -> bool:
        """The ``p`` draw: the one place a transform decides to skip itself."""
        return self.p < 1.0 and torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p

    def draw(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        """``p`` first, then the transform's own parameters."""
        return dict(SKIPPED) if self._skipped(generator) else self._stamp(self.sample_params(sample, generator))

    #: Whether the transform handles layers on grids of their own (``Sample.grids``); one that
    #: does not refuses such a sample by name instead of treating every layer as on one grid.
    many_grids: ClassVar[bool] = False

    def check_grids(self, sample: Sample) -> None:
        """``SampleError`` when ``sample`` has layers on several grids and this transform works on one."""
        if sample.grids and not self.many_grids:
            raise SampleError(f"{type(self).__name__} works on one grid, and layers {sorted(sample.grids)} of this "
                              "sample are on grids of their own; put ResampleToMatch(target=...) before it")

    def run(self, sample: Sample, params: dict[str, Any], *, lazy: bool = False) -> Sample:
        """Apply recorded params (a skipped record passes the sample through)."""
        self.check_grids(sample)
        if params.get("applied", True) is False:
            return sample if lazy else sample.materialize().replace()
        t = self._at(params)
        return t.lazy(sample, params) if lazy else t.apply(sample, params)

    def _call(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        self.check_grids(sample)             # before any draw: the named error, not a confusing one
        if self._skipped(generator):
            return self.run(sample, dict(SKIPPED), lazy=lazy), dict(SKIPPED)
        out, params = self._draw_and_run(sample, generator, lazy)
        return out, self._stamp(params)

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        params = self.sample_params(sample, generator)
        return self.run(sample, params, lazy=lazy), params

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        """Draw, apply, and append ``ParamRecord(name, config, params)`` to the output's history."""
        if generator is None:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        out, params = self._call(sample, generator, lazy=False)
        out = out if out is not sample else sample.replace()
        out.history = list(sample.history) + [ParamRecord(type(self).__name__, self.config(), params)]
        return out


class SpatialTransform(Transform):
    """A warp or a regrid, expressed as a map: ``spatial_map(space, params) -> (out_space, stages)``.

    ``stages`` pull output world positions back to input world positions (see
    ``core.maps``): affine matrices and smooth fields. A warp returns the input space
    (content and points move); a regrid returns a new space with an identity pull-back (every kept
    voxel keeps its world position). ``apply`` resamples once; inside a ``Compose`` consecutive maps
    are fused and resampled once. ``fusable`` is False for ops whose ``sample_params`` read data.
    """

    fusable: bool = True
    many_grids = True

    @abstractmethod
    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        """The output space and the pull-back stages (output world -> input world)."""

    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """The output grid of layers on ``grid`` (another grid of the sample than the reference
        ``space``) when ``space`` goes to ``out`` through ``stages``. By default a warp keeps every
        grid, and a regrid gives each grid the part of its own lattice (moved with the content) that
        covers ``out``'s world box, so a crop stays a copy on every grid."""
        if out == space:
            return grid
        return covering_grid(grid, out, forward_affine(stages, space.ndim, type(self).__name__))

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if not self.fusable:
            sample = sample.materialize()
        space, stages = self.spatial_map(sample.space, params)
        grids: dict[str, Space] = {}
        if sample.grids:
            found: dict[Space, Space] = {}
            for name, grid in sample.grids.items():
                if grid not in found:
                    found[grid] = self.layer_grid(grid, sample.space, space, stages, params)
                grids[name] = found[grid]
        return sample.lazy_warp(space, stages, grids)

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        return self.lazy(sample, params).materialize()

    def geometry(self, pending: PendingMap, params: dict[str, Any]) -> PendingMap:
        if params.get("applied", True) is False:
            return pending
        return pending.then(*self._at(params).spatial_map(pending.space, params))


class IntensityTransform(Transform):
    """A point-wise or local change of INTENSITY layers. Invalid (nodata) voxels keep their values,
    so a sample whose every voxel is invalid (e.g. a small patch an earlier step clouded over)
    passes through unchanged.

    Subclasses implement ``transform_layer(data, valid, params, sample, name)`` on float data
    ``(C, *spatial)`` (float32, or float64 for float64 layers) with ``valid`` ``(1, *spatial)`` bool
    or ``None``; ``name`` is the layer's name (``sample.layer_info(name)`` gives its channels).
    The result is cast back to the layer's dtype (integers rounded and clipped to the dtype range).
    ``layers`` names the layers to change (default: every INTENSITY layer that is not derived); a
    name the sample lacks stands for its dates when it has them (``date_layers``: ``image`` for
    ``image_t0``, ``image_t1``, ...).

    **One draw or one per layer.** With ``per_layer`` False (the default of generic ops) one draw
    serves every target layer (the same gamma for all contrasts) and the record is the op's own
    params. With ``per_layer`` True each target layer gets its own draw, ``p`` included, exactly as
    if the op ran on each layer alone (``layers=[name]``), one after the other from the same
    generator; the record is ``{"layers": {name: params or {"applied": false}}}``. ``None`` means
    per layer when there is more than one target layer (raster ops: one draw per date); the layers of
one band group (``sample.meta["band_groups"]``, bands of one acquisition on several grids) count
as one.
    """

    layers: Sequence[str] | None = None
    per_layer: bool | None = False
    many_grids = True
    #: ``sample_params`` draws for one grid (e.g. k-space positions): one draw cannot serve layers
    #: on several grids (``per_layer=True`` draws each on its own grid).
    grid_params: ClassVar[bool] = False
    #: ``transform_layer`` always returns a new tensor that nothing else refers to, so the nodata
    #: merge may write into it (a fresh large buffer costs more in page faults than the merge). Off
    #: by default: a subclass may return its input, a view of it, or a tensor it keeps.
    fresh_output: ClassVar[bool] = False

    def _set_layers(self, layers: Sequence[str] | None, *, per_layer: bool | None = False) -> None:
        if layers is not None and (isinstance(layers, str) or not isinstance(layers, (list, tuple))
                                   or not all(isinstance(n, str) for n in layers)):
            raise ParameterError("layers", layers, "None or a list of layer names")
        twice = sorted({n for n in layers or () if list(layers).count(n) > 1})
        if twice:
            raise ParameterError("layers", list(layers), f"distinct layer names; {', '.join(map(repr, twice))} "
                                 "named more than once")
        if per_layer not in (True, False, None):
            raise ParameterError("per_layer", per_layer, "True (one draw per layer), False (one draw for all) "
                                 "or None (per layer when there are several)")
        self.layers = None if layers is None else list(layers)
        self.per_layer = per_layer

    def target_layers(self, sample: Sample) -> list[str]:
        """The layers this op changes on ``sample``, in order (``layers``, or its default)."""
        return self.resolve_layers(sample, self.layers)

    def resolve_layers(self, sample: Sample, names: Sequence[str] | None) -> list[str]:
        """``names`` checked against ``sample`` (INTENSITY layers; a missing name stands for its dates);
        ``None``: every INTENSITY layer that is not derived."""
        if names is None:      # layers computed from others (AppendIndex) change only when named
            derived = set(sample.meta.get("derived_layers", ()))
            return [n for n in sample.layer_names(Role.INTENSITY) if n not in derived]
        out: list[str] = []
        for n in names:
            expanded = date_layers(sample, n)
            if not expanded:
                raise ParameterError("layers", list(names), f"names of layers in the sample ({sample.layer_names()})"
                                     f" or of their dates ({n}_t0, {n}_t1, ...)")
            for e in expanded:
                if sample.layer_info(e).role is not Role.INTENSITY:
                    raise ParameterError("layers", list(names), f"INTENSITY layers; {e!r} is "
                                         f"{sample.layer_info(e).role.value}")
                if e in out:
                    raise ParameterError("layers", list(names), f"distinct layers; {e!r} is named more than once")
                out.append(e)
        return out

    # --- one draw per layer --------------------------------------------------------------------
    def draws_per_layer(self, sample: Sample) -> bool:
        """Whether a call on ``sample`` draws once per target layer (see the class docstring)."""
        if self.per_layer is not None:
            return self.per_layer
        try:
            targets = self.target_layers(sample)
        except ParameterError:       # the one-draw path raises it, after the ``p`` draw as always
            return False
        group_of = {m: g for g, members in sample.meta.get("band_groups", {}).items() for m in members}
        return len({group_of.get(n, n) for n in targets}) > 1    # the band groups of one acquisition: one draw

    def for_layer(self, name: str) -> "IntensityTransform":
        """This op restricted to one layer with one shared draw: what ``per_layer`` runs per layer."""
        one = copy.copy(self)
        one.layers, one.per_layer = [name], False
        return one

    def _draw_layers(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        per: dict[str, Any] = {}
        for name in self.target_layers(sample):
            one = self.for_layer(name)
            per[name] = dict(SKIPPED) if one._skipped(generator) else one.sample_params(sample.on_grid(name), generator)
        return {"layers": per}

    def sample_params_on(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        """One draw for every target layer: on the reference grid, or on the grid the targets share."""
        if sample.grids:
            names = self.target_layers(sample)
            grids = {sample.space_of(n) for n in names}
            if len(grids) > 1 and self.grid_params:
                raise SampleError(f"{type(self).__name__} draws its parameters for one grid, and its layers "
                                  f"{names} are on {len(grids)} grids: pass per_layer=True, or put "
                                  "ResampleToMatch(target=...) first")
            if names and len(grids) == 1:
                return self.sample_params(sample.on_grid(names[0]), generator)
        return self.sample_params(sample, generator)

    def draw(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        if not self.draws_per_layer(sample):
            return dict(SKIPPED) if self._skipped(generator) else self._stamp(self.sample_params_on(sample, generator))
        return self._stamp(self._draw_layers(sample, generator))

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        params = self.sample_params_on(sample, generator)
        return self.run(sample, params, lazy=lazy), params

    def _call(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        if not self.draws_per_layer(sample):
            return super()._call(sample, generator, lazy)
        params = self._stamp(self._draw_layers(sample, generator))
        return self.run(sample, params, lazy=lazy), params

    def layer_params(self, sample: Sample, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``(layer, params)`` for every target layer that ``params`` changes: the shared params for
        each, or each layer's own (``{"layers": ...}``), skipped layers left out."""
        names = self.target_layers(sample)
        if "layers" not in params:
            return [(n, params) for n in names]
        per = params["layers"]
        if not isinstance(per, dict) or sorted(per) != sorted(names):
            raise ParameterError("params['layers']", sorted(per) if isinstance(per, dict) else per,
                                 f"params for each target layer of the sample, {names}")
        return [(n, per[n]) for n in names if per[n].get("applied", True) is not False]

    @abstractmethod
    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        """New values for one layer (float), computed from valid voxels where it matters."""

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(gain, bias)`` shaped ``(C, 1, ..., 1)`` when this transform is ``gain * x + bias`` per
        channel (given statistics of ``data`` over ``valid``), else ``None``. Such a transform is
        fused into a pending exact permutation (flips, rot90): applied while the data is copied."""
        return None

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        pending = sample.pending
        # (only when every layer's data is on the map's source grid: a layer that another grid's data
        # reaches through the map, e.g. after ResampleToMatch, is interpolated, not permuted)
        if pending is not None and not pending.n_fields and not sample.grids and exact_full(pending) and \
                all(sample.source_of(n) == pending.source for n in sample.layer_names()):
            fused = self._fuse(sample, params)
            if fused is not None:
                return fused
        return self.apply(sample.materialize(), params)

    def _fuse(self, sample: Sample, params: dict[str, Any]) -> Sample | None:
        """``sample`` with this transform as value stages on its pending permutation, computed from the
        source-grid data (the same statistics: a full permutation moves voxels, adds and drops none)."""
        valid = sample.layer_info(sample.valid_name).data if sample.valid_name else None
        if valid is not None and not bool(valid.any()):
            return sample
        out = sample
        for name, own in self.layer_params(sample, params):
            data = sample.layer_info(name).data
            if data.dtype not in (torch.float32, torch.float64) or name in sample.pending.values:
                return None          # (a second stage's statistics would need the first stage's output)
            affine = self.channel_affine(data, valid, own, sample, name)
            if affine is None:
                return None
            gain, bias = (t.detach().reshape(-1).double().cpu().numpy() for t in affine)
            out = out.with_values(name, np.broadcast_to(gain, (data.shape[0],)), np.broadcast_to(bias, (data.shape[0],)))
        return out

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        layers = sample.layers
        changed = {}
        for name, own in self.layer_params(sample, params):
            view = sample.on_grid(name)        # the layer's own grid, and the layers (VALID) on it
            valid = layers[view.valid_name].data if view.valid_name else None
            if valid is not None and not bool(valid.any()):
                continue                     # augmentation hid everything (clouds, rotations): nothing to change
            layer = layers[name]
            work = layer.data.to(torch.float64 if layer.data.dtype == torch.float64 else torch.float32)
            new = self.transform_layer(work, valid, own, view, name)
            if valid is not None:       # in place when ``new`` is a buffer of its own (``fresh_output``)
                own = self.fresh_output and new.shape == work.shape and new.dtype == work.dtype and \
                    new.is_contiguous() and not (torch.is_grad_enabled() and (new.requires_grad or work.requires_grad)) \
                    and new.untyped_storage().data_ptr() not in (work.untyped_storage().data_ptr(),
                                                                 layer.data.untyped_storage().data_ptr())
                new = torch.where(valid, new, work, out=new if own else None)
            changed[name] = replace(layer, data=cast(new, layer.data.dtype))
        return sample.with_layers(**changed)


def date_layers(sample: Sample, layer: str = "image") -> list[str]:
    """``[layer]`` when ``sample`` has that layer, else its dates ``{layer}_t0``, ``{layer}_t1``, ...
    (one layer per acquisition, in date order), else ``[]``."""
    names = sample.layer_names()
    if layer in names:
        return [layer]
    found = [(int(m.group(1)), n) for n in names if (m := re.fullmatch(re.escape(layer) + r"_t(\d+)", n))]
    return [n for _, n in sorted(found)]


def _call_args(args: tuple, kwargs: dict[str, Any], epoch: int) -> tuple[tuple, dict[str, Any]]:
    return tuple(resolve_schedules(v, epoch) for v in args), {k: resolve_schedules(v, epoch) for k, v in kwargs.items()}


def _check_epochs(schedules: list[Any]) -> list[int]:
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


def _scheduled_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a transform's ``__init__`` so that any argument may hold ``Schedule``s: the constructor
    runs with the values of every epoch where they may be extreme (validation), then with those of
    epoch 0. Subclasses that forward ``*args``/``**kwargs`` work too."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Transform, *args: Any, **kwargs: Any) -> None:
        if self.__dict__.get("_resolving"):          # a rebuild, or a parent's __init__ via super()
            init(self, *args, **kwargs)
            return
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            init(self, *args, **kwargs)               # let Python name the bad call
            return
        call_args = tuple(parse_schedules(v) for v in bound.args[1:])
        call_kwargs = {k: parse_schedules(v) for k, v in bound.kwargs.items()}
        named: dict[str, Any] = {}                    # argument name -> value, **kwargs entries included
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                named.update({k: parse_schedules(v) for k, v in value.items()})
            elif kind is not inspect.Parameter.VAR_POSITIONAL and name != "self":
                named[name] = parse_schedules(value)
        scheduled = {k: v for k, v in named.items() if has_schedule(v)}
        if not scheduled and any(has_schedule(v) for v in call_args):
            scheduled = {"*args": list(call_args)}
        self.__dict__["_resolving"] = True
        try:
            if scheduled:
                for epoch in _check_epochs(list(scheduled.values())):
                    a, k = _call_args(call_args, call_kwargs, epoch)
                    init(self, *a, **k)
            a, k = _call_args(call_args, call_kwargs, 0)
            init(self, *a, **k)
        finally:
            self.__dict__["_resolving"] = False
        if scheduled:
            self._schedules, self._arguments = scheduled, (call_args, call_kwargs)
        self.epoch = 0

    return __init__


def _scheduled_config(config: Callable[[Transform], dict[str, Any]]) -> Callable[[Transform], dict[str, Any]]:
    """Wrap an overridden ``config`` so that scheduled arguments show as their schedules."""
    @functools.wraps(config)
    def wrapped(self: Transform) -> dict[str, Any]:
        out = config(self)
        return {**out, **{k: to_json(v) for k, v in self._schedules.items() if k in out}} if self._schedules else out

    return wrapped


# ---------------------------------------------------------------------------------------------
# Replay and (de)serialisation.
# ---------------------------------------------------------------------------------------------
def _build(name: str, config: dict[str, Any]) -> Transform:
    if name not in Transform.registry:
        raise ParameterError("transform", name, f"a registered transform ({', '.join(sorted(Transform.registry))})")
    return Transform.registry[name](**config)


def transform_from_dict(d: dict[str, Any]) -> Transform:
    """Inverse of ``Transform.to_dict``; nested composites included."""
    if not isinstance(d, dict) or "transform" not in d:
        raise ParameterError("pipeline", d, "a mapping with 'transform' and 'config'")
    return _build(d["transform"], dict(d.get("config", {})))


def replay(sample: Sample, records: Sequence[ParamRecord | dict[str, Any]]) -> Sample:
    """Reproduce an output exactly from its records alone (they may have been through JSON)."""
    out = sample
    history = list(sample.history)
    for record in records:
        record = record if isinstance(record, ParamRecord) else ParamRecord.from_dict(record)
        out = _build(record.transform, record.config).run(out, record.params)
        history.append(record)
    out = out if out is not sample else sample.replace()
    out.history = history
    return out


def trace(space: Space, records: Sequence[ParamRecord | dict[str, Any]]) -> PendingMap:
    """The spatial map that ``records`` applied to a sample on ``space``, without any data: the
    output space and the pull-back from it to ``space`` (see ``core.maps``)."""
    pending = PendingMap(space, space, [])
    for record in records:
        record = record if isinstance(record, ParamRecord) else ParamRecord.from_dict(record)
        pending = _build(record.transform, record.config).geometry(pending, record.params)
    return pending


# ---------------------------------------------------------------------------------------------
# Composites.
# ---------------------------------------------------------------------------------------------
def _children(name: str, transforms: Any) -> list[Transform]:
    if isinstance(transforms, (Transform, dict)) or not isinstance(transforms, (list, tuple)):
        raise ParameterError(name, type(transforms).__name__, "a list of transforms (or of their dicts)")
    out = []
    for t in transforms:
        if isinstance(t, dict):
            t = transform_from_dict(t)
        if not isinstance(t, Transform):
            raise ParameterError(name, type(t).__name__, "a list of transforms (or of their dicts)")
        out.append(t)
    return out


def _finished(out: Sample, sample: Sample) -> Sample:
    """A materialised output that is never the input object itself."""
    return out.materialize() if out is not sample else sample.replace()


class Composite(Transform):
    """Transforms made of transforms. A child's draw may depend on what the earlier children did,
    so composites draw while they run (``_draw_and_run``); ``apply`` replays the children lazily
    (consecutive spatial maps fuse) and resamples once at the end."""

    transforms: list[Transform]
    many_grids = True                # each child checks for itself

    @abstractmethod
    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        """Draw each child's params as it runs; return the output and the nested params."""

    @abstractmethod
    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        """Fold ``step(child, child_params, state)`` over the children that ``params`` applied, in
        order. ``state`` has a ``space`` (a Sample or a PendingMap) for children built from it."""

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return self._draw_and_run(sample, generator, lazy=True)[1]

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        return _finished(self.lazy(sample, params), sample)

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        return self.walk(sample, params, lambda t, p, s: t.run(s, p, lazy=True))

    def geometry(self, pending: PendingMap, params: dict[str, Any]) -> PendingMap:
        if params.get("applied", True) is False:
            return pending
        return self._at(params).walk(pending, params, lambda t, p, s: t.geometry(s, p))

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for t in self.transforms:
            t.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.transforms)


class Compose(Composite):
    """Apply transforms in order. Consecutive spatial transforms are fused into one coordinate map
    and the layers are resampled once, when a non-spatial transform or the end needs the data.

    Params: ``{"children": [params of each child]}``.
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        self._set_p(p)

    def config(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "p": self.p}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transform:
        return transform_from_dict(d)

    def inference(self) -> "Compose | None":
        """The deterministic steps only, in order, for prediction (e.g. reorientation, CT windowing)."""
        if self.p < 1.0:
            return None
        kept = [t.inference() for t in self.transforms]
        return Compose([t for t in kept if t is not None])

    @classmethod
    def from_yaml(cls, text: str) -> Transform:
        return transform_from_dict(yaml.safe_load(text))

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        out, children = sample, []
        for t in self.transforms:
            out, params = t._call(out, generator, lazy=True)
            children.append(params)
        return (out if lazy else _finished(out, sample)), {"children": children}

    def walk(self, state, params, step):
        children = params["children"]
        if len(children) != len(self.transforms):
            raise ParameterError("params", f"{len(children)} children", f"{len(self.transforms)} (one per transform)")
        for t, p in zip(self.transforms, children):
            state = step(t, p, state)
        return state


class OneOf(Composite):
    """Apply one transform, chosen with the given weights (uniform by default).

    Params: ``{"index": i, "params": params of that child}``.
    """

    def __init__(self, transforms: Sequence[Transform], weights: Sequence[float] | None = None,
                 p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        if not self.transforms:
            raise ParameterError("transforms", [], "at least one transform")
        if weights is not None:
            ok = isinstance(weights, (list, tuple)) and len(weights) == len(self.transforms) and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) and sum(weights) > 0
            if not ok:
                raise ParameterError("weights", weights, f"{len(self.transforms)} non-negative numbers, not all 0")
            weights = [float(w) for w in weights]
        self.weights = weights
        self._set_p(p)

    def config(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "weights": self.weights, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        w = torch.tensor(self.weights or [1.0] * len(self.transforms), dtype=torch.float64)
        i = int(torch.multinomial(w, 1, generator=generator).item())
        out, params = self.transforms[i]._call(sample, generator, lazy=True)
        return (out if lazy else _finished(out, sample)), {"index": i, "params": params}

    def walk(self, state, params, step):
        return step(self.transforms[params["index"]], params["params"], state)


class SomeOf(Composite):
    """Apply ``n`` distinct transforms (a number, or a ``(min, max)`` range of counts), in random
    order unless ``keep_order``.

    Params: ``{"order": [indices], "children": [params of each applied child]}``.
    """

    def __init__(self, transforms: Sequence[Transform], n: int | tuple[int, int] = 1, keep_order: bool = False,
                 p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        pair = (n, n) if isinstance(n, int) and not isinstance(n, bool) else tuple(n) if isinstance(n, (list, tuple)) else ()
        if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair) \
                or pair[0] > pair[1] or pair[1] > len(self.transforms):
            raise ParameterError("n", n, f"a count or a (min, max) pair of counts with min <= max <= "
                                 f"{len(self.transforms)}")
        self.n = n if isinstance(n, int) else list(pair)
        self.keep_order = bool(keep_order)
        self._set_p(p)

    def config(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "n": self.n,
                "keep_order": self.keep_order, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        lo, hi = (self.n, self.n) if isinstance(self.n, int) else self.n
        k = lo + int(torch.randint(0, hi - lo + 1, (), generator=generator).item())
        order = torch.randperm(len(self.transforms), generator=generator)[:k].tolist()
        order = sorted(order) if self.keep_order else order
        out, children = sample, []
        for i in order:
            out, params = self.transforms[i]._call(out, generator, lazy=True)
            children.append(params)
        return (out if lazy else _finished(out, sample)), {"order": order, "children": children}

    def walk(self, state, params, step):
        for i, p in zip(params["order"], params["children"]):
            state = step(self.transforms[i], p, state)
        return state


class RandomApply(Compose):
    """Apply a list of transforms, in order, with probability ``p`` (all or none)."""

    def __init__(self, transforms: Sequence[Transform], p: float = 0.5) -> None:
        super().__init__(transforms, p)
