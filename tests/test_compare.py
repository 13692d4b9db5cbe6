"""kfold_compare and the `domainaug evaluate` runner."""

import json
from pathlib import Path

import numpy as np
import pytest

import domainaug as da
from domainaug.cli import main as cli_main
from domainaug.evaluate import kfold_compare
from domainaug.evaluate.tasks import LandsatPatches, T1Segmentation

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data_real"


def toy_data(n=20):
    """Classification samples whose class is readable from the mean intensity."""
    out = []
    for i in range(n):
        s = da.Sample.from_numpy(np.full((4, 4), float(i % 2), np.float32) + 0.1 * i / n, spacing=1.0)
        s.meta["target"] = i % 2
        out.append(s)
    return out


class MeanModel:
    """'Trains' by recording what it saw; predicts class 1 when the mean is above 0.5 (an
    augmentation that adds brightness would break it)."""

    def __init__(self, seen, offset):
        self.seen, self.offset, self.history = seen, offset, [{"epoch": 1, "loss": 0.5}]

    def __call__(self, samples):
        m = np.array([float(s["image"].mean()) + self.offset for s in samples])
        p1 = np.clip(m, 0.05, 0.95)
        return np.stack([1 - p1, p1], 1)


def test_pipelines_see_identical_splits_and_shift_draws():
    seen = []

    def train(samples, pipeline, seed):
        seen.append((None if pipeline is None else type(pipeline).__name__, seed, sorted(id(s) for s in samples)))
        return MeanModel(samples, 0.0 if pipeline is None else 0.45)

    data = toy_data()
    result = kfold_compare(train, data, {"none": None, "bright": da.BrightnessContrast(0.3)}, folds=4, seeds=[0, 1],
                           shift=da.GaussianNoise(0.01), log=None)
    assert len(result.rows) == 2 * 4 * 2
    for k in range(0, len(seen), 2):                       # baseline and the other pipeline: same training set
        assert seen[k][2] == seen[k + 1][2]
    none, bright = result.scores("none", "accuracy"), result.scores("bright", "accuracy")
    assert np.all(none == 1.0) and bright.mean() < 1.0
    test = [t for t in result.tests() if t["metric"] == "accuracy"][0]
    assert test["t"]["mean_difference"] < 0 and test["t"]["n"] == 8
    assert "shift_accuracy" in result.rows[0]


def test_nan_scores_and_few_folds_are_refused():
    with pytest.raises(da.ParameterError, match="^folds="):
        kfold_compare(lambda *a: MeanModel(None, 0), toy_data(), {"none": None}, folds=1, log=None)
    with pytest.raises(da.ParameterError, match="^data="):
        kfold_compare(lambda *a: MeanModel(None, 0), [], {"none": None}, log=None)


def test_quick_t1_segmentation_from_the_cli_writes_a_report(tmp_path):
    pytest.importorskip("monai")
    assert cli_main(["evaluate", "experiments/t1_segmentation.yaml", "--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| brain-mri preset | dice |" in text and "Wilcoxon" in text
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {r["pipeline"] for r in results["rows"]} == {"none", "brain-mri preset"}
    assert all(0.0 <= r["dice"] <= 1.0 and 0.0 <= r["shift_ece"] <= 1.0 for r in results["rows"])
    for png in ("curves.png", "reliability.png", "scores.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_quick_landsat_patches_from_the_cli(tmp_path):
    if not (SHARED / "derived" / "nc_landsat7_6band.tif").is_file():
        pytest.skip("needs ../shared/data_real (the NC Landsat scene)")
    assert cli_main(["evaluate", "experiments/landsat_patches.yaml", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert len(results["rows"]) == 3 * 2 and all(0 <= r["shift_accuracy"] <= 1 for r in results["rows"])


def test_bad_configs_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: nope\npipelines: {none: null}\n", encoding="utf-8")
    assert cli_main(["evaluate", str(bad)]) == 2
    from domainaug.evaluate.tasks import run_config
    with pytest.raises(da.ParameterError, match="^pipelines"):
        run_config({"task": "t1-segmentation", "pipelines": {"x": {"preset": "no-such"}}})
    with pytest.raises(da.ParameterError, match="^options="):
        run_config({"task": "t1-segmentation", "options": {"epochz": 3}, "pipelines": {"none": None}})


def test_task_defaults_never_point_into_the_repository():
    import domainaug.data
    package_data = Path(domainaug.data.__file__).parent
    assert all(Path(T1Segmentation.defaults[k]).parent == package_data for k in ("image", "labels"))
    assert LandsatPatches.defaults["scene"] is None and LandsatPatches.defaults["labels"] is None
    from domainaug.evaluate.tasks import run_config
    with pytest.raises(da.ParameterError, match="^options.scene=None"):
        run_config({"task": "landsat-patches", "pipelines": {"none": None}}, log=None)


def test_relative_paths_in_a_config_file_are_relative_to_its_folder(tmp_path):
    from domainaug.evaluate.tasks import run_config
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "c.yaml"
    config.write_text("task: landsat-patches\noptions: {scene: ../scene.tif, labels: ../labels.tif}\n"
                      "pipelines: {none: null}\n", encoding="utf-8")
    with pytest.raises(da.ParameterError, match=f"^options.scene='{tmp_path}/sub/../scene.tif'"):
        run_config(config, log=None)
