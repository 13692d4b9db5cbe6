"""Policy search: tune an augmentation to a dataset with Optuna, and grade it honestly.

``tune`` searches a ``SearchSpace`` (TPE sampler, seeded; median pruner on the per-epoch score of
the inner validation fold; the study in SQLite, so a killed search resumes where it stopped) by
training the task's model with each candidate pipeline on inner folds of the data it is given.
``run_tune_config`` (``domainaug tune CONFIG.yaml``) nests it: for every outer fold the search sees
only that fold's training part, and the setting it picks is compared with "none" and the domain
preset on the held-out outer fold through ``kfold_compare`` and its paired tests.

Search spaces (the ``tune.space`` mapping of a config; candidate name -> one of):

- ``null``: no augmentation (the search may find that none is best).
- ``{RandAugment: {n: [1, 3], magnitude: [0, 10], ops: [medical, generic, [rotate, gamma]]}}``:
  ``n`` an integer range, ``magnitude`` a float range, ``ops`` a list of choices, each an op set
  name or a list of op names (a single value, not a list, is fixed; so is a number).
- ``{TrivialAugment: {ops: [...], max_magnitude: [2, 10]}}``.
- ``{pipeline: PIPELINE, ranges: {ADDRESS: [lo, hi], ...}}``: any pipeline (``{preset: NAME}`` or a
  transform dict) with some numeric arguments searched. ``ADDRESS`` is ``Class.argument`` (the one
  transform of that class in the pipeline; ``Class[i]`` for the i-th, from 0, when there are
  several), optionally with ``.0``/``.1`` for one end of a ``(min, max)`` argument. A number
  argument takes the drawn value; a symmetric pair ``(-a, a)`` (e.g. ``Affine.degrees``) becomes
  ``(-x, x)``; any other pair needs ``.0`` or ``.1``. Integer bounds on an integer argument draw
  integers. ``Class.p`` searches the probability.

With more than one candidate the trial first picks a candidate (a categorical ``candidate``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.sample import Sample
from ..core.transform import Compose, Transform, transform_from_dict
from ..errors import ParameterError
from ..extras import require
from .compare import Comparison, group_kfold, kfold_compare, score

__all__ = ["SearchSpace", "TuneResult", "tune", "run_tune_config"]

_OPS_JOIN = "+"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _range(name: str, value: Any) -> tuple[float, float] | None:
    """``[lo, hi]`` -> the range; a number -> None (fixed)."""
    if _is_number(value):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value) \
            and value[0] <= value[1]:
        return value[0], value[1]
    raise ParameterError(name, value, "a number (fixed) or a range [lo, hi] with lo <= hi")


def _suggest(trial: Any, name: str, lo: Any, hi: Any, integer: bool) -> Any:
    if integer:
        return trial.suggest_int(name, int(lo), int(hi))
    return trial.suggest_float(name, float(lo), float(hi))


@dataclass
class _Candidate:
    name: str
    kind: str                       # "none" | "RandAugment" | "TrivialAugment" | "pipeline"
    spec: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] | None = None          # the pipeline dict (kind "pipeline")

    def build(self, trial: Any) -> Transform | None:
        if self.kind == "none":
            return None
        if self.kind in ("RandAugment", "TrivialAugment"):
            return _policy(self.kind, self._values(trial))
        assert self.base is not None
        return transform_from_dict(_set_ranges(self.base, self._values(trial)))

    def _values(self, trial: Any) -> dict[str, Any]:
        """Drawn (or fixed) values of this candidate, under names prefixed by the candidate's."""
        out: dict[str, Any] = {}
        for key, (kind, value) in self.spec.items():
            label = f"{self.name}/{key}"
            if kind == "fixed":
                out[key] = value
            elif kind == "choice":
                out[key] = trial.suggest_categorical(label, value)
            else:
                lo, hi, integer = value
                out[key] = _suggest(trial, label, lo, hi, integer)
        return out


def _policy(kind: str, values: dict[str, Any]) -> Transform:
    from ..policy import RandAugment, TrivialAugment
    args = dict(values)
    if isinstance(args.get("ops"), str) and _OPS_JOIN in args["ops"]:
        args["ops"] = [o for o in args["ops"].split(_OPS_JOIN) if o]
    return (RandAugment if kind == "RandAugment" else TrivialAugment)(**args)


