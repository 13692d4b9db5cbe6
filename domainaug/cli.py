"""The ``domainaug`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from . import Compose, __version__, data, generator_for, medical, remote_sensing
from . import io as dio
from .core.record import ParamRecord
from .errors import DomainaugError, MissingDependencyError, ParameterError
from .extras import available
from .io import atomic_path
from .preview import preview


def demo_pipelines() -> dict[str, Compose]:
    """The pipelines the demo applies: the brain-MRI preset for the T1 and the aerial RGBN preset."""
    return {
        "t1": medical.preset("brain-mri"),
        "rgbn": remote_sensing.preset("aerial-rgbn"),
    }


def _sidecar(path: Path, records: list[ParamRecord], source: list[str], seed: int, index: int) -> None:
    doc = {"domainaug": __version__, "inputs": source, "seed": seed, "index": index,
           "records": [r.to_dict() for r in records]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def run_demo(out: Path, seed: int = 0, variants: int = 3) -> list[Path]:
    """Both domains on the real data shipped in ``domainaug.data``: augmented files, sidecars and (with
    matplotlib, the ``plot`` extra) previews in ``out``."""
    pipelines = demo_pipelines()
    inputs = {
        "t1": (data.path(data.T1), data.path(data.T1_LABELS)),
        "rgbn": (data.path(data.RGBN), None),
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
        if available("matplotlib"):
            title = f"{image.name}: {sample.space.describe()}"
            written.append(preview(sample, outs, out / f"{name}_preview.png", title=title))
    return written


log = logging.getLogger("domainaug.cli")


class Progress:
    """The run's progress: a ``tqdm`` bar when stderr is a terminal; otherwise (a log file, a pipe)
    plain ``info`` lines, one every ``every`` jobs (a tenth of the run) or ``seconds`` seconds,
    whichever comes first, and a last one when the run ends; never carriage returns."""

    def __init__(self, quiet: bool = False, seconds: float = 10.0) -> None:
        self.quiet, self.seconds = quiet, seconds
        self.bar: Any = None
        self.last_done, self.last_time = 0, 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        if self.quiet:
            return
        if self.bar is None and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="job", file=sys.stderr, desc="augment")
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if done >= total:
                self.bar.close()
            return
        every = max(1, total // 10)
        if done >= total or done - self.last_done >= every or elapsed - self.last_time >= self.seconds:
            eta = elapsed / done * (total - done) if done else 0.0
            log.info("progress: %d/%d jobs, %.0f s elapsed, ETA %.0f s", done, total, elapsed, eta)
            self.last_done, self.last_time = done, elapsed


def _set_up_logging(verbosity: int) -> tuple[logging.Handler, int]:
    """The command's handler on the ``domainaug`` logger, on stderr: warnings and errors with ``-q``,
    information by default, debug lines with ``-v``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("domainaug: %(message)s" if verbosity <= 1 else
                                           "domainaug: %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("domainaug")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    return handler, level


def bands_table(entries: list[str] | None) -> list[str] | dict[str, list[str]] | None:
    """``--bands`` values: ``NAMES`` (comma-separated) for every file, or ``GLOB=NAMES`` per file-name
    pattern (the first that matches wins; a bare list is the fallback)."""
    if not entries:
        return None
    table: dict[str, list[str]] = {}
    default: list[str] | None = None
    for entry in entries:
        pattern, _, names = entry.rpartition("=")
        listed = [n.strip() for n in names.split(",")]
        if not all(listed) or ("=" in entry and not pattern.strip()):
            raise ParameterError("bands", entry, "NAME,NAME,... or FILE-GLOB=NAME,NAME,... (e.g. 'S2_*.tif=B02,B03')")
        if "=" in entry:
            table[pattern.strip()] = listed
        elif default is not None:
            raise ParameterError("bands", entries, "one list for every file; give the others as FILE-GLOB=NAMES")
        else:
            default = listed
    if not table:
        return default
    return {**table, **({"*": default} if default is not None else {})}


def cmd_augment(args: argparse.Namespace) -> int:
    from . import offline
    pipeline = offline.resolve_pipeline(args.preset, args.pipeline)
    jobs = offline.plan(args.inputs, args.out, args.copies, args.label_suffix, labels=args.labels)
    log.info("augment: %d jobs (%d inputs x %d copies) into %s", len(jobs), len(jobs) // args.copies, args.copies,
             args.out)
    manifest_error = None
    try:
        results = offline.run(jobs, pipeline, seed=args.seed, scheduler=args.scheduler, workers=args.workers,
                              progress=Progress(quiet=args.verbosity == 0),
                              bands=bands_table(args.bands),
                              sensor=args.sensor, equivalent_crs=args.equivalent_crs, overwrite=args.overwrite)
    except offline.ManifestError as exc:     # the jobs ran: report them, then the manifest's failure
        results, manifest_error = exc.results, str(exc)
    failed = [r for r in results if r["status"] == "failed"]
    counts = {k: sum(r["status"] == k for r in results) for k in ("done", "skipped", "failed")}
    print(f"augment: {counts['done']} written, {counts['skipped']} already complete, {counts['failed']} failed; "
          f"manifest {Path(args.out) / 'manifest.json'}")
    for r in failed:
        log.error("failed: %s: %s", r["image"], r["error"])
    if manifest_error is not None:
        log.error("error: %s", manifest_error)
        return 2
    return 1 if failed else 0


def cmd_presets(args: argparse.Namespace) -> int:
    from . import medical, offline, remote_sensing
    if args.name is None:
        for name in medical.presets():
            print(f"{name}  (medical)")
        for name in remote_sensing.presets():
            print(f"{name}  (remote sensing)")
        return 0
    print(offline.resolve_pipeline(args.name, None).to_yaml(), end="")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from . import offline
    try:
        doc = json.loads(Path(args.sidecar).read_text(encoding="utf-8"))
        job = offline.Job(**doc["job"])
        doc["records"], doc["outputs"]  # noqa: B018 - the keys replay needs, checked before any work
    except (ValueError, KeyError, TypeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise DomainaugError(f"{args.sidecar}: not a domainaug sidecar ({what}); replay takes the .json written "
                             "beside an augmented output") from None
    manifest_path = Path(job.sidecar).parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    sample = offline.load_job(job, doc["bands"] if "bands" in doc else manifest.get("bands"),
                              doc["sensor"] if "sensor" in doc else manifest.get("sensor"),
                              equivalent_crs=bool(manifest.get("equivalent_crs", False)))
    from .core.transform import replay
    out = replay(sample, doc["records"])
    with tempfile.TemporaryDirectory() as tmp:
        same = True
        layers = doc.get("layers") or {"image": job.out_image, **({"label": job.out_label} if job.out_label else {})}
        missing = sorted(set(layers) - set(out.layer_names()))
        if missing:
            print(f"replay gives no layer {missing}: DIFFERENT")
            return 1
        for layer, original in layers.items():
            again = dio.save(out, Path(tmp) / Path(original).name, layer=layer)
            ok = offline.sha256(again) == doc["outputs"][original]
            same &= ok
            print(f"{original}: {'identical' if ok else 'DIFFERENT'}")
    return 0 if same else 1


def cmd_preview(args: argparse.Namespace) -> int:
    from . import offline
    sample = dio.load(args.input, label=args.label, equivalent_crs=args.equivalent_crs)
    pipeline = offline.resolve_pipeline(args.preset, args.pipeline)
    outs = [pipeline(sample, generator_for(args.seed, 0, i)) for i in range(args.n)]
    bands = args.bands.split(",") if args.bands else None
    print(preview(sample, outs, args.out, title=f"{Path(args.input).name}: {sample.space.describe()}", bands=bands,
                  sensor=args.sensor))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.tasks import run_config
    torch.set_num_threads(args.threads)
    _, report = run_config(args.config, out=args.out, quick=args.quick)
    print(report)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .evaluate.tune import run_tune_config
    torch.set_num_threads(args.threads)
    _, _, report = run_tune_config(args.config, out=args.out, quick=args.quick)
    print(report)
    return 0


def _verbosity_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``-q``/``-v``, before the subcommand or after it (a subcommand's copy keeps the value given first)."""
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=0, default=default,
                      help="only warnings and errors on stderr (no progress); results still go to stdout")
    loud.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=2, default=default,
                      help="debug lines too (each job, each file written)")


def build_parser() -> argparse.ArgumentParser:
    """The command line: every subcommand and argument, with its help text."""
    parser = argparse.ArgumentParser(prog="domainaug", description="Augmentation of 3D medical volumes and "
                                     "multispectral rasters.",
                                     epilog="exit codes: 0 everything done; 1 some inputs failed (each named); "
                                     "2 a usage or environment error (bad arguments, a folder of another job or "
                                     "locked by another run, an unwritable manifest)")
    parser.add_argument("--version", action="version", version=f"domainaug {__version__}",
                        help="print the version and exit")
    _verbosity_options(parser, default=1)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="augment the shipped real MRI and GeoTIFF; write files and previews")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    aug = sub.add_parser("augment", help="write augmented copies of files, folders or globs (resumable)")
    aug.add_argument("inputs", nargs="+", help="image files, folders or globs")
    aug.add_argument("--out", required=True, help="output folder")
    aug.add_argument("--preset", help="a preset name (domainaug presets)")
    aug.add_argument("--pipeline", help="a pipeline YAML file")
    aug.add_argument("-n", "--copies", type=int, default=1, help="augmented copies per input")
    aug.add_argument("--seed", type=int, default=0, help="random seed; each output draws from (seed, its file stem)")
    aug.add_argument("--overwrite", action="store_true", help="replace the outputs of another job (another seed or "
                     "pipeline) in --out; without it such a folder is refused")
    aug.add_argument("--label-suffix", default=None, help="e.g. _seg: X_seg.nii.gz is the label of X.nii.gz")
    aug.add_argument("--labels", default=None, metavar="DIR", help="a folder of labels: the file of the same name, "
                     "or nnU-Net's layout (imagesTr/CASE_0000.nii.gz, _0001, ... channels with labelsTr/CASE.nii.gz); "
                     "outputs keep the layout (OUT/imagesTr, OUT/labelsTr); a missing label fails its image")
    aug.add_argument("--scheduler", default=None, help="address of a Dask scheduler (needs domainaug[dask]; "
                     "default: threads in this process)")
    aug.add_argument("--workers", type=int, default=None, help="local worker threads (default: cores)")
    aug.add_argument("--bands", default=None, action="append", help="band names, in file order, for rasters without "
                     "band descriptions (read as band1, band2, ...), e.g. B1,B2,B3,B4,B5,B7 with --sensor landsat7; "
                     "or per file-name pattern, repeatable: --bands 'S2_*.tif=B02,B03,B04,B08' (a count that is not "
                     "the file's fails that file); descriptions such as B02_blue, B1_blue or SR_B4 in the file need "
                     "no flag (a preset brings its sensor)")
    aug.add_argument("--sensor", default=None, help="sensor table for --bands (sentinel2, landsat7, ...)")
    aug.add_argument("--equivalent-crs", action="store_true",
                     help="accept a label whose CRS is written differently but is the same system (by PROJ)")
    pre = sub.add_parser("presets", help="list presets, or print one as YAML")
    pre.add_argument("name", nargs="?", help="a preset to print as pipeline YAML (default: list them)")
    rep = sub.add_parser("replay", help="regenerate an output from its sidecar and check it is identical")
    rep.add_argument("sidecar", help="the .json sidecar written beside an augmented output")
    prv = sub.add_parser("preview", help="a PNG of an input next to augmented variants")
    prv.add_argument("input", help="an image file (volume or raster)")
    prv.add_argument("--label", default=None, help="its label map, outlined in the panels")
    prv.add_argument("--equivalent-crs", action="store_true", help="as for augment")
    prv.add_argument("--preset", help="a preset name (domainaug presets)")
    prv.add_argument("--pipeline", help="a pipeline YAML file")
    prv.add_argument("-n", type=int, default=3, help="augmented variants beside the input (default: 3)")
    prv.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    prv.add_argument("--bands", default=None, help="three band names for the colour composite, e.g. B04,B03,B02 or "
                     "nir,red,green (band descriptions, band3-style names of bands without one, or names the "
                     "sensor table resolves; default: red, green, blue when the names say which, else bands 3,2,1)")
    prv.add_argument("--sensor", default=None, help="sensor table for the names in --bands (sentinel2, landsat8, ...)")
    prv.add_argument("--out", required=True, help="PNG path")
    ev = sub.add_parser("evaluate", help="compare pipelines by k-fold training (experiments/*.yaml); write a report")
    ev.add_argument("config", help="a YAML config (see experiments/)")
    ev.add_argument("--out", default=None, help="report folder (default: the config's 'out')")
    ev.add_argument("--quick", action="store_true", help="2 folds, tiny training: check the set-up end to end")
    ev.add_argument("--threads", type=int, default=2, help="torch threads for training (default: 2)")
    tun = sub.add_parser("tune", help="search an augmentation for a task (Optuna, resumable) and grade it on held-out "
                         "outer folds against none and the preset; write the pipeline YAML and a report")
    tun.add_argument("config", help="an evaluate config with a 'tune' section (see experiments/)")
    tun.add_argument("--out", default=None, help="report folder, also holding the resumable study.sqlite3 "
                     "(default: the tune section's 'out')")
    tun.add_argument("--quick", action="store_true", help="2 trials, 2 inner and 2 outer folds, tiny training: "
                     "check the set-up end to end")
    tun.add_argument("--threads", type=int, default=1, help="torch threads for training (default: 1)")
    for sp in _subparsers(parser).values():
        _verbosity_options(sp, default=argparse.SUPPRESS)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler, level = _set_up_logging(args.verbosity)
    try:
        if args.command == "demo":
            for path in run_demo(args.out, args.seed):
                print(path)
            if available("matplotlib"):
                print(f"demo: wrote augmented volumes, rasters, sidecars and previews into {args.out}/")
            else:
                print(f"demo: wrote augmented volumes, rasters and sidecars into {args.out}/ (no previews: "
                      "pip install 'domainaug[plot]' for them)")
            return 0
        return {"augment": cmd_augment, "presets": cmd_presets, "replay": cmd_replay, "preview": cmd_preview,
                "evaluate": cmd_evaluate, "tune": cmd_tune}[
            args.command](args)
    except (DomainaugError, MissingDependencyError, OSError) as exc:
        log.error("error: %s", exc)
        return 2
    finally:                                  # the library's logger as it was: a NullHandler only
        logging.getLogger("domainaug").removeHandler(handler)
        logging.getLogger("domainaug").setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
