"""Training benchmark (issue: training): samples per second through a PyTorch DataLoader with 0 and
2 workers, a 160x192x160 volume + labels, the brain-mri preset with a 96^3 label-weighted patch
crop fused after its spatial steps (the whole-volume preset is timed too); and, when a CUDA device
is present, BatchAugment on the GPU for batches of 4 volumes.

    .venv/bin/python benchmarks/bench_training.py [--samples N]

Writes benchmarks/results/training.md and training.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_core import make_data, write_results  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import domainaug as da  # noqa: E402
from domainaug import medical  # noqa: E402
from domainaug.training import AugmentedDataset, BatchAugment, collate, with_patch  # noqa: E402


def patch_pipeline(patch: int = 96) -> da.Compose:
    """The brain-mri preset (without its reorientation: the volume is already RAS) with a 96^3
    label-weighted patch crop fused after its spatial steps."""
    steps = [t for t in medical.preset("brain-mri").transforms if type(t).__name__ != "Reorient"]
    return with_patch(da.Compose(steps), da.Crop(patch, mode="label", ratios=[1.0] * 5))


def loader_rate(sample: da.Sample, pipeline: da.Transform, workers: int, samples: int) -> float:
    ds = AugmentedDataset([sample] * samples, pipeline, seed=0)
    loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate,
                        persistent_workers=False, prefetch_factor=2 if workers else None)
    t0 = time.perf_counter()
    n = sum(len(batch["records"]) for batch in loader)
    return n / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    image, label = make_data()
    sample = da.Sample.from_numpy(image.numpy(), label=label.numpy(), spacing=(1.0, 1.0, 1.0))
    rows: dict[str, dict] = {}
    for name, pipeline in (("brain-mri preset + fused 96^3 label-weighted patch", patch_pipeline()),
                           ("brain-mri preset, whole volume", da.Compose(
                               [t for t in medical.preset("brain-mri").transforms if type(t).__name__ != "Reorient"]))):
        pipeline(sample, da.generator_for(0))                        # compile / warm up in the parent
        for workers in (0, 2):
            torch.set_num_threads(2 if workers == 0 else 1)          # 2 cores either way
            rate = loader_rate(sample, pipeline, workers, args.samples)
            rows[f"{name}, DataLoader {workers} workers"] = {"samples_per_s": rate, "median_ms": 1e3 / rate}
    torch.set_num_threads(2)
    lines = [f"# Training data path: {args.samples} samples of 160x192x160 + labels per row", "",
             "| workload | samples / s | ms / sample |", "|---|---:|---:|"]
    lines += [f"| {n} | {r['samples_per_s']:.2f} | {r['median_ms']:.0f} |" for n, r in rows.items()]
    if torch.cuda.is_available():
        batch = BatchAugment(patch_pipeline(), seed=0)
        images, labels = image[None].repeat(4, 1, 1, 1, 1).cuda(), label[None].repeat(4, 1, 1, 1, 1).cuda()
        batch(images, labels)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(5):
            batch(images, labels, indices=list(range(4 * i, 4 * i + 4)))
        torch.cuda.synchronize()
        rate = 20 / (time.perf_counter() - t0)
        rows["GPU BatchAugment, batches of 4, fused patch pipeline"] = {"samples_per_s": rate, "median_ms": 1e3 / rate}
        lines += [f"| GPU ({torch.cuda.get_device_name()}) BatchAugment, batches of 4 | {rate:.2f} | "
                  f"{1e3 / rate:.0f} |"]
    else:
        lines += ["", "No CUDA device here: the GPU (BatchAugment) section was not run."]
    write_results("training", lines, rows, samples=args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
