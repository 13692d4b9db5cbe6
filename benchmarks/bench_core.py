"""Core benchmark (issue: core): fused affine+elastic on a 160x192x160 volume + labels, against
the grid_sample floor and SimpleITK's affine resample. 2 CPU threads.

    make bench            # or: .venv/bin/python benchmarks/bench_core.py [--runs N]

Writes benchmarks/results/core.md and core.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

THREADS = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("NUMBA_NUM_THREADS", str(THREADS))
# What ``import domainaug`` sets when it comes before torch (see domainaug/__init__.py): torch's
# OpenMP threads sleep after an op instead of spinning for 5-20 ms over the cores numba needs.
# Every tool in a run works under it; the reports print it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(THREADS)

import domainaug as da  # noqa: E402

SHAPE = (160, 192, 160)
RESULTS = Path(__file__).resolve().parent / "results"
FLOOR_ONE = "floor: grid_sample trilinear, identity grid, 1 call"
FLOOR_TWO = "floor: grid_sample trilinear, identity grid, 2 slabs"
FUSED = "domainaug Compose[Affine, Elastic] image + label (default: nearest)"
SITK = "SimpleITK Resample affine, image linear + label nearest"


def rss_kb() -> tuple[int, int]:
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
    except OSError:
        pass


def make_data(shape=SHAPE):
    """A smooth float32 image and a uint8 map of 5 nested shells (labels 0..4)."""
    rng = np.random.default_rng(0)
    coarse = rng.random((10, 12, 10)).astype(np.float32)
    image = F.interpolate(torch.from_numpy(coarse)[None, None], size=shape, mode="trilinear",
                          align_corners=True)[0].contiguous()
    idx = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"), 0)
    label = np.digitize(np.sqrt((idx ** 2).sum(0)), [0.3, 0.5, 0.7, 0.9]).astype(np.uint8)
    return image, torch.from_numpy(label)[None]


def workloads(image: torch.Tensor, label: torch.Tensor) -> dict[str, object]:
    """Name -> a call doing one sample's work (new random parameters every call, as in training)."""
    shape = tuple(image.shape[1:])
    sample = da.Sample(da.Space.from_spacing(shape, 1.0), {
        "image": da.Layer(image, da.Role.INTENSITY), "label": da.Layer(label, da.Role.LABEL)})
    work: dict[str, object] = {}
    grid = F.affine_grid(torch.eye(3, 4)[None], (1, 1) + shape, align_corners=True)
    x = image[None]
    halves = torch.cat([grid[:, : shape[0] // 2], grid[:, shape[0] // 2:]])
    x2 = x.expand(2, -1, -1, -1, -1)
    work[FLOOR_ONE] = lambda: F.grid_sample(x, grid, mode="bilinear", align_corners=True)
    work[FLOOR_TWO] = lambda: F.grid_sample(x2, halves, mode="bilinear", align_corners=True)

    counter = {"seed": 0}

    def ours(pipeline, s):
        def call():
            counter["seed"] += 1
            pipeline(s, torch.Generator().manual_seed(counter["seed"])).layers  # noqa: B018
        return call

    affine = da.Affine(degrees=(-10, 10), scales=(0.9, 1.1), translation=(-5, 5))
    elastic = da.Elastic(spacing=32.0, max_displacement=(3.0, 6.0))
    argmax = sample.with_layers(label=da.Layer(label, da.Role.LABEL, interpolation="argmax"))
    image_only = da.Sample(sample.space, {"image": sample.layers["image"]})
    work[FUSED] = ours(da.Compose([affine, elastic]), sample)
    work["domainaug Compose[Affine, Elastic] image + label (argmax)"] = ours(da.Compose([affine, elastic]), argmax)
    work["domainaug Affine image + label (nearest)"] = ours(affine, sample)
    work["domainaug Compose[Affine, Elastic] image only"] = ours(da.Compose([affine, elastic]), image_only)
    try:
        work[SITK] = sitk_affine(image, label, sample.space)
    except ImportError:
        pass
    return work


def sitk_affine(image: torch.Tensor, label: torch.Tensor, space: da.Space):
    """SimpleITK ``Resample`` doing our Affine's work (same random ranges, image linear + label
    nearest, zero padding); a new draw per call."""
    import SimpleITK as sitk
    itk_img, itk_lab = sitk.GetImageFromArray(image[0].numpy()), sitk.GetImageFromArray(label[0].numpy())
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(THREADS)
    rng = np.random.default_rng(1)

    def itk_affine():
        params = {"degrees": rng.uniform(-10, 10, 3).tolist(), "scales": rng.uniform(0.9, 1.1, 3).tolist(),
                  "shear": [0.0] * 3, "translation": rng.uniform(-5, 5, 3).tolist()}
        inv = np.linalg.inv(da.Affine.forward(space, params))
        tx = sitk.AffineTransform(3)
        tx.SetMatrix(inv[:3, :3].ravel().tolist())
        tx.SetTranslation(inv[:3, 3].tolist())
        return (sitk.GetArrayFromImage(sitk.Resample(itk_img, itk_img, tx, sitk.sitkLinear, 0.0)),
                sitk.GetArrayFromImage(sitk.Resample(itk_lab, itk_lab, tx, sitk.sitkNearestNeighbor, 0)))

    return itk_affine


def peak_memory(name: str) -> float:
    """Transient memory (MB) of one full-size call of ``name``, in a fresh process: numba compiles on a
    tiny sample of the same dtypes first; then VmHWM - VmRSS around one call. (In a long-running
    process freed blocks are reused, so RSS would under-report the peak.)"""
    out = subprocess.run([sys.executable, __file__, "--peak-of", name], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _peak_of(name: str) -> None:
    workloads(*make_data((12, 14, 10)))[name]()
    fn = workloads(*make_data())[name]
    reset_peak()
    rss0, _ = rss_kb()
    fn()
    _, hwm = rss_kb()
    print(max(0, hwm - rss0) / 1024)


def measure_interleaved(work: dict[str, object], runs: int, peak: bool = True) -> dict[str, dict]:
    """Two warm-up calls per workload, then ``runs`` rounds timing every workload once, so that the
    drift of a shared virtual machine affects all rows alike."""
    times = {name: [] for name in work}
    cpu = {name: [] for name in work}
    for fn in work.values():
        fn(), fn()
    for _ in range(runs):
        for name, fn in work.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: {"median_ms": 1e3 * statistics.median(times[name]), "min_ms": 1e3 * min(times[name]),
                   "cores": sum(cpu[name]) / sum(times[name]), "peak_extra_mb": peak_memory(name) if peak else None}
            for name in work}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        _peak_of(args.peak_of)
        return 0
    image, label = make_data()
    input_mb = (image.numel() * 4 + label.numel()) / 2**20
    results = measure_interleaved(workloads(image, label), args.runs)
    floor = min(results[FLOOR_ONE]["median_ms"], results[FLOOR_TWO]["median_ms"])
    sitk_ms = results[SITK]["median_ms"] if SITK in results else None
    fused = results[FUSED]
    try:
        import SimpleITK as sitk
        versions = f", SimpleITK {sitk.Version.VersionString()}"
    except ImportError:
        versions = ""
    lines = [
        "# Core benchmark: fused affine+elastic, 1x160x192x160 float32 + uint8 labels (5 values)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores visible, {THREADS} threads; Python "
        f"{platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}{versions}.",
        f"Method: two warm-up calls per row, then {args.runs} rounds, each timing every row once (interleaved, "
        "so the drift of this virtual machine hits all rows alike); median and minimum per call. Peak extra "
        f"memory: one full-size call in a fresh process. Input {input_mb:.1f} MB. Floor = the faster of the "
        f"two grid_sample rows = {floor:.1f} ms.",
        "",
        "| workload | median ms | min ms | x floor | x SimpleITK affine | cores used | peak extra MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        vs_itk = f"{r['median_ms'] / sitk_ms:.2f}" if sitk_ms else "n/a"
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['median_ms'] / floor:.2f} | "
                     f"{vs_itk} | {r['cores']:.2f} | {r['peak_extra_mb']:.0f} |")
    verdict = lambda ok: "MET" if ok else "NOT MET"  # noqa: E731
    vs_sitk = f" ({fused['median_ms'] / sitk_ms:.2f}x)" if sitk_ms else ""
    lines += ["", f"Targets (issue 'core'): fused affine+elastic <= 1.5x floor -> "
              f"{verdict(fused['median_ms'] <= 1.5 * floor)} ({fused['median_ms'] / floor:.2f}x); faster than "
              f"SimpleITK affine -> {verdict(bool(sitk_ms) and fused['median_ms'] < sitk_ms)}"
              f"{vs_sitk}; "
              f"peak extra memory <= 3x input ({3 * input_mb:.0f} MB) -> "
              f"{verdict(fused['peak_extra_mb'] <= 3 * input_mb)} ({fused['peak_extra_mb']:.0f} MB)."]
    write_results("core", lines, results, floor_ms=floor, input_mb=input_mb, runs=args.runs)
    return 0


def write_results(stem: str, lines: list[str], results: dict[str, dict], **extra) -> None:
    """Print the table and write ``results/<stem>.md`` and ``.json``."""
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"{stem}.json").write_text(json.dumps({**extra,
                                                      "rows": [{"workload": n, **r} for n, r in results.items()]},
                                                     indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
