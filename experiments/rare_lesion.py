"""A rare class: small synthetic lesions in the shipped T1; does LesionPaste or LabelsToImage help?

    .venv/bin/python experiments/rare_lesion.py [--quick]

The shipped real T1 (reoriented to RAS, 128x62x128 voxels of 2x3x2 mm) and its k-means classes
(1 background, 2-6 tissues; 0 is a 126-voxel speck), the head's voxels 32-103 of the first axis
(the rest is air) cut into 4 slabs of 18 voxels (36 mm). Two lesions per slab are inserted
(seeded): balls of radius 5-7 mm centred in grey/white matter (labels 5, 6), label 7, intensity
150 +- 6 (white matter is ~101) with a 2 mm soft edge, so the lesion class is a fraction of a
percent of the voxels. Leave-one-slab-out (4 folds), 1 seed, the t1-segmentation task's training loop
made smaller to fit the budget on a shared machine: a 4/8/16-channel MONAI 3D UNet, 40 iterations of
2 label-weighted 16x24x24 patches (every class, the lesion included, is a patch centre equally
often), Dice+CE, Adam at 5e-3.

Pipelines (each then the task's label-weighted crop):
- ``none``.
- ``LesionPaste``: one lesion of a *training* slab (the fold's donors; never the test slab) pasted
  into each training sample, inside grey/white matter, rotated +-20 deg, scaled 0.8-1.2,
  intensity-matched on a 3 mm ring, blended over 2 mm.
- ``LabelsToImage (lesion)``: the lesion voxels re-synthesised (paste=True): mean 1.1-1.6 of the
  image's 1st-99th percentile range, std 0.02-0.06 of it, partial-volume blur 0-1 mm.

Writes ``experiments/results/rare_lesion/`` (report.md with per-class Dice and the paired tests of
``domainaug.evaluate``, results.json, plots). CPU budget: <= 10 minutes on 2 threads (the run's
time is in the report).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import data as shipped
from domainaug.core.transform import Transform
from domainaug.evaluate import kfold_compare, paired_ttest, wilcoxon
from domainaug.evaluate.tasks import T1Segmentation
from domainaug.medical import LabelsToImage, LesionPaste, Reorient
from domainaug.spatial import Crop

LESION = 7
HEAD = (32, 104)          # the voxels of the first axis that hold the head (the rest is air)
SLABS = 4
ITERATIONS = 40
SEEDS = [0]
CLASSES = 8
PATCH = [16, 24, 24]
LR = 5e-3
OUT = Path(__file__).resolve().parent / "results" / "rare_lesion"


def with_lesions(volume: da.Sample, slabs: int, per_slab: int, seed: int = 0) -> da.Sample:
    """``volume`` with ``per_slab`` hyperintense balls (label 7) in grey/white matter of each slab."""
    rng = np.random.default_rng(seed)
    image = volume["image"][0].numpy().astype(np.float64)
    label = volume["label"][0].numpy().copy()
    spacing = volume.space.spacing
    idx = np.indices(label.shape).transpose(1, 2, 3, 0).astype(np.float64)
    edges = np.linspace(0, label.shape[0], slabs + 1).round().astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        tissue = np.isin(label, [5, 6])
        tissue[:lo + 4], tissue[hi - 4:] = False, False
        where = np.argwhere(tissue)
        for _ in range(per_slab):
            centre = where[rng.integers(len(where))]
            radius = rng.uniform(5.0, 7.0)
            r = np.linalg.norm((idx - centre) * spacing, axis=-1)
            soft = np.clip((radius + 2.0 - r) / 2.0, 0.0, 1.0)            # 1 inside, 2 mm soft edge
            value = 150.0 + rng.normal(0.0, 6.0, label.shape)
            image = image * (1 - soft) + value * soft
            label[r <= radius] = LESION
    return volume.with_layers(image=da.Layer(torch.from_numpy(image.astype(np.float32))[None], da.Role.INTENSITY),
                              label=da.Layer(torch.from_numpy(label)[None], da.Role.LABEL))


class PasteFromPool(Transform):
    """``LesionPaste`` inside a per-sample pipeline, with a fixed donor pool (the fold's training
    slabs); the record keeps the donor index, as LesionPaste's does."""

    def __init__(self, paste: LesionPaste, donors: list[da.Sample] | None = None) -> None:
        self.paste, self.donors = paste, donors or []

    def arguments(self) -> dict[str, Any]:
        return {"paste": self.paste.config(), "donors": f"{len(self.donors)} training slabs"}

    def sample_params(self, sample: da.Sample, generator: torch.Generator) -> dict[str, Any]:
        return self.paste.sample_params([sample], generator, self.donors)[0]

    def apply(self, sample: da.Sample, params: dict[str, Any]) -> da.Sample:
        if params.get("applied", True) is False:
            return sample.replace()
        return self.paste.paste(sample, self.donors[params["donor"]], params)


