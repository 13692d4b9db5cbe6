"""Evaluation metrics and statistics against scikit-learn, MONAI, scipy and hand-computed values."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import domainaug as da
from domainaug.evaluate import (
    accuracy,
    dice,
    expected_calibration_error,
    group_kfold,
    paired_ttest,
    per_class_report,
    spatial_blocks,
    wilcoxon,
)
from domainaug.testing import make_raster

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def random_maps(seed=0, shape=(12, 14, 10), k=4):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, shape)
    pred = np.where(rng.random(shape) < 0.7, target, rng.integers(0, k, shape))
    return pred, target


def test_dice_by_hand_and_against_monai():
    pred = np.array([[1, 1, 0], [2, 0, 0]])
    target = np.array([[1, 0, 0], [2, 2, 0]])
    assert dice(pred, target) == {1: pytest.approx(2 * 1 / 3), 2: pytest.approx(2 * 1 / 3)}
    assert math.isnan(dice(pred, target, labels=[5])[5])
    assert dice(pred, target, labels=[5], empty=1.0)[5] == 1.0
    assert dice(np.zeros((2, 2)), np.ones((2, 2)))[1] == 0.0         # missed entirely
    from monai.metrics import DiceMetric
    p, t = random_maps()
    onehot = lambda a: torch.nn.functional.one_hot(torch.from_numpy(a), 4).movedim(-1, 0)[None].float()  # noqa: E731
    ref = DiceMetric(include_background=True, reduction="none")(onehot(p), onehot(t))[0]
    ours = dice(torch.from_numpy(p), t, labels=[0, 1, 2, 3])
    np.testing.assert_allclose([ours[k] for k in range(4)], ref.numpy(), rtol=1e-6)


def test_accuracy_and_per_class_report_match_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    scores = rng.random((300, 5)) + np.eye(5)[y] * 0.6
    assert accuracy(scores, y) == pytest.approx(sklearn_metrics.accuracy_score(y, scores.argmax(1)))
    assert accuracy(torch.from_numpy(scores.argmax(1)), torch.from_numpy(y)) == accuracy(scores, y)
    ours = per_class_report(scores, y)
    ref = sklearn_metrics.classification_report(y, scores.argmax(1), output_dict=True, zero_division=0)
    for label in range(5):
        for key, ref_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"),
                             ("support", "support")):
            assert ours[label][key] == pytest.approx(ref[str(label)][ref_key])
    for avg, ref_avg in (("macro", "macro avg"), ("weighted", "weighted avg")):
        assert ours[avg]["f1"] == pytest.approx(ref[ref_avg]["f1-score"])
    # a class never predicted: precision 0 by convention (as zero_division=0)
    assert per_class_report([0, 0, 0], [0, 1, 1])[1]["precision"] == 0.0


def test_ece_by_hand_both_strategies_and_maps():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    # uniform, 2 bins: (0, .5] empty; (.5, 1]: confidences .9 .8 .7 .6 -> mean .75, accuracy 3/4
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.0)
    # 10 bins: each item alone: |1-.9| + |0-.8| + |1-.7| + |1-.6| over 4
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    ece, diagram = expected_calibration_error(probs, labels, bins=2, strategy="quantile", return_diagram=True)
    assert [b["count"] for b in diagram] == [2, 2]                   # equal mass
    assert ece == pytest.approx(0.5 * abs(1.0 - 0.65) + 0.5 * abs(0.5 - 0.85))
    maps = torch.from_numpy(probs.T.reshape(2, 1, 4))                # (K, H, W) with classes first
    assert expected_calibration_error(maps, labels.reshape(1, 4), bins=10) == pytest.approx(
        expected_calibration_error(probs, labels, bins=10))
    square = torch.from_numpy(probs.T.reshape(2, 2, 2))              # ambiguous: say where the classes are
    assert expected_calibration_error(square, labels.reshape(2, 2), bins=10, class_axis=0) == pytest.approx(
        expected_calibration_error(probs, labels, bins=10))


def test_bad_metric_inputs_are_named():
    with pytest.raises(da.ShapeError, match="pred has shape"):
        dice(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(da.ParameterError, match="^probs=.*summing"):
        expected_calibration_error(np.full((3, 2), 0.7), [0, 1, 0])
    with pytest.raises(da.ShapeError, match="probs has shape"):
        expected_calibration_error(np.full((3, 2), 0.5), [0, 1, 1, 0])
    with pytest.raises(da.ParameterError, match="^labels="):
        expected_calibration_error(np.full((2, 2), 0.5), [0, 2])
    with pytest.raises(da.ParameterError, match="^strategy="):
        expected_calibration_error(np.full((2, 2), 0.5), [0, 1], strategy="mass")


def test_paired_tests_match_scipy_and_name_bad_input():
    a = np.array([0.71, 0.69, 0.74, 0.70, 0.72])
    b = np.array([0.75, 0.70, 0.78, 0.74, 0.73])
    t = paired_ttest(a, b)
    ref = stats.ttest_rel(b, a)
    assert t["statistic"] == pytest.approx(ref.statistic) and t["pvalue"] == pytest.approx(ref.pvalue)
    d = b - a
    assert t["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    w = wilcoxon(a, b)
    assert w["pvalue"] == pytest.approx(stats.wilcoxon(b, a).pvalue) and w["effect_size"] == 1.0
    assert paired_ttest(a, a)["pvalue"] == 1.0 and wilcoxon(a, a)["pvalue"] == 1.0
    with pytest.raises(da.ParameterError, match="^a=.*at least 2"):
        paired_ttest([0.5], [0.6])
    with pytest.raises(da.ParameterError, match="^b=.*NaN"):
        paired_ttest([0.5, 0.6], [0.6, float("nan")])
    with pytest.raises(da.ParameterError, match="^b="):
        wilcoxon([0.5, 0.6], [0.6])


def test_group_kfold_keeps_groups_together_and_needs_two_folds():
    groups = [i // 3 for i in range(30)]
    splits = group_kfold(30, 5, seed=0, groups=groups)
    assert sorted(np.concatenate(splits).tolist()) == list(range(30))
    for test in splits:
        held = {groups[i] for i in test}
        assert all(groups[i] not in held for i in set(range(30)) - set(test.tolist()))
    assert [len(s) for s in splits] == [6] * 5
    assert not all(np.array_equal(a, b) for a, b in zip(splits, group_kfold(30, 5, seed=1, groups=groups)))
    with pytest.raises(da.ParameterError, match="^folds="):
        group_kfold(10, 1)
    with pytest.raises(da.ParameterError, match="^folds="):
        group_kfold(10, 5, groups=[0, 1] * 5)


def test_spatial_blocks_group_neighbouring_patches():
    raster = make_raster(shape=(40, 40), spacing=10.0)
    patches = [da.Crop(10).apply(raster, {"start": [r, c]}) for r in range(0, 40, 10) for c in range(0, 40, 10)]
    groups = spatial_blocks(patches, block=200.0)                     # 2x2 patches per block
    assert len(set(groups)) == 4 and all(groups.count(g) == 4 for g in set(groups))


def test_group_kfold_deals_large_groups_first():
    groups = ["a"] * 10 + list("bcdefg")
    for seed in range(5):
        assert sorted(len(f) for f in group_kfold(16, 2, seed=seed, groups=groups)) == [6, 10]


def test_effect_size_of_a_constant_difference_is_infinite_and_bfloat16_works():
    assert paired_ttest([1, 2, 3], [2, 3, 4])["effect_size"] == float("inf")
    probs = torch.softmax(torch.randn(100, 10), 1).bfloat16()
    labels = torch.randint(0, 10, (100,))
    assert expected_calibration_error(probs.float() / probs.float().sum(1, keepdim=True), labels) == pytest.approx(
        expected_calibration_error(probs, labels), abs=1e-2)
