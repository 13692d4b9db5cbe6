"""The transform contract: ``config`` / ``sample_params`` / ``apply``, records, replay, composites."""

from __future__ import annotations

import copy
import functools
import inspect
import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
import yaml

from ..errors import ParameterError, SampleError
from .kernels.exact import exact_full
from .maps import PendingMap, Stage, forward_affine
from .params import as_builtin, to_json
from .record import ParamRecord
from .sample import Layer, Role, Sample, materialize_batch, stacked
from .schedule import ScheduledConstruction, build_at
from .space import Space, covering_grid
from .values import affine_values, cast, per_element

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["Transform", "SpatialTransform", "IntensityTransform", "Composite", "replay", "Compose", "OneOf",
           "SomeOf", "RandomApply", "transform_from_dict", "trace", "date_layers"]

SKIPPED = {"applied": False}

_T = TypeVar("_T", bound="Transform")


@functools.cache
def _argument_names(cls: type) -> tuple[str, ...]:
    """The named constructor arguments; a subclass whose ``__init__`` only forwards ``*args`` and
    ``**kwargs`` has its parent's (remembered per class: every record asks)."""
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = [p for n, p in inspect.signature(klass.__dict__["__init__"]).parameters.items() if n != "self"]
        named = [p.name for p in params
                 if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        if named or not params:
            return tuple(named)
    return ()


def _stands_for(obj: Any, method: str, batched: str) -> bool:
    """Whether ``obj``'s ``batched`` method (``step_batch``, ``_run_batch``, ...) stands for its
    per-element ``method``: the class that defines ``batched`` defines ``method`` too, or derives from
    the class that does. A subclass that overrides ``method`` alone runs each element through it."""
    owner = {a: next(k for k in type(obj).__mro__ if a in vars(k)) for a in (method, batched)}
    return issubclass(owner[batched], owner[method])


def _unzip(pairs: list[tuple[Sample, dict[str, Any]]]) -> tuple[list[Sample], list[dict[str, Any]]]:
    """``(outputs, params)`` of per-element ``(output, params)`` pairs (elements run alone)."""
    return [o for o, _ in pairs], [p for _, p in pairs]


def not_a_sample(value: Any) -> str:
    """What a transform expected instead of ``value``, and how to get it (the ``ParameterError`` text)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return ("a domainaug.Sample, not a bare array: wrap it with Sample.from_numpy(image, label=None, "
                "spacing=... or affine=..., crs=...) (image (C, *spatial) or (*spatial)), or load a file with "
                "domainaug.io.load(path)")
    if isinstance(value, dict):
        return ("a domainaug.Sample, not a dict: for MONAI or TorchIO dicts use domainaug.training.adapters "
                "(MonaiTransform, TorchioTransform), for TorchGeo samples "
                "domainaug.training.torchgeo.TorchGeoTransform, "
                "or build one with Sample.from_numpy(image, label=..., affine=...)")
    return "a domainaug.Sample (Sample.from_numpy(array, ...) or domainaug.io.load(path))"


class Transform(metaclass=ScheduledConstruction):
    """Base of every transform.

    Subclasses implement ``sample_params`` (every random draw, returning JSON-ready data) and
    ``apply`` (pure: same sample and params give the same output on any device). The constructor
    stores each argument under its own name, so ``config()`` can rebuild the object. ``p`` is the
    probability of applying; the draw is recorded (``{"applied": false}``), so a skip replays too.

    Schedules (``core.schedule``): a transform built with ``Schedule`` arguments is rebuilt per
    epoch by ``at_epoch``; params it draws record their epoch, and every ``apply``/``lazy`` that
    takes recorded params starts from ``for_record(params)``, the transform as it was then.
    """

    registry: ClassVar[dict[str, type[Transform]]] = {}
    p: float = 1.0
    #: The epoch the transform's schedules are evaluated at (see ``core.schedule``).
    epoch: int = 0
    _schedules: dict[str, Any] = {}
    #: The constructor call ``(args, kwargs)`` of a scheduled transform (set by ``ScheduledConstruction``).
    _arguments: tuple[tuple[Any, ...], dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register every concrete transform class by name (records and YAML name it); a name already
        taken by another class is refused."""
        super().__init_subclass__(**kwargs)
        if inspect.isabstract(cls):
            return
        taken = Transform.registry.get(cls.__name__)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ParameterError("class", cls.__name__, f"a transform name not taken (by {taken.__module__}."
                                 f"{taken.__qualname__}): records and pipelines name transforms by class name")
        Transform.registry[cls.__name__] = cls

    # --- configuration -------------------------------------------------------------------------
    def _set_p(self, p: float) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ParameterError("p", p, "a probability in [0, 1]")
        self.p = float(p)

    def arguments(self) -> dict[str, Any]:
        """The constructor arguments as they are now, JSON-ready (override when they are not stored
        under their own names)."""
        return {n: to_json(getattr(self, n)) for n in _argument_names(type(self))}

    def config(self) -> dict[str, Any]:
        """Constructor arguments, JSON-ready, so that ``type(self)(**self.config())`` is equivalent;
        scheduled arguments appear as their schedules, not as their current value."""
        out = self.arguments()
        return {**out, **{k: to_json(v) for k, v in self._schedules.items() if k in out}} if self._schedules else out

    # --- curriculum ----------------------------------------------------------------------------
    def at_epoch(self: _T, epoch: int) -> _T:
        """This transform as built at ``epoch`` (see ``core.schedule``): itself when it has no
        schedule or is at that epoch, else a new one of the same class and arguments."""
        if not self._schedules or epoch == self.epoch:
            return self
        out: _T = build_at(type(self), self._arguments, epoch, self._schedules)
        return out

    def set_epoch(self, epoch: int) -> None:
        """Evaluate every schedule of this transform (and its children) at ``epoch``, in place."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ParameterError("epoch", epoch, "a non-negative integer")
        if self._schedules and epoch != self.epoch:
            self.__dict__.update(self.at_epoch(epoch).__dict__)
        self.epoch = epoch

    def for_record(self: _T, params: dict[str, Any]) -> _T:
        """The transform that made ``params``: ``at_epoch`` of the epoch they recorded."""
        epoch = params.get("epoch") if self._schedules and isinstance(params, dict) else None
        return self if epoch is None else self.at_epoch(int(epoch))

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

    def inference(self) -> Transform | None:
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
        t = self.for_record(params)
        return t.lazy(sample, params) if lazy else t.apply(sample, params)

    def step(self, sample: Sample, generator: torch.Generator, *, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        """Draw (``p`` first) and run, returning the output and the params, without recording: what
        ``__call__`` and composites do with each child."""
        self.check_grids(sample)             # before any draw: the named error, not a confusing one
        if self._skipped(generator):
            return self.run(sample, dict(SKIPPED), lazy=lazy), dict(SKIPPED)
        out, params = self._draw_and_run(sample, generator, lazy)
        return out, self._stamp(params)

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        """Draw the params and run them (composites override it: they draw while they run)."""
        params = self.sample_params(sample, generator)
        return self.run(sample, params, lazy=lazy), params

    # --- batches (``training.BatchAugment``) ------------------------------------------------------
    def step_batch(self, samples: list[Sample], generators: list[torch.Generator], *,
                   lazy: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
        """``step`` of every element with its own generator, the work done for the batch at once
        where the op can (``run_batch``). Each generator sees exactly the draws of its element alone,
        in the same order, so element ``b`` equals ``step(samples[b], generators[b])``."""
        if not _stands_for(self, "step", "step_batch"):          # (a subclass with a ``step`` of its own)
            return _unzip([self.step(s, g, lazy=lazy) for s, g in zip(samples, generators)])
        for s in samples:
            self.check_grids(s)
        skipped = [self._skipped(g) for g in generators]
        outs = [self.run(s, dict(SKIPPED), lazy=lazy) if k else s for s, k in zip(samples, skipped)]
        params: list[dict[str, Any]] = [dict(SKIPPED) for _ in samples]
        todo = [i for i, k in enumerate(skipped) if not k]
        if todo:
            if _stands_for(self, "_draw_and_run", "_draw_and_run_batch"):
                done, drawn = self._draw_and_run_batch([samples[i] for i in todo], [generators[i] for i in todo],
                                                       lazy)
            else:                    # an op that draws while it runs (its own ``_draw_and_run``): each alone
                done, drawn = _unzip([self._draw_and_run(samples[i], generators[i], lazy) for i in todo])
            for i, out, p in zip(todo, done, drawn):
                outs[i], params[i] = out, self._stamp(p)
        return outs, params

    def _draw_and_run_batch(self, samples: list[Sample], generators: list[torch.Generator],
                            lazy: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
        """Every element's draw, then ``run_batch`` (``step_batch`` runs an op that draws while it runs,
        its own ``_draw_and_run``, on each element alone instead)."""
        params = [self.sample_params(s, g) for s, g in zip(samples, generators)]
        return self.run_batch(samples, params, lazy=lazy), params

    def run_batch(self, samples: list[Sample], params: list[dict[str, Any]], *, lazy: bool = False) -> list[Sample]:
        """``run`` of every element with its own params; equal to running each alone. The applied
        elements of one epoch go through ``_run_batch`` together."""
        if len(params) != len(samples):
            raise ParameterError("params", f"{len(params)} dicts", f"{len(samples)} (one per element)")
        if not _stands_for(self, "run", "run_batch"):            # (a subclass with a ``run`` of its own)
            return [self.run(s, p, lazy=lazy) for s, p in zip(samples, params)]
        outs = list(samples)
        together: list[int] = []
        for i, (s, p) in enumerate(zip(samples, params)):
            if p.get("applied", True) is False or self.for_record(p) is not self:
                outs[i] = self.run(s, p, lazy=lazy)
            else:
                self.check_grids(s)
                together.append(i)
        if together:
            for i, out in zip(together, self._run_batch([samples[i] for i in together],
                                                        [params[i] for i in together], lazy)):
                outs[i] = out
        return outs

    def _run_batch(self, samples: list[Sample], params: list[dict[str, Any]], lazy: bool) -> list[Sample]:
        """Applied params of this epoch on every element (ops that can override it to work on the
        batch at once; by default each element alone)."""
        return [self.lazy(s, p) if lazy else self.apply(s, p) for s, p in zip(samples, params)]

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        """Draw, apply, and append ``ParamRecord(name, config, params)`` to the output's history.

        Raises:
            ParameterError: ``sample`` is not a ``Sample`` (a bare tensor or array, a dict); the
                message says how to wrap it.
        """
        if not isinstance(sample, Sample):
            raise ParameterError("sample", type(sample).__name__, not_a_sample(sample))
        if generator is None:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        out, params = self.step(sample, generator, lazy=False)
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
    #: The map permutes the reference grid's voxels (flips, quarter turns): other grids get their own
    #: lattice moved with the content, so they are permuted too, never interpolated.
    permutes: ClassVar[bool] = False

    @abstractmethod
    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        """The output space and the pull-back stages (output world -> input world)."""

    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """The output grid of layers on ``grid`` (another grid of the sample than the reference
        ``space``) when ``space`` goes to ``out`` through ``stages``. By default a warp keeps every
        grid, and a regrid gives each grid the part of its own lattice (moved with the content) that
        covers ``out``'s world box, so a crop stays a copy on every grid."""
        if out == space:       # a warp: a permutation moves the lattice with the content (no interpolation)
            return covering_grid(grid, space, forward_affine(stages, space.ndim), own=True) if self.permutes else grid
        return covering_grid(grid, out, forward_affine(stages, space.ndim, type(self).__name__))

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.lazy(sample, params)
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
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        return self.lazy(sample, params).materialize()

    def geometry(self, pending: PendingMap, params: dict[str, Any]) -> PendingMap:
        if params.get("applied", True) is False:
            return pending
        return pending.then(*self.for_record(params).spatial_map(pending.space, params))

    def _run_batch(self, samples: list[Sample], params: list[dict[str, Any]], lazy: bool) -> list[Sample]:
        if not lazy and not _stands_for(self, "apply", "_run_batch"):     # (an ``apply`` of its own)
            return [self.apply(s, p) for s, p in zip(samples, params)]
        outs = [self.lazy(s, p) for s, p in zip(samples, params)]
        return outs if lazy else materialize_batch(outs)


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
        names = list(layers or ())
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ParameterError("layers", names, f"distinct layer names; {', '.join(map(repr, twice))} "
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

    def for_layer(self, name: str) -> IntensityTransform:
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

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        params = self.sample_params_on(sample, generator)
        return self.run(sample, params, lazy=lazy), params

    def step(self, sample: Sample, generator: torch.Generator, *, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        if not self.draws_per_layer(sample):
            return super().step(sample, generator, lazy=lazy)
        params = self._stamp(self._draw_layers(sample, generator))
        return self.run(sample, params, lazy=lazy), params

    def step_batch(self, samples: list[Sample], generators: list[torch.Generator], *,
                   lazy: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
        if any(self.draws_per_layer(s) for s in samples):       # draws per layer: each element alone
            return _unzip([self.step(s, g, lazy=lazy) for s, g in zip(samples, generators)])
        return super().step_batch(samples, generators, lazy=lazy)

    def _draw_and_run_batch(self, samples: list[Sample], generators: list[torch.Generator],
                            lazy: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
        params = [self.sample_params_on(s, g) for s, g in zip(samples, generators)]
        return self.run_batch(samples, params, lazy=lazy), params

    def _run_batch(self, samples: list[Sample], params: list[dict[str, Any]], lazy: bool) -> list[Sample]:
        """Fused into a pending permutation where each element can be (``lazy``), else the elements
        resampled together and changed together (``apply_batch``). A subclass with a ``lazy`` of its
        own runs it on each element."""
        if lazy and not _stands_for(self, "lazy", "_run_batch"):
            return super()._run_batch(samples, params, lazy)
        outs: list[Sample | None] = [self._fused(s, p) if lazy else None for s, p in zip(samples, params)]
        rest = [i for i, o in enumerate(outs) if o is None]
        if rest:
            done = self.apply_batch(materialize_batch([samples[i] for i in rest]), [params[i] for i in rest])
            for i, out in zip(rest, done):
                outs[i] = out
        return outs  # type: ignore[return-value]  # (every element set)

    def apply_batch(self, samples: list[Sample], params: list[dict[str, Any]]) -> list[Sample]:
        """``apply`` of every element (materialised, of this epoch), equal to each alone bit for bit on
        the CPU: one ``transform_batch`` per target layer over a ``(B, C, *spatial)`` view of the
        elements where they share the layer's shape and dtype and lie on one grid, else each alone."""
        names = self.target_layers(samples[0])
        # (an op with an ``apply`` of its own and no ``apply_batch`` beside it does each element alone)
        plain = _stands_for(self, "transform_layer", "transform_batch") and len(samples) > 1 and \
            _stands_for(self, "apply", "apply_batch") and \
            all(not s.grids and "layers" not in p for s, p in zip(samples, params)) and \
            all(self.target_layers(s) == names for s in samples[1:])
        if not plain:
            return [self.apply(s, p) for s, p in zip(samples, params)]
        changed: list[dict[str, Layer]] = [{} for _ in samples]
        for name in names:
            layers = [s.layers[name] for s in samples]
            valids = [s.layers[s.valid_name].data if s.valid_name else None for s in samples]
            # on the CPU a copy into one buffer costs a pass: worth it for an op of its own batch kernel
            # (noise, fields, blurs: several passes), not for the one-pass channel affine
            copy = samples[0].device.type != "cpu" or \
                type(self).transform_batch is not IntensityTransform.transform_batch
            # (elements with and without gradients: each alone, so that a stack does not tie the ones
            # without into the others' graph)
            grads = {layer.data.requires_grad for layer in layers}
            data = stacked([layer.data for layer in layers], copy) if len(grads) == 1 else None
            # (elements with and without a VALID layer: each alone, below)
            valid = None if data is None or any(v is None for v in valids) else stacked(valids, copy)  # type: ignore[arg-type]
            if data is None or (valid is None) != all(v is None for v in valids) or \
                    (valid is not None and not bool(valid.flatten(1).any(1).all())):
                return [self.apply(s, p) for s, p in zip(samples, params)]
            work = data.to(torch.float64 if data.dtype == torch.float64 else torch.float32)
            new = self.transform_batch(work, valid, params, samples, name)
            if new is None:
                return [self.apply(s, p) for s, p in zip(samples, params)]
            new = self._merged(new, work, data, valid)
            for b, layer in enumerate(layers):
                changed[b][name] = replace(layer, data=new[b])
        return [s.with_layers(**c) for s, c in zip(samples, changed)]

    def _merged(self, new: torch.Tensor, work: torch.Tensor, data: torch.Tensor,
                valid: torch.Tensor | None) -> torch.Tensor:
        """``new`` values on valid voxels, ``work`` (the input as float) elsewhere, cast to ``data``'s
        dtype; in place when ``new`` is a buffer of its own (``fresh_output``)."""
        if valid is not None:
            in_place = self.fresh_output and new.shape == work.shape and new.dtype == work.dtype and \
                new.is_contiguous() and \
                not (torch.is_grad_enabled() and (new.requires_grad or work.requires_grad)) \
                and new.untyped_storage().data_ptr() not in (work.untyped_storage().data_ptr(),
                                                             data.untyped_storage().data_ptr())
            new = torch.where(valid, new, work, out=new if in_place else None)
        return cast(new, data.dtype)

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor | None:
        """New values of layer ``name`` for every element at once: ``data`` ``(B, C, *spatial)`` float,
        ``valid`` ``(B, 1, *spatial)`` bool or ``None``, one params dict per element; equal to
        ``transform_layer`` of each element bit for bit on the CPU. ``None``: not vectorised (each
        element runs alone). Used only where the class that defines it also defines (or inherits
        from the definer of) ``transform_layer``. By default a per-channel affine op
        (``channel_affine``) is one pass with ``(B, C, 1, ..., 1)`` gains and biases."""
        affines = [self.channel_affine(data[b], None if valid is None else valid[b], params[b], samples[b], name)
                   for b in range(data.shape[0])]
        if any(a is None for a in affines):
            return None
        pairs = [a for a in affines if a is not None]
        return affine_values(data, per_element([g for g, _ in pairs], data), per_element([b for _, b in pairs], data))

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

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        """New values for one layer (float), computed from valid voxels where it matters. By default
        ``gain * x + bias`` from ``channel_affine``; an op that is not a per-channel affine overrides it."""
        affine = self.channel_affine(data, valid, params, sample, name)
        if affine is None:
            raise NotImplementedError(f"{type(self).__name__} defines neither transform_layer nor channel_affine")
        return affine_values(data, *affine)

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(gain, bias)`` shaped ``(C, 1, ..., 1)`` when this transform is ``gain * x + bias`` per
        channel (given statistics of ``data`` over ``valid``), else ``None``. Such a transform is
        fused into a pending exact permutation (flips, rot90): applied while the data is copied."""
        return None

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.lazy(sample, params)
        fused = self._fused(sample, params)
        return fused if fused is not None else self.apply(sample.materialize(), params)

    def _fused(self, sample: Sample, params: dict[str, Any]) -> Sample | None:
        """``sample`` with this op as value stages on its pending exact permutation, or ``None`` when
        it has none that can take them (the op then needs the data)."""
        pending = sample.pending
        # (only when every layer's data is on the map's source grid: a layer that another grid's data
        # reaches through the map, e.g. after ResampleToMatch, is interpolated, not permuted)
        if pending is not None and not pending.n_fields and not sample.grids and exact_full(pending) and \
                all(sample.source_of(n) == pending.source for n in sample.layer_names()):
            return self._fuse(sample, pending, params)
        return None

    def _fuse(self, sample: Sample, pending: PendingMap, params: dict[str, Any]) -> Sample | None:
        """``sample`` with this transform as value stages on its pending permutation, computed from the
        source-grid data (the same statistics: a full permutation moves voxels, adds and drops none)."""
        valid = sample.layer_info(sample.valid_name).data if sample.valid_name else None
        if valid is not None and not bool(valid.any()):
            return sample
        out = sample
        for name, own in self.layer_params(sample, params):
            data = sample.layer_info(name).data
            if data.dtype not in (torch.float32, torch.float64) or name in pending.values:
                return None          # (a second stage's statistics would need the first stage's output)
            affine = self.channel_affine(data, valid, own, sample, name)
            if affine is None:
                return None
            gain, bias = (t.detach().reshape(-1).double().cpu().numpy() for t in affine)
            out = out.with_values(name, np.broadcast_to(gain, (data.shape[0],)),
                                  np.broadcast_to(bias, (data.shape[0],)))
        return out

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
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
            changed[name] = replace(layer, data=self._merged(new, work, layer.data, valid))
        return sample.with_layers(**changed)


def date_layers(sample: Sample, layer: str = "image") -> list[str]:
    """``[layer]`` when ``sample`` has that layer, else its dates ``{layer}_t0``, ``{layer}_t1``, ...
    (one layer per acquisition, in date order), else ``[]``."""
    names = sample.layer_names()
    if layer in names:
        return [layer]
    found = [(int(m.group(1)), n) for n in names if (m := re.fullmatch(re.escape(layer) + r"_t(\d+)", n))]
    return [n for _, n in sorted(found)]


# ---------------------------------------------------------------------------------------------
# Replay and (de)serialisation.
# ---------------------------------------------------------------------------------------------
def _build(name: str, config: dict[str, Any]) -> Transform:
    if name not in Transform.registry:
        raise ParameterError("transform", name, f"a registered transform ({', '.join(sorted(Transform.registry))})")
    return Transform.registry[name](**config)


def transform_from_dict(d: dict[str, Any]) -> Transform:
    """Inverse of ``Transform.to_dict``; nested composites included. ``d`` may be any mapping
    (an OmegaConf ``DictConfig`` from a Hydra config tree)."""
    d = as_builtin(d)
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

    @staticmethod
    def finish(out: Sample, sample: Sample, lazy: bool = False) -> Sample:
        """What a composite returns for input ``sample``: ``out`` as is when ``lazy`` (a map may stay
        pending), else materialised and never the input object itself."""
        if lazy:
            return out
        return out.materialize() if out is not sample else sample.replace()

    @classmethod
    def finish_batch(cls, outs: list[Sample], samples: list[Sample], lazy: bool = False) -> list[Sample]:
        """``finish`` of every element, the pending maps resolved together (``materialize_batch``)."""
        if lazy:
            return outs
        materialize_batch(outs)
        return [cls.finish(o, s) for o, s in zip(outs, samples)]

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return self._draw_and_run(sample, generator, lazy=True)[1]

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        return self.finish(self.lazy(sample, params), sample)

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.lazy(sample, params)
        return self.walk(sample, params, lambda t, p, s: t.run(s, p, lazy=True))

    def geometry(self, pending: PendingMap, params: dict[str, Any]) -> PendingMap:
        if params.get("applied", True) is False:
            return pending
        return self.for_record(params).walk(pending, params, lambda t, p, s: t.geometry(s, p))

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

    Args:
        transforms: The transforms, applied in order (any registered transform, composites too).
        p: Probability of applying the whole sequence.

    Example:
        >>> pipeline = Compose([Affine(degrees=(-10, 10)), Elastic(), Gamma((0.8, 1.25))])
        >>> out = pipeline(sample, generator_for(0))          # one resampling pass for Affine + Elastic
        >>> len(out.history) - len(sample.history)
        1
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "p": self.p}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transform:
        return transform_from_dict(d)

    def inference(self) -> Compose | None:
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
            out, params = t.step(out, generator, lazy=True)
            children.append(params)
        return self.finish(out, sample, lazy), {"children": children}

    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        children = params["children"]
        if len(children) != len(self.transforms):
            raise ParameterError("params", f"{len(children)} children", f"{len(self.transforms)} (one per transform)")
        for t, p in zip(self.transforms, children):
            state = step(t, p, state)
        return state

    def _draw_and_run_batch(self, samples: list[Sample], generators: list[torch.Generator],
                            lazy: bool) -> tuple[list[Sample], list[dict[str, Any]]]:
        outs, children = list(samples), [[] for _ in samples]     # type: tuple[list[Sample], list[list[Any]]]
        for t in self.transforms:
            outs, params = t.step_batch(outs, generators, lazy=True)
            for kept, p in zip(children, params):
                kept.append(p)
        return self.finish_batch(outs, samples, lazy), [{"children": c} for c in children]

    def _run_batch(self, samples: list[Sample], params: list[dict[str, Any]], lazy: bool) -> list[Sample]:
        children = [p["children"] for p in params]
        # (wrong params raise the per-element error; a subclass's own walk, lazy or apply runs on each element)
        if any(len(c) != len(self.transforms) for c in children) or not _stands_for(self, "walk", "_run_batch") or \
                not _stands_for(self, "lazy" if lazy else "apply", "_run_batch"):
            return super()._run_batch(samples, params, lazy)
        outs = list(samples)
        for k, t in enumerate(self.transforms):
            outs = t.run_batch(outs, [c[k] for c in children], lazy=True)
        return self.finish_batch(outs, samples, lazy)

    @classmethod
    def contract_case(cls) -> Case:
        from ..intensity import Gamma
        from ..spatial import Affine, Elastic, Flip
        from ..testing import Case
        return Case(
            random=lambda s: Compose([Affine(degrees=(-10, 10)), Elastic(), Flip(axes=(0,), p=0.5), Gamma((0.8, 1.2))]),
            identity=lambda s: Compose([Affine(), Flip(axes=())]),
            bad=[("transforms", lambda: Compose([1]))], moves_points=True)  # type: ignore[list-item]  # (wrong on purpose)


class OneOf(Composite):
    """Apply one transform, chosen with the given weights (uniform by default).

    Params: ``{"index": i, "params": params of that child}``.

    Args:
        transforms: The candidates (at least one).
        weights: One non-negative weight per transform, not all 0 (uniform when ``None``).
        p: Probability of applying the chosen transform.

    Example:
        >>> out = OneOf([Flip(axes=(0,)), Rot90(axes=(0, 1))], weights=[1, 3])(sample, generator_for(0))
        >>> out.history[-1].params["index"] in (0, 1)
        True
    """

    def __init__(self, transforms: Sequence[Transform], weights: Sequence[float] | None = None,
                 p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        if not self.transforms:
            raise ParameterError("transforms", [], "at least one transform")
        if weights is not None:
            ok = isinstance(weights, (list, tuple)) and len(weights) == len(self.transforms) and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) \
                and sum(weights) > 0
            if not ok:
                raise ParameterError("weights", weights, f"{len(self.transforms)} non-negative numbers, not all 0")
            weights = [float(w) for w in weights]
        self.weights = weights
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "weights": self.weights, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        w = torch.tensor(self.weights or [1.0] * len(self.transforms), dtype=torch.float64)
        i = int(torch.multinomial(w, 1, generator=generator).item())
        out, params = self.transforms[i].step(sample, generator, lazy=True)
        return self.finish(out, sample, lazy), {"index": i, "params": params}

    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        return step(self.transforms[params["index"]], params["params"], state)

    @classmethod
    def contract_case(cls) -> Case:
        from ..spatial import Affine, Elastic
        from ..testing import Case
        return Case(
            random=lambda s: OneOf([Affine(degrees=(-20, 20)), Elastic()]), identity=lambda s: OneOf([Affine()]),
            bad=[("weights", lambda: OneOf([Affine()], weights=[-1])), ("transforms", lambda: OneOf([]))])


class SomeOf(Composite):
    """Apply ``n`` distinct transforms (a number, or a ``(min, max)`` range of counts), in random
    order unless ``keep_order``.

    Params: ``{"order": [indices], "children": [params of each applied child]}``.

    Args:
        transforms: The candidates.
        n: How many distinct transforms to apply: a count, or a ``(min, max)`` pair of counts drawn
            uniformly, ``0 <= min <= max <= len(transforms)``.
        keep_order: Apply the chosen ones in list order instead of a random order.
        p: Probability of applying.

    Example:
        >>> out = SomeOf([Flip(axes=(0,)), Gamma(), GaussianNoise()], n=(1, 2))(sample, generator_for(0))
        >>> 1 <= len(out.history[-1].params["order"]) <= 2
        True
    """

    def __init__(self, transforms: Sequence[Transform], n: int | tuple[int, int] = 1, keep_order: bool = False,
                 p: float = 1.0) -> None:
        self.transforms = _children("transforms", transforms)
        pair = (n, n) if isinstance(n, int) and not isinstance(n, bool) else \
            tuple(n) if isinstance(n, (list, tuple)) else ()
        if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair) \
                or pair[0] > pair[1] or pair[1] > len(self.transforms):
            raise ParameterError("n", n, f"a count or a (min, max) pair of counts with min <= max <= "
                                 f"{len(self.transforms)}")
        self.n = n if isinstance(n, int) else list(pair)
        self.keep_order = bool(keep_order)
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        return {"transforms": [t.to_dict() for t in self.transforms], "n": self.n,
                "keep_order": self.keep_order, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        lo, hi = (self.n, self.n) if isinstance(self.n, int) else self.n
        k = lo + int(torch.randint(0, hi - lo + 1, (), generator=generator).item())
        order = torch.randperm(len(self.transforms), generator=generator)[:k].tolist()
        order = sorted(order) if self.keep_order else order
        out, children = sample, []
        for i in order:
            out, params = self.transforms[i].step(out, generator, lazy=True)
            children.append(params)
        return self.finish(out, sample, lazy), {"order": order, "children": children}

    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        for i, p in zip(params["order"], params["children"]):
            state = step(self.transforms[i], p, state)
        return state

    @classmethod
    def contract_case(cls) -> Case:
        from ..intensity import Gamma
        from ..spatial import Affine, Flip
        from ..testing import Case
        return Case(
            random=lambda s: SomeOf([Affine(degrees=(-20, 20)), Flip(axes=(0,)), Gamma()], n=(1, 3)),
            identity=lambda s: SomeOf([Affine()], n=1),
            bad=[("n", lambda: SomeOf([Affine()], n=3))])


class RandomApply(Compose):
    """Apply a list of transforms, in order, with probability ``p`` (all or none).

    Args:
        transforms: The transforms, applied in order when applied.
        p: Probability of applying all of them (else none).

    Example:
        >>> out = RandomApply([Affine(degrees=(-10, 10)), Gamma()], p=0.5)(sample, generator_for(0))
    """

    def __init__(self, transforms: Sequence[Transform], p: float = 0.5) -> None:
        super().__init__(transforms, p)

    @classmethod
    def contract_case(cls) -> Case:
        from ..intensity import Gamma
        from ..spatial import Affine
        from ..testing import Case
        return Case(
            random=lambda s: RandomApply([Affine(degrees=(-20, 20)), Gamma()], p=0.7),
            identity=lambda s: RandomApply([Affine()], p=1.0),
            bad=[("p", lambda: RandomApply([Affine()], p=-0.1))])