def _ops_label(name: str, value: Any) -> str:
    from ..policy import OP_SETS, OPS
    if isinstance(value, str) and value in OP_SETS:
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v in OPS for v in value):
        return _OPS_JOIN.join(value) + (_OPS_JOIN if len(value) == 1 else "")   # "rotate+": a list, not a set
    raise ParameterError(name, value, f"an op set ({', '.join(sorted(OP_SETS))}) or a list of op names "
                         f"({', '.join(sorted(OPS))})")


def _nodes(tree: Any) -> list[dict[str, Any]]:
    """Every transform dict in a pipeline dict, depth first, in order."""
    out: list[dict[str, Any]] = []
    if isinstance(tree, dict):
        if "transform" in tree:
            out.append(tree)
        for v in tree.values():
            out += _nodes(v)
    elif isinstance(tree, list):
        for v in tree:
            out += _nodes(v)
    return out


def _address(tree: dict[str, Any], address: str) -> tuple[dict[str, Any], str, int | None]:
    """The config dict, argument and element index that ``Class[i].argument.k`` names."""
    parts = address.split(".")
    if len(parts) not in (2, 3):
        raise ParameterError("ranges", address, "Class.argument, Class[i].argument or Class.argument.0/1")
    head, argument = parts[0], parts[1]
    element = None
    if len(parts) == 3:
        if parts[2] not in ("0", "1"):
            raise ParameterError("ranges", address, "an element index .0 or .1 of a (min, max) argument")
        element = int(parts[2])
    cls, index = head, None
    if head.endswith("]") and "[" in head:
        cls, _, rest = head[:-1].partition("[")
        if not rest.isdigit():
            raise ParameterError("ranges", address, "Class[i] with an index i >= 0")
        index = int(rest)
    matches = [n for n in _nodes(tree) if n["transform"] == cls]
    if not matches:
        found = sorted({n["transform"] for n in _nodes(tree)})
        raise ParameterError("ranges", address, f"a transform of the pipeline ({', '.join(found)})")
    if index is None and len(matches) > 1:
        raise ParameterError("ranges", address, f"{cls}[i] (the pipeline holds {len(matches)} {cls} transforms)")
    if index is not None and index >= len(matches):
        raise ParameterError("ranges", address, f"an index below {len(matches)} (the {cls} transforms)")
    config = matches[index or 0].setdefault("config", {})
    if argument not in config:
        raise ParameterError("ranges", address, f"an argument of {cls} ({', '.join(config)})")
    return config, argument, element


