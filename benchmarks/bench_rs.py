"""Remote-sensing benchmark (issue: remote sensing): a 12x1024x1024 float32 raster with a uint8 label.

    make bench            # or: .venv/bin/python benchmarks/bench_rs.py [--runs N]

Floors measured in the same run: one memory copy of the raster (for dihedral + jitter and crop),
one bilinear grid_sample pass with a precomputed identity grid (for any-angle rotation). Kornia and
Albumentations rows appear when they are installed. Writes benchmarks/results/remote_sensing.md/.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from bench_core import THREADS, measure_interleaved, write_results  # noqa: E402  (same method, same thread settings)

import domainaug as da  # noqa: E402
from domainaug import remote_sensing as rs  # noqa: E402

SHAPE = (1024, 1024)
BANDS = 12
COPY = "floor: copy of the 48 MiB raster"
GS = "floor: grid_sample bilinear 12 bands, identity grid, 2 slabs"
GS_ROT = "reference: grid_sample bilinear 12 bands, grid rotated by 30 degrees, 2 slabs (image only)"
DIHEDRAL = "domainaug Compose[RotationPolicy(dihedral), SpectralJitter] image + label"
ANY = "domainaug RotationPolicy(any) image + label (corners marked invalid)"
CROP = "domainaug Crop(512) image + label"


def make_sample() -> da.Sample:
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, BANDS, 32, 32)).astype(np.float32))
    image = F.interpolate(coarse, size=SHAPE, mode="bilinear", align_corners=True)[0].contiguous()
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    label = ((yy // 128 + xx // 96) % 7).astype(np.uint8)[None]
    affine = np.array([[0.0, 10.0, 500000.0], [-10.0, 0.0, 4200000.0], [0, 0, 1]])
    return da.Sample(da.Space(SHAPE, affine, "EPSG:32633"), {
        "image": da.Layer(image, da.Role.INTENSITY, 0.0, tuple(f"b{i + 1}" for i in range(BANDS))),
        "label": da.Layer(torch.from_numpy(label), da.Role.LABEL)})


def workloads(sample: da.Sample) -> dict[str, object]:
    image = sample["image"]
    counter = {"seed": 0}

    def ours(t):
        def call():
            counter["seed"] += 1
            t(sample, torch.Generator().manual_seed(counter["seed"])).layers  # noqa: B018
        return call

    grid = F.affine_grid(torch.eye(2, 3)[None], (1, 1) + SHAPE, align_corners=True)
    halves = torch.cat([grid[:, : SHAPE[0] // 2], grid[:, SHAPE[0] // 2:]])
    c, s_ = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    turn = F.affine_grid(torch.tensor([[[c, -s_, 0.0], [s_, c, 0.0]]], dtype=torch.float32), (1, 1) + SHAPE,
                         align_corners=True)
    rotated = torch.cat([turn[:, : SHAPE[0] // 2], turn[:, SHAPE[0] // 2:]])
    x2 = image[None].expand(2, -1, -1, -1)
    work: dict[str, object] = {
        COPY: lambda: image.clone(),
        GS: lambda: F.grid_sample(x2, halves, mode="bilinear", align_corners=True),
        GS_ROT: lambda: F.grid_sample(x2, rotated, mode="bilinear", align_corners=True),
        DIHEDRAL: ours(da.Compose([rs.RotationPolicy("dihedral"),
                                   rs.SpectralJitter(gain=(0.9, 1.1), bias=(-0.02, 0.02))])),
        ANY: ours(rs.RotationPolicy("any")),
        CROP: ours(da.Crop(512)),
    }
    work.update(_peers(image, sample["label"]))
    return work


NOTES: dict[str, str] = {}


def _peers(image: torch.Tensor, label: torch.Tensor) -> dict[str, object]:
    """Kornia and Albumentations doing the same work where they can (noted where they cannot)."""
    work: dict[str, object] = {}
    try:
        import kornia.augmentation as K
        x, m = image[None], label[None].float()

        def kornia(aug):
            seq = K.AugmentationSequential(*aug, data_keys=["input", "mask"])
            return lambda: seq(x, m)

        name = f"kornia {__import__('kornia').__version__} HorizontalFlip + RandomRotation90 (no per-band jitter)"
        work[name] = kornia([K.RandomHorizontalFlip(p=0.5), K.RandomRotation90(times=(0, 3), p=1.0)])
        NOTES[name] = "dihedral only: kornia has no per-band gain/bias for 12 bands; rot90 is a bilinear warp"
        name = f"kornia {__import__('kornia').__version__} RandomRotation(180) image + mask"
        work[name] = kornia([K.RandomRotation(degrees=180.0, p=1.0)])
        NOTES[name] = "bilinear image, nearest mask, zero padding; mask returned as float32"
        name = f"kornia {__import__('kornia').__version__} RandomCrop(512) image + mask"
        work[name] = kornia([K.RandomCrop((512, 512), p=1.0)])
    except ImportError:
        pass
    try:
        import albumentations as A
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())          # prepared outside timing
        mask = label[0].numpy()

        def alb(ops):
            compose = A.Compose(ops, seed=0)
            return lambda: compose(image=hwc, mask=mask)

        name = f"albumentations {A.__version__} D4 + MultiplicativeNoise(per_channel) (HWC)"
        work[name] = alb([A.D4(p=1.0), A.MultiplicativeNoise(multiplier=(0.9, 1.1), per_channel=True, p=1.0)])
        NOTES[name] = "gain only (no per-band bias); HWC input: a CHW user pays ~2 transposes more"
        name = f"albumentations {A.__version__} Rotate(180) image + mask (HWC)"
        work[name] = alb([A.Rotate(limit=180, p=1.0)])
        NOTES[name] = "cv2.warpAffine in chunks of 4 channels; HWC input"
        name = f"albumentations {A.__version__} RandomCrop(512) image + mask (HWC)"
        work[name] = alb([A.RandomCrop(512, 512, p=1.0)])
    except ImportError:
        pass
    return work


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sample = make_sample()
    work = workloads(sample)
    results = measure_interleaved(work, args.runs, peak=False)
    copy, gs = results[COPY]["median_ms"], results[GS]["median_ms"]
    floors = {DIHEDRAL: copy, CROP: copy, ANY: gs, COPY: copy, GS: gs, GS_ROT: gs}
    for name in results:                                   # peers: by the workload they stand for
        floors.setdefault(name, gs if "Rotat" in name and "90" not in name else copy)
    missing = [name for name in ("kornia", "albumentations") if _absent(name)]
    lines = [
        f"# Remote-sensing benchmark: {BANDS}x{SHAPE[0]}x{SHAPE[1]} float32 + uint8 label",
        "",
        f"{THREADS} threads; torch {torch.__version__}. Same interleaved method as the core benchmark ({args.runs} "
        "rounds). Floors are measured in this run.",
        "" if not missing else f"Not installed, so not compared here: {', '.join(missing)} (the `bench` extra).",
        "",
        "| workload | median ms | min ms | x its floor | cores used | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r['median_ms'] / floors[name]:.2f} | "
                     f"{r['cores']:.2f} | {NOTES.get(name, '')} |")
    lines += ["", f"Targets (issue 'remote sensing'): dihedral + jitter <= 2x copy -> "
              f"{'MET' if results[DIHEDRAL]['median_ms'] <= 2 * copy else 'NOT MET'} "
              f"({results[DIHEDRAL]['median_ms'] / copy:.2f}x); any-angle <= 1.5x grid_sample -> "
              f"{'MET' if results[ANY]['median_ms'] <= 1.5 * gs else 'NOT MET'} "
              f"({results[ANY]['median_ms'] / gs:.2f}x).",
              "", "The identity grid reads the source in order; a rotated grid does not. Against grid_sample doing a "
              f"rotation (image only, no label, no validity) the any-angle row is "
              f"{results[ANY]['median_ms'] / results[GS_ROT]['median_ms']:.2f}x."]
    write_results("remote_sensing", lines, results, runs=args.runs)
    return 0


def _absent(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is None


if __name__ == "__main__":
    sys.exit(main())
