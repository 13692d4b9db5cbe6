"""The ``domainaug`` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import Compose, __version__, generator_for
from . import medical, remote_sensing
from . import io as dio
from .errors import DomainaugError
from .io import atomic_path
from .preview import preview

FIXTURES = Path(__file__).resolve().parents[1] / "data_fixtures"


def demo_pipelines() -> dict[str, Compose]:
    """The pipelines the demo applies: the brain-MRI preset for the T1 and the aerial RGBN preset."""
    return {
        "t1": medical.preset("brain-mri"),
        "rgbn": remote_sensing.preset("aerial-rgbn"),
    }


def _sidecar(path: Path, records, source: list[str], seed: int, index: int) -> None:
    doc = {"domainaug": __version__, "inputs": source, "seed": seed, "index": index,
           "records": [r.to_dict() for r in records]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1))


def run_demo(out: Path, seed: int = 0, variants: int = 3) -> list[Path]:
    """Both domains on the shipped real data: augmented files, sidecars and previews in ``out``."""
    pipelines = demo_pipelines()
    inputs = {
        "t1": (FIXTURES / "KmeansTest_T1UCharRaw.nii.gz", FIXTURES / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"),
        "rgbn": (FIXTURES / "rgbn_suba.tif", None),
    }
    written = []
    for name, (image, label) in inputs.items():
        sample = dio.load(image, label=label)
        if name == "rgbn":                     # the file has no band descriptions: name them for the preset
            sample = remote_sensing.set_bands(sample, ["blue", "green", "red", "nir"], sensor="aerial-rgbn")
        outs = [pipelines[name](sample, generator_for(seed, 0, i)) for i in range(variants)]
        ext = ".nii.gz" if sample.space.ndim == 3 else ".tif"
        first = outs[0]
        written.append(dio.save(first, out / f"{name}_aug{ext}"))
        if "label" in first.layer_names():
            written.append(dio.save(first, out / f"{name}_label_aug{ext}", layer="label"))
        sidecar = out / f"{name}_aug.json"
        _sidecar(sidecar, first.history, [str(image)] + ([str(label)] if label else []), seed, 0)
        written.append(sidecar)
        written.append(preview(sample, outs, out / f"{name}_preview.png", title=f"{image.name}: {sample.space.describe()}"))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="domainaug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="augment the shipped real MRI and GeoTIFF; write files and previews")
    demo.add_argument("--out", type=Path, default=Path("demo_out"))
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        if args.command == "demo":
            for path in run_demo(args.out, args.seed):
                print(path)
            print(f"demo: wrote augmented volumes, rasters, sidecars and previews into {args.out}/")
    except DomainaugError as exc:
        print(f"domainaug: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
