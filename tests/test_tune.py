"""Policy search: evaluate.tune (Optuna) and `domainaug tune` (nested evaluation, resumable)."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import domainaug as da
from domainaug import offline
from domainaug.cli import main as cli_main
from domainaug.evaluate import SearchSpace, tune
from domainaug.policy import RandAugment, TrivialAugment

optuna = pytest.importorskip("optuna")
REPO = Path(__file__).resolve().parents[1]


def toy_data(n=16):
    out = []
    for i in range(n):
        s = da.Sample.from_numpy(np.full((4, 4), float(i % 2), np.float32) + 0.1 * i / n, spacing=1.0)
        s.meta["target"] = i % 2
        out.append(s)
    return out


class Model:
    """Predicts class 1 when the mean plus ``offset`` is above 0.5: right for offsets below ~0.4."""

    def __init__(self, offset):
        self.offset, self.history = offset, []

    def __call__(self, samples):
        p1 = np.clip(np.array([float(s["image"].mean()) + self.offset for s in samples]), 0.05, 0.95)
        return np.stack([1 - p1, p1], 1)


class ToyTask:
    """A task whose 'training' reads the brightness range of the pipeline as the model's offset."""

    kind = "classification"
    defaults = {"epochs": 3}

    def __init__(self):
        self.calls = []

    def data(self, options):
        return toy_data(), None

    def train(self, samples, pipeline, seed, options, callback=None):
        offset = 0.0 if pipeline is None else float(pipeline.config().get("brightness", [0, 0])[1])
        self.calls.append(offset)
        model = Model(offset)
        for epoch in range(options["epochs"]):
            if callback is not None:
                callback(epoch + 1, model)
        return model


BRIGHT = {"bright": {"pipeline": {"transform": "BrightnessContrast", "config": {"brightness": [-0.1, 0.1]}},
                     "ranges": {"BrightnessContrast.brightness": [0.0, 1.0]}}}


def test_search_spaces_build_the_pipelines_they_name():
    space = SearchSpace({
        "none": None,
        "ra": {"RandAugment": {"n": [1, 3], "magnitude": [0, 10], "ops": ["medical", ["rotate", "gamma"]]}},
        "ta": {"TrivialAugment": {"ops": ["rotate", "flip"]}},
        "mri": {"pipeline": {"preset": "brain-mri"},
                "ranges": {"Affine.degrees": [0, 20], "Gamma.p": [0, 1], "Ghosting.intensity.1": [0.4, 0.9],
                           "Ghosting.num_ghosts.1": [3, 6]}}})
    name, p = space.pipeline({"candidate": "ra", "ra/n": 2, "ra/magnitude": 4.5, "ra/ops": "rotate+gamma"})
    assert name == "ra" and isinstance(p, RandAugment) and (p.n, p.magnitude, p.names) == (2, 4.5, ["rotate", "gamma"])
    _, p = space.pipeline({"candidate": "ta"})                    # a single list of op names is fixed
    assert isinstance(p, TrivialAugment) and p.names == ["rotate", "flip"]
    assert space.pipeline({"candidate": "none"}) == ("none", None)
    _, p = space.pipeline({"candidate": "mri", "mri/Affine.degrees": 12.0, "mri/Gamma.p": 0.25,
                           "mri/Ghosting.intensity.1": 0.6, "mri/Ghosting.num_ghosts.1": 5})
    config = {t["transform"]: t["config"] for t in p.to_dict()["config"]["transforms"]}
    assert config["Affine"]["degrees"] == [-12.0, 12.0] and config["Gamma"]["p"] == 0.25
    assert config["Ghosting"]["intensity"] == [0.3, 0.6] and config["Ghosting"]["num_ghosts"] == [2, 5]
    assert config["Elastic"] == da.medical.preset("brain-mri").to_dict()["config"]["transforms"][2]["config"]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(0)).ask()
    SearchSpace({"mri": space.raw["mri"]}).suggest(trial)        # one candidate: no 'candidate' choice
    kinds = {k: type(v).__name__ for k, v in trial.distributions.items()}
    assert kinds == {"mri/Affine.degrees": "FloatDistribution", "mri/Gamma.p": "FloatDistribution",
                     "mri/Ghosting.intensity.1": "FloatDistribution",
                     "mri/Ghosting.num_ghosts.1": "IntDistribution"}      # integer bounds, integer argument


@pytest.mark.parametrize("space, match", [
    ({"x": {"pipeline": {"preset": "brain-mri"}, "ranges": {"Warp.p": [0, 1]}}}, "a transform of the pipeline"),
    ({"x": {"pipeline": {"preset": "brain-mri"}, "ranges": {"Gamma.gamma": [0.5, 2]}}}, "Gamma.gamma.0 or"),
    ({"x": {"pipeline": {"preset": "brain-mri"}, "ranges": {"Gamma.sigma": [0, 1]}}}, "an argument of Gamma"),
    ({"x": {"pipeline": {"preset": "brain-mri"}, "ranges": {"Gamma.p": [1, 0]}}}, "lo <= hi"),
    ({"x": {"RandAugment": {"ops": ["warp"]}}}, "an op set"),
    ({"x": {"RandAugment": {"m": 3}}}, "arguments of RandAugment"),
    ({"x": {"RandAugment": {"magnitude": [0, 30]}}}, "a candidate that builds|magnitude"),
    ({"x": {"Affine": {}}}, "null, {RandAugment"),
])
def test_bad_search_spaces_are_named_before_any_training(space, match):
    with pytest.raises(da.ParameterError, match=match):
        SearchSpace(space)


