"""``kfold_compare``: baseline vs augmented pipelines on identical (group/spatial-block) splits,
in distribution and under a held-out shift, with paired tests, a markdown report and plots."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.random import generator_for
from ..core.sample import Sample
from ..core.transform import Transform
from ..errors import ParameterError
from ..extras import require
from .metrics import accuracy, as_array, dice, expected_calibration_error, per_class_report
from .stats import paired_ttest, wilcoxon

__all__ = ["group_kfold", "spatial_blocks", "kfold_compare", "Comparison", "score"]

ECE_BINS = 15


def group_kfold(n: int, folds: int, seed: int = 0, groups: Sequence[Any] | None = None) -> list[np.ndarray]:
    """Test indices of each fold. Items of one group (e.g. one spatial block, one patient) always
    share a fold; groups are dealt, largest first (equal sizes in an order shuffled with ``seed``),
    to the fold with the fewest items."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ParameterError("folds", folds, "an integer >= 2")
    groups = list(range(n)) if groups is None else list(groups)
    if len(groups) != n:
        raise ParameterError("groups", f"{len(groups)} group ids", f"{n} (one per item)")
    names = sorted(set(groups), key=repr)
    if len(names) < folds:
        raise ParameterError("folds", folds, f"at most the number of groups ({len(names)})")
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    shuffled = np.random.default_rng(seed).permutation(len(names))
    order = sorted(shuffled, key=lambda k: -len(members[names[k]]))   # largest first; ties in random order
    fold_items: list[list[int]] = [[] for _ in range(folds)]
    for k in order:
        target = min(range(folds), key=lambda f: len(fold_items[f]))
        fold_items[target].extend(members[names[k]])
    return [np.array(sorted(f), dtype=int) for f in fold_items]


def spatial_blocks(samples: Sequence[Sample], block: float) -> list[tuple[int, ...]]:
    """A group id per sample: the ``block``-sized world cell (CRS units, mm) holding its centre, so
    that a group split keeps neighbouring patches on one side of the train/test divide."""
    if not isinstance(block, (int, float)) or isinstance(block, bool) or not block > 0:
        raise ParameterError("block", block, "a block size > 0 in world units")
    return [tuple(np.floor(s.space.center_world() / block).astype(int).tolist()) for s in samples]


def score(kind: str, probs: Any, items: Sequence[Sample]) -> tuple[dict[str, float], list[dict]]:
    """Scores of predictions on ``items`` and the reliability-diagram bins (uniform, pooled later).

    classification: ``probs`` ``(N, K)``; scores accuracy, macro_f1, ece.
    segmentation: ``probs`` a list of ``(K, *spatial)`` maps; scores dice (mean over labels > 0,
    pooled over items), ece (over voxels).
    """
    if kind == "classification":
        p = as_array("probs", probs)
        y = np.array([s.meta["target"] for s in items])
        ece, diagram = expected_calibration_error(p, y, bins=ECE_BINS, return_diagram=True)
        report = per_class_report(p, y)
        return {"accuracy": accuracy(p, y), "macro_f1": report["macro"]["f1"], "ece": ece}, diagram
    maps = [as_array("probs", m) for m in probs]
    flat_p = np.concatenate([m.reshape(m.shape[0], -1).T for m in maps])
    flat_y = np.concatenate([s["label"].numpy().reshape(-1) for s in items])
    ece, diagram = expected_calibration_error(flat_p, flat_y, bins=ECE_BINS, return_diagram=True)
    per_label = dice(flat_p.argmax(1), flat_y)
    values = [v for v in per_label.values() if not math.isnan(v)]
    out = {"dice": float(np.mean(values)) if values else math.nan, "ece": ece}
    out.update({f"dice_{k}": v for k, v in per_label.items()})
    return out, diagram


