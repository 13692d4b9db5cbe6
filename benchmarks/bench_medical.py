"""Medical benchmark (issue: medical): bias field, Rician noise, motion and the brain-mri preset on a
1x160x192x160 float32 volume with a uint8 label map, against MONAI and TorchIO where installed, with
a memory-copy floor in the same run; and the cost of a warp with a 116-label atlas vs a binary mask.

    make bench            # or: .venv/bin/python benchmarks/bench_medical.py [--runs N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_core import SHAPE, THREADS, make_data, measure_interleaved, write_results  # noqa: E402

import domainaug as da  # noqa: E402
from domainaug import medical as md  # noqa: E402

COPY = "floor: copy of the 19.7 MB volume"
NOTES: dict[str, str] = {}


def workloads(image: torch.Tensor, label: torch.Tensor) -> dict[str, object]:
    sample = da.Sample(da.Space.from_spacing(SHAPE, 1.0), {
        "image": da.Layer(image, da.Role.INTENSITY), "label": da.Layer(label, da.Role.LABEL)})
    counter = {"seed": 0}

    def ours(t, s=sample):
        def call():
            counter["seed"] += 1
            t(s, torch.Generator().manual_seed(counter["seed"])).layers  # noqa: B018
        return call

    rng = np.random.default_rng(0)
    atlas = np.kron(rng.permutation(np.arange(1, 117)).reshape(4, 29, 1), np.ones((40, 6, 160), int))
    atlas = np.pad(atlas, ((0, 0), (0, 192 - atlas.shape[1]), (0, 0)))[:, :, :160].astype(np.uint8)
    atlas_sample = sample.with_layers(label=da.Layer(torch.from_numpy(atlas)[None], da.Role.LABEL))
    binary = sample.with_layers(label=da.Layer((label > 0).to(torch.uint8), da.Role.LABEL))
    warp = da.Affine(degrees=(-10, 10), scales=(0.9, 1.1))
    work: dict[str, object] = {
        COPY: lambda: image.clone(),
        "domainaug BiasField order 3": ours(md.BiasField((-0.3, 0.3), order=3)),
        "domainaug RicianNoise": ours(md.RicianNoise((0.05, 0.1))),
        "domainaug Motion (2 movements)": ours(md.Motion((-3, 3), (-3, 3), num_movements=2)),
        "domainaug brain-mri preset end-to-end": ours(md.preset("brain-mri")),
        "domainaug Affine, binary mask": ours(warp, binary),
        "domainaug Affine, 116-label atlas": ours(warp, atlas_sample),
    }
    try:
        from monai.transforms import RandBiasField, RandRicianNoise
        from monai.utils import set_determinism
        set_determinism(seed=0)
        x = image.clone()
        bias, rician = RandBiasField(degree=3, coeff_range=(0.0, 0.3), prob=1.0), RandRicianNoise(prob=1.0, std=0.1)
        work[f"MONAI {__import__('monai').__version__} RandBiasField degree 3"] = lambda: bias(x)
        work[f"MONAI {__import__('monai').__version__} RandRicianNoise"] = lambda: rician(x)
    except ImportError:
        pass
    try:
        import torchio as tio
        subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)),
                              label=tio.LabelMap(tensor=label.clone(), affine=np.eye(4)))
        torch.manual_seed(0)
        tb, tm = tio.RandomBiasField(coefficients=0.3, order=3), tio.RandomMotion(degrees=3, translation=3,
                                                                                 num_transforms=2)
        name = f"TorchIO {tio.__version__} RandomBiasField order 3"
        work[name] = lambda: tb(subject)
        NOTES[name] = "subject (image + label) deep-copied per call, as TorchIO does"
        name = f"TorchIO {tio.__version__} RandomMotion (2 movements)"
        work[name] = lambda: tm(subject)
        NOTES[name] = "image only is moved; label passes"
    except ImportError:
        pass
    return work


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    image, label = make_data()
    results = measure_interleaved(workloads(image, label), args.runs, peak=False)
    copy = results[COPY]["median_ms"]
    lines = [f"# Medical benchmark: 1x{SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} float32 + uint8 labels", "",
             f"{THREADS} threads; torch {torch.__version__}; interleaved rounds ({args.runs}); floor = copy of the "
             f"volume in the same run ({copy:.1f} ms). Rician noise: TorchIO 1.2 has none. Motion: MONAI has none.",
             "", "| workload | median ms | min ms | x copy floor | cores used | notes |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['median_ms'] / copy:.1f} | "
                     f"{r['cores']:.2f} | {NOTES.get(name, '')} |")
    ratio = results["domainaug Affine, 116-label atlas"]["median_ms"] / \
        results["domainaug Affine, binary mask"]["median_ms"]
    preset = results["domainaug brain-mri preset end-to-end"]["median_ms"]
    lines += ["", f"116-label warp / binary-mask warp: {ratio:.2f}x (target <= 1.5x). "
              f"brain-mri preset: {preset:.0f} ms per volume (target < 500 ms)."]
    write_results("medical", lines, results, runs=args.runs, copy_ms=copy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
