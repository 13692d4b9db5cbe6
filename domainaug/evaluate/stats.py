"""Paired statistics on per-fold or per-seed scores (scipy.stats underneath)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ParameterError

__all__ = ["paired_ttest", "wilcoxon"]


def _pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ParameterError("b", f"{len(y)} scores", f"{len(x)} scores, paired with a's")
    if len(x) < 2:
        raise ParameterError("a", f"{len(x)} scores", "at least 2 paired scores (folds or seeds)")
    for name, v in (("a", x), ("b", y)):
        if not np.all(np.isfinite(v)):
            raise ParameterError(name, f"{int((~np.isfinite(v)).sum())} NaN/Inf scores", "finite scores")
    return x, y


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                 confidence: float = 0.95) -> dict[str, float]:
    """Paired t-test of ``b - a`` (e.g. augmented minus baseline, fold by fold).

    Returns ``statistic``, two-sided ``pvalue``, ``mean_difference``, its ``ci_low``/``ci_high``
    (Student t interval at ``confidence``), ``effect_size`` (Cohen's d_z: mean difference over the
    standard deviation of the differences) and ``n``. Identical pairs give p = 1 and d_z = 0.
    """
    if not 0 < confidence < 1:
        raise ParameterError("confidence", confidence, "a level in (0, 1)")
    x, y = _pairs(a, b)
    d = y - x
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        statistic, pvalue = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
        half = 0.0
    else:
        result = stats.ttest_rel(y, x)
        statistic, pvalue = float(result.statistic), float(result.pvalue)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    return {"statistic": statistic, "pvalue": pvalue, "mean_difference": mean, "ci_low": mean - half,
            "ci_high": mean + half,
            "effect_size": mean / sd if sd else (0.0 if mean == 0 else math.copysign(math.inf, mean)), "n": n}


def wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Wilcoxon signed-rank test of ``b - a`` (exact for small samples, as scipy decides), with the
    matched-pairs rank-biserial correlation as effect size (+1: every pair favours ``b``)."""
    x, y = _pairs(a, b)
    d = y - x
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return {"statistic": 0.0, "pvalue": 1.0, "effect_size": 0.0, "n": len(d)}
    result = stats.wilcoxon(y, x)
    ranks = stats.rankdata(np.abs(nonzero))
    total = ranks.sum()
    effect = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / total)
    return {"statistic": float(result.statistic), "pvalue": float(result.pvalue), "effect_size": effect, "n": len(d)}
