"""The training examples, in the reduced form CI runs."""

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segmentation_example_trains_a_monai_unet_on_patches():
    pytest.importorskip("monai")
    result = load("train_segmentation").main(["--iterations", "3", "--patch", "24", "--workers", "0"])
    assert len(result["losses"]) == 3 and all(math.isfinite(v) for v in result["losses"])
    assert result["batch_shape"] == (4, 1, 24, 24, 24)          # 2 volumes x 2 label-weighted patches
    assert set(result["labels"].unique().tolist()) <= set(range(7))


def test_classification_example_learns_above_chance():
    module = load("train_classification")
    if not module.SCENE.exists():
        pytest.skip("needs ../shared/data_real (the NC Landsat scene)")
    result = module.main(["--epochs", "3", "--workers", "0", "--mix", "cutmix"])
    assert result["train"] > 100 and result["test"] > 100
    assert all(math.isfinite(v) for v in result["losses"])
    assert result["accuracy"] > 2.0 / 7                          # chance is 1/7