def test_tune_finds_the_harmless_setting_prunes_bad_ones_and_resumes(tmp_path):
    task, db = ToyTask(), tmp_path / "s.sqlite3"
    result = tune(task, {"none": None, **BRIGHT}, trials=12, folds=2, storage=db, study_name="toy", prune_after=2,
                  warmup_steps=0, startup_trials=4, log=None)
    assert result.best_value == 1.0 and len(result.trials) == 12
    pruned = [t for t in result.trials if t["state"] == "PRUNED"]
    assert pruned and all(t["params"]["bright/BrightnessContrast.brightness"] > 0.35 for t in pruned)
    assert all(len(t["steps"]) < 6 for t in pruned)               # stopped before the 2 folds x 3 epochs
    assert result.best_candidate == "none" or result.best_params["bright/BrightnessContrast.brightness"] < 0.45
    calls = len(task.calls)
    again = tune(task, {"none": None, **BRIGHT}, trials=12, folds=2, storage=db, study_name="toy", log=None)
    assert len(task.calls) == calls and again.trials == result.trials      # nothing re-run
    # a trial a killed process left running: failed, its params run again, the finished ones kept
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}")
    before = {t.number: (t.value, t.datetime_complete) for t in study.trials}
    stale = study.ask()
    SearchSpace({"none": None, **BRIGHT}).suggest(stale)
    more = tune(task, {"none": None, **BRIGHT}, trials=14, folds=2, storage=db, study_name="toy", log=None)
    study = optuna.load_study(study_name="toy", storage=f"sqlite:///{db}")
    assert {t.number: (t.value, t.datetime_complete) for t in study.trials if t.number in before} == before
    assert study.trials[stale.number].state.name == "FAIL" and len(more.trials) == 14
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == stale.number]
    assert len(retry) == 1 and retry[0].params == stale.params and retry[0].state.name in ("COMPLETE", "PRUNED")


def test_a_repeated_setting_is_not_trained_again(tmp_path):
    task = ToyTask()
    result = tune(task, {"none": None, "ta": {"TrivialAugment": {"ops": ["rotate"]}}}, trials=4, folds=2,
                  storage=tmp_path / "s.sqlite3", log=None)
    assert len(result.trials) == 4 and len(task.calls) == 2 * 2          # two distinct settings, two folds each
    study = optuna.load_study(study_name="domainaug-tune", storage=f"sqlite:///{tmp_path / 's.sqlite3'}")
    duplicates = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert len(duplicates) == 2 and all(t.value == study.trials[t.user_attrs["duplicate_of"]].value
                                        for t in duplicates)


def test_tune_refuses_bad_arguments(tmp_path):
    with pytest.raises(da.ParameterError, match="^trials="):
        tune(ToyTask(), {"none": None}, trials=0, storage=tmp_path / "s.sqlite3")
    with pytest.raises(da.ParameterError, match="^folds="):
        tune(ToyTask(), {"none": None}, trials=1, folds=1, storage=tmp_path / "s.sqlite3")


def test_experiment_configs_declare_search_spaces_that_build():
    for name in ("t1_segmentation", "landsat_patches"):
        config = yaml.safe_load((REPO / "experiments" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert len(SearchSpace(config["tune"]["space"]).candidates) >= 2


def _finished(db):
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()[0]
    except sqlite3.OperationalError:                     # tables not created yet, or locked
        return 0


def test_quick_tune_from_the_cli_resumes_after_a_kill_and_writes_a_loadable_pipeline(tmp_path, fixtures):
    pytest.importorskip("monai")
    config = yaml.safe_load((REPO / "experiments" / "t1_segmentation.yaml").read_text(encoding="utf-8"))
    config["tune"]["space"] = {"none": None, "RandAugment": {"RandAugment": {"n": [1, 2], "magnitude": [0, 10],
                                                                             "ops": [["rotate", "gamma"]]}}}
    path = tmp_path / "t1.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    out, db = tmp_path / "out", tmp_path / "out" / "study.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "domainaug", "-q", "tune", str(path), "--quick", "--out", str(out)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _finished(db) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = optuna.load_study(study_name="seed0-fold0", storage=f"sqlite:///{db}").trials[0]
    assert first.state.name == "COMPLETE" and _finished(db) < 4          # killed mid-search
    start = time.monotonic()
    assert cli_main(["-q", "tune", str(path), "--quick", "--out", str(out)]) == 0
    assert time.monotonic() - start < 60
    for k in (0, 1):
        study = optuna.load_study(study_name=f"seed0-fold{k}", storage=f"sqlite:///{db}")
        assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 2
    again = optuna.load_study(study_name="seed0-fold0", storage=f"sqlite:///{db}").trials[0]
    assert (again.value, again.params, again.datetime_complete) == (first.value, first.params, first.datetime_complete)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| tuned |" in report and "| none |" in report and "brain-mri preset" in report
    assert "Paired tests against `none`" in report and (out / "search_history.png").stat().st_size > 1000
    for yml in ["best_pipeline.yaml", "pipeline_seed0_fold0.yaml", "pipeline_seed0_fold1.yaml"]:
        pipeline = offline.resolve_pipeline(None, str(out / yml))    # the loader of augment --pipeline
        assert isinstance(pipeline, (da.Compose, RandAugment))
    t1 = str(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    assert cli_main(["-q", "augment", t1, "--pipeline", str(out / "best_pipeline.yaml"), "--out",
                     str(tmp_path / "aug")]) == 0
