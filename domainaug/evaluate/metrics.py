"""Metrics on numpy arrays or torch tensors: Dice, accuracy, calibration, per-class report.

Conventions:
- Label maps and class predictions are integers; probabilities have the class axis first for maps
  (``(K, *spatial)``) and last for lists of items (``(N, K)``), as PyTorch models return them.
- ``dice`` of a label absent from both prediction and target is undefined: ``nan`` by default
  (left out of means, as MONAI's ``ignore_empty=True`` does), or the value given as ``empty``
  (1.0 is the other common choice). A label in the target but not the prediction scores 0, and
  one predicted but absent from the target scores 0 too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ParameterError, ShapeError

__all__ = ["dice", "accuracy", "expected_calibration_error", "per_class_report", "as_array"]


def as_array(name: str, value: Any) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (any device) or a nested list."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:          # numpy has no bfloat16 (the usual autocast output)
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ParameterError(name, str(array.dtype), "a numeric array or tensor")
    return array


def _labels(name: str, value: Any) -> np.ndarray:
    array = as_array(name, value)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ParameterError(name, "non-integer values", "integer labels (use argmax on probabilities)")
        array = array.astype(np.int64)
    return array.astype(np.int64, copy=False)


def _same_shape(pred: np.ndarray, target: np.ndarray) -> None:
    if pred.shape != target.shape:
        raise ShapeError(f"pred has shape {pred.shape}, target {target.shape}; expected the same shape")


def dice(pred: Any, target: Any, labels: Sequence[int] | None = None, empty: float = math.nan) -> dict[int, float]:
    """Dice ``2|P∩T| / (|P| + |T|)`` per label of two integer label maps of one shape.

    ``labels`` defaults to every value in either map except 0 (background). See the module
    docstring for the empty-label convention (``empty``).
    """
    p, t = _labels("pred", pred), _labels("target", target)
    _same_shape(p, t)
    if labels is None:
        labels = sorted((set(np.unique(p).tolist()) | set(np.unique(t).tolist())) - {0})
    out = {}
    for label in labels:
        pm, tm = p == label, t == label
        total = int(pm.sum()) + int(tm.sum())
        out[int(label)] = float(empty) if total == 0 else 2.0 * int((pm & tm).sum()) / total
    return out


def accuracy(pred: Any, target: Any) -> float:
    """Share of correct predictions. ``pred`` holds labels (same shape as ``target``) or
    probabilities/scores ``(N, K)`` (argmax taken)."""
    p, t = as_array("pred", pred), _labels("target", target)
    if p.ndim == t.ndim + 1 and p.shape[:-1] == t.shape:
        p = p.argmax(-1)
    p = _labels("pred", p)
    _same_shape(p, t)
    if p.size == 0:
        raise ParameterError("target", "empty", "at least one item")
    return float((p == t).mean())


def _probabilities(probs: Any, labels: Any, class_axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, K)`` probabilities and ``(N,)`` labels from lists of items or from maps ``(K, *spatial)``."""
    p, y = as_array("probs", probs).astype(np.float64), _labels("labels", labels)
    if class_axis is None:
        class_axis = -1 if p.ndim == y.ndim + 1 and p.shape[:-1] == y.shape else 0
    p = np.moveaxis(p, class_axis, -1)
    if p.shape[:-1] != y.shape:
        raise ShapeError(f"probs has shape {as_array('probs', probs).shape} (classes on axis {class_axis}); labels "
                         f"{y.shape}: expected the same shape without the class axis")
    p, y = p.reshape(-1, p.shape[-1]), y.reshape(-1)
    if len(y) == 0:
        raise ParameterError("labels", "empty", "at least one item")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ParameterError("probs", "negative or non-finite values", "probabilities in [0, 1]")
    sums = p.sum(1)
    if np.abs(sums - 1).max() > 1e-2:             # (bfloat16 softmax rows are off by ~2e-3)
        raise ParameterError("probs", f"rows summing to {sums.min():.4g}..{sums.max():.4g}",
                             "probabilities summing to 1 over the class axis (apply softmax)")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ParameterError("labels", f"values {y.min()}..{y.max()}", f"class indices in [0, {p.shape[1] - 1}]")
    return p, y


def expected_calibration_error(probs: Any, labels: Any, bins: int = 15, strategy: str = "uniform",
                               class_axis: int | None = None, return_diagram: bool = False) -> Any:
    """Top-label expected calibration error ``sum_b |B_b|/N * |accuracy(B_b) - confidence(B_b)|``.

    Args:
        probs: ``(N, K)`` probabilities, or maps ``(K, *spatial)`` with ``labels`` ``(*spatial)``.
        labels: True class indices.
        bins: Number of confidence bins.
        strategy: ``"uniform"`` (equal-width bins on [0, 1]) or ``"quantile"`` (equal-mass bins:
            about the same number of items in each).
        class_axis: Where the classes are; by default the last axis when ``probs`` has one axis
            more than ``labels`` at the end, else the first.
        return_diagram: Also return the reliability-diagram data: per non-empty bin its edges,
            count, mean confidence and accuracy.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ParameterError("bins", bins, "an integer >= 1")
    if strategy not in ("uniform", "quantile"):
        raise ParameterError("strategy", strategy, "'uniform' or 'quantile'")
    p, y = _probabilities(probs, labels, class_axis)
    confidence, predicted = p.max(1), p.argmax(1)
    correct = (predicted == y).astype(np.float64)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        edges = np.quantile(confidence, np.linspace(0.0, 1.0, bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
    # bin b holds (edges[b], edges[b+1]]; confidence 0 falls in the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(which, confidence, minlength=bins)
    acc_sum = np.bincount(which, correct, minlength=bins)
    used = count > 0
    gap = np.abs(acc_sum[used] - conf_sum[used])               # = count * |acc - conf|
    ece = float(gap.sum() / len(y))
    if not return_diagram:
        return ece
    diagram = [{"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": int(count[b]),
                "confidence": float(conf_sum[b] / count[b]), "accuracy": float(acc_sum[b] / count[b])}
               for b in range(bins) if used[b]]
    return ece, diagram


def per_class_report(pred: Any, target: Any, labels: Sequence[int] | None = None) -> dict[Any, dict[str, float]]:
    """Precision, recall, F1 and support per class, plus ``"macro"`` and ``"weighted"`` averages
    (as scikit-learn's ``classification_report``; a ratio with a zero denominator is 0).
    ``pred`` holds labels or ``(N, K)`` scores (argmax taken); label maps are flattened."""
    p = as_array("pred", pred)
    t = _labels("target", target)
    if p.ndim == t.ndim + 1 and p.shape[:-1] == t.shape:
        p = p.argmax(-1)
    p = _labels("pred", p)
    _same_shape(p, t)
    p, t = p.reshape(-1), t.reshape(-1)
    if labels is None:
        labels = sorted(set(np.unique(p).tolist()) | set(np.unique(t).tolist()))
    report: dict[Any, dict[str, float]] = {}
    for label in labels:
        tp = int(((p == label) & (t == label)).sum())
        predicted, support = int((p == label).sum()), int((t == label).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[int(label)] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    rows = [report[int(label)] for label in labels]
    total = sum(r["support"] for r in rows)
    for name, weights in (("macro", [1.0] * len(rows)), ("weighted", [r["support"] for r in rows])):
        w = sum(weights) or 1.0
        report[name] = {k: sum(wi * r[k] for wi, r in zip(weights, rows)) / w for k in ("precision", "recall", "f1")}
        report[name]["support"] = total
    return report
