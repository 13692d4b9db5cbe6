"""Core benchmark (issue: core): fused affine+elastic on a 160x192x160 volume + labels, against
the grid_sample floor and SimpleITK's affine resample. 2 CPU threads, one process.

    make bench            # or: .venv/bin/python benchmarks/bench_core.py [--runs N]

Writes benchmarks/results/core.md and core.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("NUMBA_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(THREADS)

import domainaug as da  # noqa: E402

SHAPE = (160, 192, 160)
RESULTS = Path(__file__).resolve().parent / "results"


def rss_kb() -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def measure(fn, runs: int) -> dict:
    reset_peak()
    rss0, _ = rss_kb()
    t0 = time.perf_counter()
    fn()                                                 # warm-up (and peak memory of a first call)
    first = time.perf_counter() - t0
    _, hwm = rss_kb()
    if first < 1.0:
        fn()
    times, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "cores": sum(cpu) / sum(times), "peak_extra_mb": max(0, hwm - rss0) / 1024}


def make_data():
    rng = np.random.default_rng(0)
    coarse = rng.random((10, 12, 10)).astype(np.float32)
    image = F.interpolate(torch.from_numpy(coarse)[None, None], size=SHAPE, mode="trilinear",
                          align_corners=True)[0].contiguous()
    idx = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"), 0)
    radius = np.sqrt((idx ** 2).sum(0))
    label = np.digitize(radius, [0.3, 0.5, 0.7, 0.9]).astype(np.uint8)      # 5 labels, nested shells
    return image, torch.from_numpy(label)[None]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    image, label = make_data()
    sample = da.Sample(da.Space.from_spacing(SHAPE, 1.0), {
        "image": da.Layer(image, da.Role.INTENSITY), "label": da.Layer(label, da.Role.LABEL)})
    input_mb = (image.numel() * 4 + label.numel()) / 2**20
    rows = []

    # --- floor: one trilinear grid_sample pass over a precomputed identity grid
    grid = F.affine_grid(torch.eye(3, 4)[None], (1, 1) + SHAPE, align_corners=True)
    x = image[None]
    floor_one = measure(lambda: F.grid_sample(x, grid, mode="bilinear", align_corners=True), args.runs)
    halves = torch.cat([grid[:, : SHAPE[0] // 2], grid[:, SHAPE[0] // 2:]])
    x2 = x.expand(2, -1, -1, -1, -1)
    floor_two = measure(lambda: F.grid_sample(x2, halves, mode="bilinear", align_corners=True), args.runs)
    floor = min(floor_one["median_ms"], floor_two["median_ms"])
    rows.append(("floor: grid_sample trilinear, identity grid, 1 call", floor_one))
    rows.append(("floor: grid_sample trilinear, identity grid, 2 slabs", floor_two))

    # --- domainaug
    gen = {"g": 0}

    def ours(pipeline, s):
        def call():
            gen["g"] += 1
            out = pipeline(s, torch.Generator().manual_seed(gen["g"]))
            out.layers  # noqa: B018
        return call

    affine = da.Affine(degrees=(-10, 10), scales=(0.9, 1.1), translation=(-5, 5))
    elastic = da.Elastic(spacing=32.0, max_displacement=(3.0, 6.0))
    rows.append(("domainaug Compose[Affine, Elastic] image + label (argmax)",
                 measure(ours(da.Compose([affine, elastic]), sample), args.runs)))
    nearest = sample.with_layers(label=da.Layer(label, da.Role.LABEL, interpolation="nearest"))
    rows.append(("domainaug Compose[Affine, Elastic] image + label (nearest)",
                 measure(ours(da.Compose([affine, elastic]), nearest), args.runs)))
    rows.append(("domainaug Affine image + label (argmax)", measure(ours(affine, sample), args.runs)))
    image_only = da.Sample(sample.space, {"image": sample.layers["image"]})
    rows.append(("domainaug Compose[Affine, Elastic] image only", measure(ours(da.Compose([affine, elastic]), image_only),
                                                                          args.runs)))

    # --- SimpleITK affine-only resample (image linear + label nearest)
    try:
        import SimpleITK as sitk

        itk_img = sitk.GetImageFromArray(image[0].numpy())
        itk_lab = sitk.GetImageFromArray(label[0].numpy())
        sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(THREADS)
        rng = np.random.default_rng(1)

        def itk_affine():
            tx = sitk.AffineTransform(3)
            params = {"degrees": rng.uniform(-10, 10, 3).tolist(), "scales": rng.uniform(0.9, 1.1, 3).tolist(),
                      "shear": [0.0] * 3, "translation": rng.uniform(-5, 5, 3).tolist()}
            inv = np.linalg.inv(da.Affine.forward(sample.space, params))
            tx.SetMatrix(inv[:3, :3].ravel().tolist())
            tx.SetTranslation(inv[:3, 3].tolist())
            a = sitk.GetArrayFromImage(sitk.Resample(itk_img, itk_img, tx, sitk.sitkLinear, 0.0))
            b = sitk.GetArrayFromImage(sitk.Resample(itk_lab, itk_lab, tx, sitk.sitkNearestNeighbor, 0))
            return a, b

        rows.append((f"SimpleITK {sitk.Version.VersionString()} Resample affine, image linear + label nearest",
                     measure(itk_affine, args.runs)))
    except ImportError:
        pass

    sitk_ms = next((r["median_ms"] for n, r in rows if n.startswith("SimpleITK")), None)
    fused = rows[2][1]
    lines = [
        "# Core benchmark: fused affine+elastic, 1x160x192x160 float32 + uint8 labels (5 values)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {THREADS} threads; "
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}.",
        f"Runs: warm-up, then {args.runs} timed calls per row; medians and minimums per call. "
        f"Input {input_mb:.1f} MB. Floor = the faster of the two grid_sample rows = {floor:.1f} ms.",
        "",
        "| workload | median ms | min ms | x floor | x SimpleITK affine | cores used | peak extra MB (1st call) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        vs_itk = f"{r['median_ms'] / sitk_ms:.2f}" if sitk_ms else "n/a"
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['median_ms'] / floor:.2f} | {vs_itk} | "
                     f"{r['cores']:.2f} | {r['peak_extra_mb']:.0f} |")
    lines += ["", f"Targets (issue 'core'): fused affine+elastic <= 1.5x floor -> "
              f"{'MET' if fused['median_ms'] <= 1.5 * floor else 'NOT MET'} ({fused['median_ms'] / floor:.2f}x); "
              f"faster than SimpleITK affine -> "
              f"{'MET' if sitk_ms and fused['median_ms'] < sitk_ms else 'NOT MET'}; peak extra memory <= 3x input "
              f"({3 * input_mb:.0f} MB) -> {'MET' if fused['peak_extra_mb'] <= 3 * input_mb else 'NOT MET'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.md").write_text(text)
    (RESULTS / "core.json").write_text(json.dumps({"floor_ms": floor, "input_mb": input_mb,
                                                   "rows": [{"workload": n, **r} for n, r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