def train(samples: list[da.Sample], pipeline: Transform | None, seed: int, iterations: int) -> Any:
    """The t1-segmentation task's training, smaller (a 4/8/16-channel MONAI UNet, 16x24x24 patches)
    to fit the 10-minute budget: label-weighted crops (every class, the lesion included, centres as
    many patches), Dice+CE, Adam."""
    options = {**T1Segmentation.defaults, "classes": CLASSES, "patch": PATCH, "batch": 2, "lr": LR,
               "iterations": iterations, "log_every": min(10, iterations), "channels": [4, 8, 16]}
    return T1Segmentation().train(samples, pipeline, seed, options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 folds, 2 iterations: check the set-up only")
    parser.add_argument("--out", type=Path, default=OUT, help="where the report goes")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    volume = Reorient("RAS")(dio.load(shipped.path(shipped.T1), label=shipped.path(shipped.T1_LABELS)))
    head = Crop([HEAD[1] - HEAD[0]] + list(volume.space.shape[1:])).apply(volume, {"start": [HEAD[0], 0, 0]})
    slabs_n = SLABS
    volume = with_lesions(head, slabs_n, per_slab=2)
    n = volume.space.shape[0]
    edges = np.linspace(0, n, slabs_n + 1).round().astype(int)
    data = [Crop([int(hi - lo)] + list(volume.space.shape[1:])).apply(volume, {"start": [int(lo), 0, 0]})
            for lo, hi in zip(edges[:-1], edges[1:])]
    iterations = 2 if args.quick else ITERATIONS
    options = {"classes": CLASSES, "patch": PATCH, "iterations": iterations, "batch": 2, "patches_per_load": 2,
               "lr": LR, "unet_channels": [4, 8, 16]}
    pipelines: dict[str, Transform | None] = {
        "none": None,
        "LesionPaste": PasteFromPool(LesionPaste(lesion=LESION, region="label", region_values=[5, 6], blend=2.0,
                                                 ring=3.0, degrees=(-20.0, 20.0), scales=(0.8, 1.2))),
        "LabelsToImage (lesion)": LabelsToImage(image="image", labels=[LESION], paste=True, mean=(1.1, 1.6),
                                                std=(0.02, 0.06), blur=(0.0, 1.0), bias=0.0),
    }

    def train_fold(samples: list[da.Sample], pipeline: Transform | None, seed: int) -> Any:
        if isinstance(pipeline, PasteFromPool):             # the fold's own training slabs are the donors
            pipeline = PasteFromPool(pipeline.paste, donors=samples)
        return train(samples, pipeline, seed, iterations)

    folds, seeds = (2, [0]) if args.quick else (slabs_n, SEEDS)
    result = kfold_compare(train_fold, data, pipelines, folds=folds, seeds=seeds, baseline="none")
    minutes = (time.perf_counter() - start) / 60
    share = float((volume["label"] == LESION).double().mean())
    notes = (__doc__.split("\n\n", 2)[2].split("Writes")[0].strip() +
             f"\n\nLesion share of the voxels: {100 * share:.3f}%. Options: `{json.dumps(options)}`. "
             f"Ran in {minutes:.1f} min{' (quick mode)' if args.quick else ''} with torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, on a machine shared with other jobs (budget: 10 min).")
    report = result.write(args.out, "A rare lesion class in the T1: LesionPaste and LabelsToImage", notes)
    report.write_text(report.read_text(encoding="utf-8") + "\n" + per_class(result))
    print(report.read_text(encoding="utf-8"))
    return 0


def per_class(result: Any) -> str:
    """Per-class Dice (mean ± sd over runs) and paired tests of each pipeline against the baseline."""
    classes = sorted({int(k[5:]) for r in result.rows for k in r if k.startswith("dice_") and k[5:].isdigit()})
    lines = ["## Per-class Dice", "", "Mean ± sd over runs (label 7 is the rare lesion class).", "",
             "| pipeline | " + " | ".join(f"dice_{c}" for c in classes) + " |", "|---|" + "---:|" * len(classes)]
    for name in result.pipelines:
        cells = []
        for c in classes:
            v = result.scores(name, f"dice_{c}")
            v = v[np.isfinite(v)]
            cells.append(f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}" if len(v) else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Paired tests against `{result.baseline}` per class (difference = pipeline − baseline):", "",
              "| pipeline | class | mean diff [95% CI] | t-test p | Wilcoxon p |", "|---|---:|---:|---:|---:|"]
    for name in result.pipelines:
        if name == result.baseline:
            continue
        for c in classes:
            a, b = result.scores(result.baseline, f"dice_{c}"), result.scores(name, f"dice_{c}")
            keep = np.isfinite(a) & np.isfinite(b)
            if keep.sum() < 2:
                continue
            t, w = paired_ttest(a[keep], b[keep]), wilcoxon(a[keep], b[keep])
            ci = "" if math.isnan(t["ci_low"]) else f" [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
            lines.append(f"| {name} | {c} | {t['mean_difference']:+.3f}{ci} | {t['pvalue']:.3g} | {w['pvalue']:.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