@dataclass
class Comparison:
    """What ``kfold_compare`` measured: one row per (pipeline, seed, fold), learning curves and
    pooled reliability diagrams per pipeline."""

    kind: str
    baseline: str
    pipelines: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, list[list[dict]]] = field(default_factory=dict)
    diagrams: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return ["accuracy", "macro_f1", "ece"] if self.kind == "classification" else ["dice", "ece"]

    def scores(self, pipeline: str, metric: str) -> np.ndarray:
        """Scores of one pipeline ordered by (seed, fold), so pipelines pair up."""
        rows = sorted((r for r in self.rows if r["pipeline"] == pipeline), key=lambda r: (r["seed"], r["fold"]))
        return np.array([r[metric] for r in rows], dtype=np.float64)

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for name in self.pipelines:
            row: dict[str, Any] = {"pipeline": name}
            for m in self.metrics:
                for prefix in ("", "shift_"):
                    if prefix + m in self.rows[0]:
                        v = self.scores(name, prefix + m)
                        row[prefix + m] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
            out.append(row)
        return out

    def tests(self) -> list[dict[str, Any]]:
        """Paired t-test and Wilcoxon of each pipeline against the baseline, per metric and setting."""
        out = []
        for name in self.pipelines:
            if name == self.baseline:
                continue
            for m in self.metrics:
                for prefix in ("", "shift_"):
                    if prefix + m not in self.rows[0]:
                        continue
                    a, b = self.scores(self.baseline, prefix + m), self.scores(name, prefix + m)
                    out.append({"pipeline": name, "metric": prefix + m, "t": paired_ttest(a, b),
                                "wilcoxon": wilcoxon(a, b)})
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "baseline": self.baseline, "pipelines": self.pipelines, "rows": self.rows,
                "summary": self.summary(), "tests": self.tests(), "diagrams": self.diagrams, "curves": self.curves}

    def markdown(self, title: str, notes: str = "") -> str:
        lines = [f"# {title}", ""]
        if notes:
            lines += [notes.strip(), ""]
        n = len(self.scores(self.baseline, self.metrics[0]))
        lines += [f"{n} paired runs per pipeline (folds x seeds). Mean ± standard deviation over runs; "
                  "`shift_` columns: the same test folds under the held-out shift.", ""]
        cols = [k for k in self.summary()[0] if k != "pipeline"]
        lines += ["| pipeline | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for row in self.summary():
            lines.append(f"| {row['pipeline']} | " +
                         " | ".join(f"{row[c][0]:.3f} ± {row[c][1]:.3f}" for c in cols) + " |")
        lines += ["", f"Paired tests against `{self.baseline}` (difference = pipeline − baseline; "
                      "ECE: lower is better):", "",
                  "| pipeline | metric | mean diff [95% CI] | t-test p | Cohen's d_z | Wilcoxon p |",
                  "|---|---|---:|---:|---:|---:|"]
        for t in self.tests():
            tt, w = t["t"], t["wilcoxon"]
            lines.append(f"| {t['pipeline']} | {t['metric']} | {tt['mean_difference']:+.3f} [{tt['ci_low']:+.3f}, "
                         f"{tt['ci_high']:+.3f}] | {tt['pvalue']:.3g} | {tt['effect_size']:+.2f} | {w['pvalue']:.3g} |")
        lines += ["", "Per run:", "", "| pipeline | seed | fold | " + " | ".join(cols) + " |",
                  "|---|---:|---:|" + "---:|" * len(cols)]
        for r in sorted(self.rows, key=lambda r: (r["pipeline"], r["seed"], r["fold"])):
            lines.append(f"| {r['pipeline']} | {r['seed']} | {r['fold']} | " +
                         " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, out: Path) -> list[Path]:
        """Learning curves (per pipeline, mean over runs), reliability diagrams (pooled), score bars."""
        matplotlib = require("matplotlib", "Comparison.plot")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        out.mkdir(parents=True, exist_ok=True)
        files = []
        if any(self.curves.values()):
            keys = ([k for k in self.curves[self.pipelines[0]][0][0] if k != "epoch"]
                    if self.curves[self.pipelines[0]] else [])
            fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
            for ax, key in zip(axes[0], keys):
                for name in self.pipelines:
                    runs = [c for c in self.curves.get(name, []) if c]
                    if not runs:
                        continue
                    length = min(len(c) for c in runs)
                    values = np.array([[e[key] for e in c[:length]] for c in runs])
                    ax.plot([e["epoch"] for e in runs[0][:length]], values.mean(0), label=name)
                ax.set_xlabel("epoch")
                ax.set_ylabel(key)
                ax.legend()
            fig.tight_layout()
            files.append(_save(fig, out / "curves.png"))
        settings = [s for s in ("test", "shift") if any(s in d for d in self.diagrams.values())]
        fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 4), squeeze=False)
        for ax, setting in zip(axes[0], settings):
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            for name in self.pipelines:
                bins = self.diagrams.get(name, {}).get(setting, [])
                if bins:
                    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=name)
            ax.set_title(f"reliability ({setting})")
            ax.set_xlabel("confidence")
            ax.set_ylabel("accuracy")
            ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out / "reliability.png"))
        main = self.metrics[0]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        width = 0.8 / max(1, len(self.pipelines))
        for i, name in enumerate(self.pipelines):
            means = [np.mean(self.scores(name, p + main)) for p in ("", "shift_") if p + main in self.rows[0]]
            ax.bar(np.arange(len(means)) + i * width, means, width, label=name)
        ax.set_xticks(np.arange(2) + width * (len(self.pipelines) - 1) / 2, ["in distribution", "under shift"][:2])
        ax.set_ylabel(main)
        ax.legend()
        fig.tight_layout()
        files.append(_save(fig, out / "scores.png"))
        return files

    def write(self, out: str | Path, title: str, notes: str = "") -> Path:
        """``report.md`` (with the plots) and ``results.json`` in ``out``; returns the report path."""
        from ..io import atomic_path
        out = Path(out)
        files = self.plot(out)
        text = self.markdown(title, notes) + "\n" + "\n".join(f"![{f.stem}]({f.name})" for f in files) + "\n"
        for name, content in (("report.md", text),
                              ("results.json", json.dumps(self.to_json(), indent=1, default=float))):
            with atomic_path(out / name) as tmp:
                Path(tmp).write_text(content, encoding="utf-8")
        return out / "report.md"


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def _pool(diagrams: list[list[dict]]) -> list[dict]:
    """Sum per-bin counts of uniform-bin reliability diagrams (same edges) over runs."""
    acc: dict[tuple[float, float], list[float]] = {}
    for diagram in diagrams:
        for b in diagram:
            slot = acc.setdefault((b["lower"], b["upper"]), [0.0, 0.0, 0.0])
            slot[0] += b["count"]
            slot[1] += b["confidence"] * b["count"]
            slot[2] += b["accuracy"] * b["count"]
    return [{"lower": lo, "upper": hi, "count": int(c), "confidence": s / c, "accuracy": a / c}
            for (lo, hi), (c, s, a) in sorted(acc.items())]


