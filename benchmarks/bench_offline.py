"""Offline generation benchmark (issue: command line): files per second for ``domainaug augment`` on
N copies of the shipped T1 (+ tissue labels) with the brain-mri preset, on 2 local worker threads
(no Dask), against a plain Python loop calling the same pipeline (load, augment, save image + label).

    .venv/bin/python benchmarks/bench_offline.py [--copies N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from bench_core import write_results  # noqa: E402

import domainaug.io as dio  # noqa: E402
from domainaug import generator_for, medical, offline  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "data_fixtures"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        shutil.copy(FIXTURES / "KmeansTest_T1UCharRaw.nii.gz", src / "t1.nii.gz")
        shutil.copy(FIXTURES / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", src / "t1_seg.nii.gz")
        pipeline = medical.preset("brain-mri")
        pipeline(dio.load(src / "t1.nii.gz", label=src / "t1_seg.nii.gz"), generator_for(0))   # warm-up, compile
        t0 = time.perf_counter()
        loop_out = Path(tmp) / "loop"
        for k in range(args.copies):
            sample = dio.load(src / "t1.nii.gz", label=src / "t1_seg.nii.gz")
            out = pipeline(sample, generator_for(0, 0, k))
            dio.save(out, loop_out / f"t1_aug{k:03d}.nii.gz")
            dio.save(out, loop_out / f"t1_seg_aug{k:03d}.nii.gz", layer="label")
        loop_s = time.perf_counter() - t0
        jobs = offline.plan([str(src / "t1.nii.gz")], Path(tmp) / "local", args.copies, "_seg")
        t0 = time.perf_counter()
        results = offline.run(jobs, pipeline, seed=0, workers=2)
        local_s = time.perf_counter() - t0
        assert all(r["status"] == "done" for r in results)
    rows = {"plain Python loop (2 threads), load + preset + save":
                {"seconds": loop_s, "files_per_s": args.copies / loop_s},
            "domainaug augment, 2 local worker threads (incl. start-up, sidecars, manifest)":
                {"seconds": local_s, "files_per_s": args.copies / local_s}}
    lines = [f"# Offline generation: {args.copies} copies of the T1 + labels, brain-mri preset", "",
             "| run | seconds | files per second |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['seconds']:.1f} | {r['files_per_s']:.2f} |" for name, r in rows.items()]
    overhead = local_s / loop_s - 1
    lines += ["", f"Overhead of the command over the loop: {100 * overhead:+.0f}% (target <= +10%)."]
    write_results("offline", lines, {n: {"median_ms": 1e3 * r["seconds"], **r} for n, r in rows.items()},
                  copies=args.copies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