def _set_ranges(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    tree = copy.deepcopy(base)
    for address, x in values.items():
        config, argument, element = _address(tree, address)
        current = config[argument]
        if element is not None:
            pair = list(current)
            pair[element] = x
            config[argument] = pair
        elif _is_number(current) or current is None:
            config[argument] = x
        else:
            config[argument] = [-x, x]
    return tree


class SearchSpace:
    """The candidates a search draws from (see the module docstring for the format)."""

    def __init__(self, space: Mapping[str, Any]) -> None:
        if not isinstance(space, Mapping) or not space:
            raise ParameterError("space", space, "a mapping of candidate names to null, {RandAugment: ...}, "
                                 "{TrivialAugment: ...} or {pipeline: ..., ranges: ...}")
        self.raw = dict(space)
        self.candidates = [self._candidate(str(name), value) for name, value in space.items()]
        if any(_OPS_JOIN in c.name or "/" in c.name for c in self.candidates):
            raise ParameterError("space", list(space), f"candidate names without '/' or '{_OPS_JOIN}'")

    @staticmethod
    def _candidate(name: str, value: Any) -> _Candidate:
        where = f"space[{name!r}]"
        if value is None:
            return _Candidate(name, "none")
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("RandAugment", "TrivialAugment"):
            kind = next(iter(value))
            args = value[kind] or {}
            allowed = {"RandAugment": ("n", "magnitude", "ops", "p"),
                       "TrivialAugment": ("ops", "max_magnitude", "p")}[kind]
            unknown = set(args) - set(allowed)
            if unknown:
                raise ParameterError(where, sorted(unknown), f"arguments of {kind} ({', '.join(allowed)})")
            spec: dict[str, Any] = {}
            for key, v in args.items():
                if key == "ops":         # a set name or one list of op names: fixed; else a list of those
                    one = isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) and x in _op_names()
                                                                             for x in v))
                    choices = [v] if one or not isinstance(v, list) else v
                    labels = [_ops_label(f"{where}.ops", c) for c in choices]
                    spec[key] = ("choice", labels) if len(labels) > 1 else ("fixed", labels[0])
                else:
                    r = _range(f"{where}.{key}", v)
                    integer = key == "n"
                    spec[key] = ("fixed", v) if r is None else ("range", (r[0], r[1], integer))
            candidate = _Candidate(name, kind, spec)
        elif isinstance(value, dict) and "pipeline" in value and set(value) <= {"pipeline", "ranges"}:
            from .tasks import pipeline_from_config
            pipeline = pipeline_from_config(name, value["pipeline"])
            if pipeline is None:
                raise ParameterError(f"{where}.pipeline", None, "a pipeline (use a null candidate for none)")
            base = pipeline.to_dict()
            spec = {}
            for address, v in (value.get("ranges") or {}).items():
                r = _range(f"{where}.ranges[{address!r}]", v)
                config, argument, element = _address(base, address)
                current = config[argument] if element is None else list(config[argument])[element]
                if element is None and not (_is_number(current) or current is None):
                    if not (isinstance(current, (list, tuple)) and len(current) == 2 and current[0] == -current[1]):
                        raise ParameterError(f"{where}.ranges", address, f"{address}.0 or {address}.1 ({argument} "
                                             f"is {current}, not a symmetric (-a, a) pair)")
                integer = r is not None and all(isinstance(b, int) for b in r) and isinstance(current, int)
                spec[address] = ("fixed", v) if r is None else ("range", (r[0], r[1], integer))
            candidate = _Candidate(name, "pipeline", spec, base)
        else:
            raise ParameterError(where, value, "null, {RandAugment: {...}}, {TrivialAugment: {...}} or "
                                 "{pipeline: PIPELINE, ranges: {Class.argument: [lo, hi]}}")
        for end in (0, 1):                      # every end of every range builds: fail before any training
            fixed = {k: (v if kind != "range" else v[end]) if kind != "choice" else v[0]
                     for k, (kind, v) in spec.items()}
            try:
                _Fixed(fixed).build(candidate)
            except (TypeError, ValueError) as exc:
                raise ParameterError(where, value, f"a candidate that builds ({exc})") from exc
        return candidate

    def suggest(self, trial: Any) -> tuple[str, Transform | None]:
        """A candidate's name and its pipeline, drawn through an Optuna trial."""
        names = [c.name for c in self.candidates]
        name = names[0] if len(names) == 1 else trial.suggest_categorical("candidate", names)
        candidate = self.candidates[names.index(name)]
        return name, candidate.build(trial)

    def pipeline(self, params: Mapping[str, Any]) -> tuple[str, Transform | None]:
        """The candidate and pipeline that a trial's ``params`` describe (e.g. the best trial's)."""
        return self.suggest(_Fixed(dict(params)))


def _op_names() -> set[str]:
    from ..policy import OPS
    return set(OPS)