def kfold_compare(train_fn: Callable[[list[Sample], Transform | None, int], Any], data: Sequence[Sample],
                  pipelines: Mapping[str, Transform | None], folds: int = 5, seeds: Sequence[int] = (0,),
                  groups: Sequence[Any] | None = None, shift: Transform | None = None,
                  baseline: str | None = None, log: Callable[[str], None] | None = print) -> Comparison:
    """Train and test every pipeline on identical splits.

    Args:
        train_fn: ``train_fn(train_samples, pipeline, seed) -> model``; ``model(samples)`` returns
            probabilities: ``(N, K)`` for classification (targets in ``meta["target"]``), a list
            of ``(K, *spatial)`` maps for segmentation (a ``"label"`` layer). An optional
            ``model.history`` (a list of per-epoch dicts with ``"epoch"``) is plotted.
        data: The samples.
        pipelines: Name -> augmentation (``None``: no augmentation). The first is the baseline
            unless ``baseline`` names another.
        folds: Number of folds (>= 2). ``groups``: a group id per sample (see ``spatial_blocks``).
        seeds: One full k-fold per seed (splits and training both follow the seed).
        shift: A held-out shift applied to every test sample (same draws for every pipeline), for
            out-of-distribution scores (``shift_*`` columns).
    """
    data = list(data)
    if not data or not all(isinstance(s, Sample) for s in data):
        raise ParameterError("data", type(data).__name__, "a non-empty list of Samples")
    kind = "classification" if "target" in data[0].meta else "segmentation"
    if kind == "segmentation" and "label" not in data[0].layer_names():
        raise ParameterError("data", "samples without meta['target'] or a 'label' layer",
                             "classification targets or label maps to score against")
    names = list(pipelines)
    if not names:
        raise ParameterError("pipelines", {}, "at least one named pipeline")
    baseline = names[0] if baseline is None else baseline
    if baseline not in names:
        raise ParameterError("baseline", baseline, f"one of {names}")
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ParameterError("seeds", seeds, "a non-empty list of non-negative integers")
    result = Comparison(kind, baseline, names, curves={n: [] for n in names})
    pooled: dict[str, dict[str, list]] = {n: {"test": [], "shift": []} for n in names}
    for seed in seeds:
        for k, test_index in enumerate(group_kfold(len(data), folds, seed, groups)):
            held = set(test_index.tolist())
            train = [s for i, s in enumerate(data) if i not in held]
            test = [data[i] for i in test_index]
            shifted = None if shift is None else [shift(s, generator_for(seed, k, int(i)))
                                                  for s, i in zip(test, test_index)]
            for name in names:
                model = train_fn(train, pipelines[name], seed)
                row: dict[str, Any] = {"pipeline": name, "seed": seed, "fold": k, "train": len(train),
                                       "test": len(test)}
                scores, diagram = score(kind, model(test), test)
                row.update(scores)
                pooled[name]["test"].append(diagram)
                if shifted is not None:
                    scores, diagram = score(kind, model(shifted), shifted)
                    row.update({f"shift_{m}": v for m, v in scores.items()})
                    pooled[name]["shift"].append(diagram)
                result.rows.append(row)
                result.curves[name].append(list(getattr(model, "history", []) or []))
                if log:
                    log(f"seed {seed} fold {k} {name}: " + ", ".join(
                        f"{m}={row[m]:.3f}" for m in result.metrics + [f"shift_{m}" for m in result.metrics]
                        if m in row))
    for m in result.metrics:
        bad = [r for r in result.rows if not math.isfinite(r[m])]
        if bad:
            raise ParameterError("scores",
                                 f"{len(bad)} NaN {m} scores (e.g. {bad[0]['pipeline']} fold {bad[0]['fold']})",
                                 "finite scores: check that every test fold holds labelled data")
    result.diagrams = {n: {s: _pool(d) for s, d in pooled[n].items() if d} for n in names}
    return result