class _Fixed:
    """A stand-in for an Optuna trial that answers from fixed values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def build(self, candidate: _Candidate) -> Transform | None:
        self.values = {f"{candidate.name}/{k}": v for k, v in self.values.items()}
        return candidate.build(self)

    def _get(self, name: str) -> Any:
        if name not in self.values:
            raise ParameterError("params", sorted(self.values), f"a value for {name!r}")
        return self.values[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._get(name)

    def suggest_int(self, name: str, lo: int, hi: int) -> int:
        return int(self._get(name))

    def suggest_float(self, name: str, lo: float, hi: float) -> float:
        return float(self._get(name))


@dataclass
class TuneResult:
    """What a search found: the best trial's candidate, params, pipeline and inner score, and every
    trial (``number``, ``state``, ``value``, ``candidate``, ``params``, ``steps``: its reported
    scores, ``seconds``: its duration)."""

    study_name: str
    metric: str
    best_candidate: str
    best_params: dict[str, Any]
    best_value: float
    best_pipeline: Transform | None
    trials: list[dict[str, Any]]

    def pipeline_yaml(self) -> str:
        """The chosen setting as a pipeline YAML (``domainaug augment --pipeline`` reads it); no
        augmentation is an empty ``Compose``."""
        return (self.best_pipeline if self.best_pipeline is not None else Compose([])).to_yaml()


def _resolve_task(task: Any) -> Any:
    from .tasks import TASKS
    if isinstance(task, str):
        from ..core.params import check_choice
        return TASKS[check_choice("task", task, sorted(TASKS))]()
    return task


def tune(task: Any, search_space: SearchSpace | Mapping[str, Any], trials: int = 20, folds: int = 3,
         seeds: Sequence[int] = (0,), *, options: Mapping[str, Any] | None = None,
         data: Sequence[Sample] | None = None, groups: Sequence[Any] | None = None,
         storage: str | Path = "tune.sqlite3", study_name: str = "domainaug-tune", sampler_seed: int = 0,
         startup_trials: int | None = None, prune_after: int = 2, warmup_steps: int = 1,
         log: Callable[[str], None] | None = print) -> TuneResult:
    """Search augmentation settings for ``task`` on inner folds of ``data`` (Optuna).

    Args:
        task: A task of ``evaluate.tasks.TASKS`` (its name or an instance): it has ``kind``,
            ``defaults``, ``data(options)`` and ``train(samples, pipeline, seed, options, callback)``.
        search_space: A ``SearchSpace`` or its mapping (see the module docstring).
        trials: Finished trials (complete or pruned) the study should hold; a resumed study runs
            only the missing ones.
        folds: Inner folds (group k-fold on ``groups``); each trial trains once per fold and seed.
        seeds: Inner seeds (splits and training).
        options: The task's settings (default: its ``defaults``).
        data, groups: The samples to search on (default: ``task.data(options)``): in a nested
            evaluation, the outer fold's training part only.
        storage: The SQLite file of the study (created, or loaded when it exists).
        study_name: The study in it. Completed and pruned trials are kept; a trial a killed
            process left running is marked failed and its params queued to run again.
        sampler_seed: Seed of the TPE sampler (a resumed study reseeds with ``sampler_seed`` plus
            the number of trials it holds, so it does not redraw the first ones).
        startup_trials: Random trials before TPE models the space (default ``min(10, max(2, trials // 3))``).
        prune_after, warmup_steps: The median pruner prunes no trial before ``prune_after``
            trials have finished, nor at the first ``warmup_steps`` validations of a trial.

    A trial that draws the params of a completed one takes its score without training again
    (``user_attrs["duplicate_of"]``). The objective is the task's main score (accuracy, Dice) on
    each inner validation fold at the end of training, averaged over folds and seeds. Each
    validation during training (every epoch; every ``log_every`` iterations for
    ``t1-segmentation``) is reported to the pruner at step = its rank within the trial (fold by
    fold, so the same step means the same fold and epoch for every trial).
    """
    optuna = require("optuna", "evaluate.tune")
    from optuna.trial import TrialState
    task = _resolve_task(task)
    space = search_space if isinstance(search_space, SearchSpace) else SearchSpace(search_space)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ParameterError("trials", trials, "an integer >= 1")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ParameterError("seeds", seeds, "a non-empty list of non-negative integers")
    opts = {**task.defaults, **(options or {})}
    if data is None:
        data, groups = task.data(opts)
    data = list(data)
    splits = group_kfold(len(data), folds, seeds[0], groups)            # checks folds against the groups
    metric = "accuracy" if task.kind == "classification" else "dice"

    def objective(trial: Any) -> float:
        name, pipeline = space.suggest(trial)
        trial.set_user_attr("candidate", name)
        trial.set_user_attr("pipeline", None if pipeline is None else pipeline.to_dict())
        for earlier in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if earlier.params == trial.params:          # a small categorical space repeats itself: no retraining
                trial.set_user_attr("duplicate_of", earlier.number)
                if log:
                    log(f"{study_name} trial {trial.number} ({name}): as trial {earlier.number}, not retrained")
                return float(earlier.value)
        step, finals = 0, []
        for seed in seeds:
            for k, val_index in enumerate(splits if seed == seeds[0] else group_kfold(len(data), folds, seed, groups)):
                held = set(val_index.tolist())
                train = [s for i, s in enumerate(data) if i not in held]
                val = [data[i] for i in val_index]

                def report(_: int, model: Any, val: list[Sample] = val) -> None:
                    nonlocal step
                    trial.report(score(task.kind, model(val), val)[0][metric], step)
                    step += 1
                    if trial.should_prune():
                        raise optuna.TrialPruned()

                model = task.train(train, pipeline, seed, opts, callback=report)
                value = score(task.kind, model(val), val)[0][metric]
                if not math.isfinite(value):
                    raise ParameterError("scores", f"NaN {metric} on inner fold {k}", "labelled validation data")
                finals.append(value)
                if log:
                    log(f"{study_name} trial {trial.number} ({name}) seed {seed} fold {k}: {metric}={value:.3f}")
        return float(np.mean(finals))

    url = f"sqlite:///{Path(storage).absolute()}"
    Path(storage).absolute().parent.mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(url)
        study = optuna.create_study(study_name=study_name, storage=rdb, direction="maximize", load_if_exists=True)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):     # left by a killed search
            rdb.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        held = len(study.get_trials(deepcopy=False))
        startup = startup_trials if startup_trials is not None else min(10, max(2, trials // 3))
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + held, n_startup_trials=startup)
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=prune_after, n_warmup_steps=warmup_steps)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        if done < trials:
            study.optimize(objective, n_trials=trials - done)
        elif log:
            log(f"{study_name}: {done} trials already finished in {storage}")
    finally:
        optuna.logging.set_verbosity(verbosity)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not finished:
        raise ParameterError("trials", trials, "a search with at least one trial that was not pruned")
    best = study.best_trial
    name, pipeline = space.pipeline(best.params)
    history = [{"number": t.number, "state": t.state.name, "value": t.value, "candidate": t.user_attrs.get("candidate"),
                "params": t.params, "steps": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
                "seconds": t.duration.total_seconds() if t.duration is not None else None}
               for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))]
    return TuneResult(study_name, metric, name, dict(best.params), float(best.value), pipeline, history)


# ---------------------------------------------------------------------------------------------
# Nested evaluation from a config.
# ---------------------------------------------------------------------------------------------
_TUNED = Compose([])            # stands for "the setting each outer fold's search chose"


def run_tune_config(config: dict[str, Any] | str | Path, out: str | Path | None = None, quick: bool = False,
                    log: Callable[[str], None] | None = print) -> tuple[Comparison, list[TuneResult], Path]:
    """Nested evaluation of a search (``domainaug tune CONFIG.yaml``).

    The config is an ``evaluate`` config (``task``, ``options``, ``pipelines``, ``baseline``,
    ``shift``) with a ``tune`` section: ``space`` (a search space), ``trials`` (per outer fold),
    ``folds`` (inner), ``outer_folds``, ``seeds`` (outer seeds: one k-fold each), ``inner_seeds``,
    ``compare`` (names in ``pipelines`` to compare with; default the baseline and every preset),
    ``options`` (task settings for the whole run, e.g. a shorter training), ``out``.
    ``quick``: 2 trials, 2 inner and 2 outer folds, one seed, the task's tiny settings.

    For each outer seed and fold, ``tune`` runs on the fold's training part only (its own study in
    ``OUT/study.sqlite3``, so a killed run resumes); then ``kfold_compare`` trains the compared
    pipelines and ``tuned`` (each fold's own choice) on identical outer splits and tests them on the
    held-out outer folds. Writes ``report.md``, ``results.json``, the plots, ``search_history.png``,
    ``pipeline_seed{S}_fold{K}.yaml`` per outer fold and ``best_pipeline.yaml`` (the fold choice with
    the best inner score).
    """
    from .tasks import json_line, load_config, pipeline_from_config
    require("optuna", "domainaug tune")
    raw = config
    if not isinstance(raw, dict):
        import yaml
        if not Path(raw).is_file():
            raise ParameterError("config", str(raw), "an existing YAML file")
        raw = yaml.safe_load(Path(raw).read_text(encoding="utf-8"))
    section = raw.get("tune") if isinstance(raw, dict) else None
    if not isinstance(section, dict) or "space" not in section:
        raise ParameterError("tune", section, "a 'tune' section with a search 'space'")
    allowed = {"space", "trials", "folds", "outer_folds", "seeds", "inner_seeds", "compare", "options", "out",
               "sampler_seed", "startup_trials", "prune_after", "notes", "title"}
    unknown = set(section) - allowed
    if unknown:
        raise ParameterError("tune", sorted(unknown), f"keys of a tune section ({', '.join(sorted(allowed))})")
    config, task, options = load_config(config, quick, "domainaug tune", section.get("options"))
    space = SearchSpace(section["space"])
    raw_pipelines = config.get("pipelines") or {}
    baseline = config.get("baseline") or (next(iter(raw_pipelines)) if raw_pipelines else None)
    compare = section.get("compare") or [n for n, v in raw_pipelines.items()
                                         if n == baseline or (isinstance(v, dict) and set(v) == {"preset"})]
    missing = [n for n in compare if n not in raw_pipelines]
    if missing or not compare:
        raise ParameterError("tune.compare", compare, f"names of the config's pipelines ({', '.join(raw_pipelines)})")
    pipelines: dict[str, Transform | None] = {n: pipeline_from_config(n, raw_pipelines[n]) for n in compare}
    if "tuned" in pipelines:
        raise ParameterError("tune.compare", compare, "names other than 'tuned' (the search's choice)")
    pipelines["tuned"] = _TUNED
    shift = pipeline_from_config("shift", config["shift"]) if config.get("shift") is not None else None
    trials = 2 if quick else int(section.get("trials", 10))
    inner = 2 if quick else int(section.get("folds", 2))
    outer = 2 if quick else int(section.get("outer_folds", config.get("folds", 5)))
    seeds = list(section.get("seeds", [0]))[:1] if quick else list(section.get("seeds", [0]))
    inner_seeds = list(section.get("inner_seeds", [0]))[:1] if quick else list(section.get("inner_seeds", [0]))
    out = Path(out or section.get("out") or (str(config.get("out")) + "_tune" if config.get("out") else "tune"))
    out.mkdir(parents=True, exist_ok=True)
    data, groups = task.data(options)
    if task.kind == "segmentation" and outer > len(data):
        raise ParameterError("tune.outer_folds", outer, f"at most the number of slabs ({len(data)})")
    index_of = {id(s): i for i, s in enumerate(data)}
    start = time.perf_counter()
    searches: dict[tuple[int, ...], tuple[int, int, TuneResult]] = {}
    for seed in seeds:
        for k, test_index in enumerate(group_kfold(len(data), outer, seed, groups)):
            held = set(test_index.tolist())
            train_index = [i for i in range(len(data)) if i not in held]
            result = tune(task, space, trials, inner, inner_seeds, options=options,
                          data=[data[i] for i in train_index],
                          groups=None if groups is None else [groups[i] for i in train_index],
                          storage=out / "study.sqlite3", study_name=f"seed{seed}-fold{k}",
                          sampler_seed=int(section.get("sampler_seed", 0)) + 1000 * seed + k,
                          startup_trials=section.get("startup_trials"), prune_after=int(section.get("prune_after", 2)),
                          log=log)
            searches[tuple(train_index)] = (seed, k, result)
            if log:
                log(f"seed {seed} fold {k}: chose {result.best_candidate} {json_line(result.best_params)} "
                    f"(inner {result.metric}={result.best_value:.3f})")
    search_minutes = (time.perf_counter() - start) / 60
    trial_minutes = sum(t["seconds"] or 0.0 for _, _, r in searches.values() for t in r.trials) / 60

    def train_fn(train: list[Sample], pipeline: Transform | None, seed: int) -> Any:
        if pipeline is _TUNED:
            pipeline = searches[tuple(sorted(index_of[id(s)] for s in train))][2].best_pipeline
        return task.train(train, pipeline, seed, options)

    start = time.perf_counter()
    comparison = kfold_compare(train_fn, data, pipelines, folds=outer, seeds=seeds, groups=groups, shift=shift,
                               baseline=baseline if baseline in pipelines else compare[0], log=log)
    compare_minutes = (time.perf_counter() - start) / 60
    results = sorted(searches.values(), key=lambda r: (r[0], r[1]))
    for seed, k, result in results:
        (out / f"pipeline_seed{seed}_fold{k}.yaml").write_text(result.pipeline_yaml(), encoding="utf-8")
    best = max(results, key=lambda r: r[2].best_value)[2]
    (out / "best_pipeline.yaml").write_text(best.pipeline_yaml(), encoding="utf-8")
    plot = _plot_history([r for _, _, r in results], out / "search_history.png")
    import torch
    budget = (f"Budget: {trials} trials per outer fold x {inner} inner folds x {len(inner_seeds)} inner seed(s), "
              f"{outer} outer folds x {len(seeds)} outer seed(s): {len(results) * trials} trials, "
              f"{len(results) * trials * inner * len(inner_seeds)} inner trainings at most (pruned trials stop "
              f"early), then {len(pipelines) * outer * len(seeds)} outer trainings. Search {search_minutes:.1f} min in "
              f"this run ({trial_minutes:.1f} min of trials in the study, resumed runs included), "
              f"outer comparison {compare_minutes:.1f} min{' (quick mode)' if quick else ''}, torch "
              f"{torch.__version__}, {torch.get_num_threads()} thread(s).")
    title = section.get("title") or f"{config['task']}: a searched augmentation, graded on held-out outer folds"
    lines = [(section.get("notes") or "").strip(), "",
             "Nested cross-validation: for each outer fold, the search (Optuna TPE, median pruner on the per-epoch "
             "inner validation score) sees only that fold's training part and scores candidates on inner folds "
             f"of it ({task.kind}: mean inner {best.metric}). The `tuned` row trains each outer fold's own choice; "
             "the held-out outer fold is never seen by the search, so the comparison below grades the search "
             "procedure, not one lucky setting.", "", budget, "",
             f"Task `{config['task']}`, {len(data)} samples, options: `{json_line(options)}`. "
             f"Shift: `{json_line(config.get('shift'))}`. Search space: `{json_line(section['space'])}`.", "",
             "## Settings chosen per outer fold", "",
             f"| outer seed | fold | candidate | params | inner {best.metric} | trials complete / pruned | YAML |",
             "|---:|---:|---|---|---:|---|---|"]
    for seed, k, result in results:
        states = [t["state"] for t in result.trials]
        lines.append(f"| {seed} | {k} | {result.best_candidate} | `{json_line(result.best_params)}` | "
                     f"{result.best_value:.3f} | {states.count('COMPLETE')} / {states.count('PRUNED')} | "
                     f"[pipeline_seed{seed}_fold{k}.yaml](pipeline_seed{seed}_fold{k}.yaml) |")
    lines += ["", f"`best_pipeline.yaml` is the choice with the best inner score (`{best.study_name}`); the outer "
              "folds' choices differ when the search is unsure, which is itself a finding.", "",
              f"![search history]({plot.name})", "", "## Outer comparison", ""]
    report = comparison.write(out, title, "\n".join(lines))
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    doc["searches"] = [{"seed": seed, "fold": k, "study": r.study_name, "metric": r.metric,
                        "best_candidate": r.best_candidate, "best_params": r.best_params, "best_value": r.best_value,
                        "trials": r.trials} for seed, k, r in results]
    (out / "results.json").write_text(json.dumps(doc, indent=1, default=float), encoding="utf-8")
    return comparison, [r for _, _, r in results], report


def _plot_history(results: list[TuneResult], path: Path) -> Path:
    """Each study's trial scores (dots; pruned: crosses at their last reported score) and its best so far."""
    matplotlib = require("matplotlib", "the search history plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .compare import _save
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, r in enumerate(results):
        colour = f"C{i % 10}"
        done = [t for t in r.trials if t["state"] == "COMPLETE"]
        pruned = [t for t in r.trials if t["state"] == "PRUNED" and t["steps"]]
        ax.scatter([t["number"] for t in done], [t["value"] for t in done], color=colour, s=18)
        ax.scatter([t["number"] for t in pruned], [t["steps"][-1] for t in pruned], color=colour, marker="x", s=18)
        ordered = sorted(done, key=lambda t: t["number"])
        ax.step([t["number"] for t in ordered], np.maximum.accumulate([t["value"] for t in ordered]), where="post",
                color=colour, label=r.study_name)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"inner {results[0].metric}" if results else "score")
    ax.set_title("search history (x: pruned, at its last reported score)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
