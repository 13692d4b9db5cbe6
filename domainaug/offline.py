"""Offline generation: augmented copies of a dataset, written atomically with JSON sidecars, resumable,
on local threads or an existing Dask cluster (the ``dask`` extra).

Every output file is written under a temporary name, read back and renamed when complete; its
sidecar (records, seed, pipeline, input and output checksums, versions) is written last, so a
sidecar that matches the request marks a finished output and a re-run skips it.

Layouts (``plan``): outputs beside each other in the folder (``X_aug000.nii.gz``, with
``--label-suffix`` ``X_seg_aug000.nii.gz``); with a labels folder, images and labels in two
subfolders named like the inputs' (``imagesTr/<case>_aug000_0000.nii.gz`` and
``labelsTr/<case>_aug000.nii.gz`` for nnU-Net's layout, which also gets the input's ``dataset.json``
with its ``numTraining``). Sidecars, ``manifest.json``, the lock and any layer other than the
images and the label stay in the folder itself.

Seeding: each job's generator comes from ``(seed, job_key(job))``, a stable id of the output (its
name, the sidecar's stem: the input's name or case and the copy index), never from the job's
position in the list. So an output's bytes do not depend on the scheduler, the number of workers,
or which other inputs the run has: adding, removing or reordering inputs leaves the others' outputs
byte-identical.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import hashlib
import json
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .core.random import generator_for
from .core.sample import Sample
from .core.transform import Transform, transform_from_dict
from .errors import DomainaugError, ParameterError
from .extras import require
from .io import atomic_path, load, save
from .io.many import check_same_grid

log = logging.getLogger(__name__)

__all__ = ["Job", "plan", "layer_path", "load_job", "job_bands", "channel_layers", "run_job", "run", "resolve_pipeline",
           "sha256"]

#: Band names: one list for every file, or a table of file-name glob -> names (``job_bands``).
Bands = Sequence[str] | Mapping[str, Sequence[str]] | None

_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    """One output case. ``layout`` is ``"flat"`` (outputs beside each other in the folder),
    ``"folders"`` (``labels=DIR`` paired by file name: images and labels in two subfolders) or
    ``"nnunet"`` (``imagesTr/<case>_0000.nii.gz`` ... with ``labelsTr/<case>.nii.gz``: ``images``
    lists the case's channel files in channel order and ``out_images`` their outputs, each
    ``<case>_aug<k>_<channel>``). A job whose ``label`` does not exist fails, naming both files."""

    index: int
    image: str
    label: str | None
    copy: int
    out_image: str
    out_label: str | None
    sidecar: str
    images: tuple[str, ...] = ()
    out_images: tuple[str, ...] = ()
    layout: str = "flat"


def job_key(job: Job) -> int:
    """The stable id a job's generator is seeded from: its output's name (input name or case and
    copy index, unique in the folder; the sidecar's stem), hashed to 63 bits."""
    stem = _split_ext(Path(job.sidecar).name)[0]
    return int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "little") >> 1


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_ext(name: str) -> tuple[str, str]:
    for ext in _EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)], name[-len(ext):]
    return os.path.splitext(name)


def _expand(inputs: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [f for f in sorted(p.iterdir()) if f.is_file() and f.name.lower().endswith(_EXTENSIONS)]
        elif any(ch in item for ch in "*?["):
            files += [Path(f) for f in sorted(glob.glob(item))]
        else:
            files.append(p)
    return files


def plan(inputs: Sequence[str], out: str | os.PathLike, copies: int = 1, label_suffix: str | None = None,
         labels: str | os.PathLike | None = None) -> list[Job]:
    """Jobs for every input file (or folder, or glob) and copy.

    Labels: with ``label_suffix`` (e.g. ``"_seg"``), ``X_seg.nii.gz`` is the label of ``X.nii.gz``
    and is not augmented on its own (an image without one is augmented alone). With ``labels`` (a
    folder), every image has its label there: the file of the same name, or, when every image is
    named ``<case>_<4 digits>`` and none has a same-named label, nnU-Net's layout
    (``imagesTr/<case>_0000.nii.gz``, ``_0001``, ... are the channels of one case, each its own
    intensity layer ``image_0000``, ``image_0001``, ...; one channel is the layer ``image``; the
    label is ``labelsTr/<case>.nii.gz``). Outputs keep the layout: images in the folder named like
    the images' (``out/imagesTr/<case>_aug000_0000.nii.gz``), labels in the folder named like
    ``labels`` (``out/labelsTr/<case>_aug000.nii.gz``), sidecars, the manifest and any other layer in
    ``out``. An image whose label is missing is a failed job naming both files.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ParameterError("copies", copies, "an integer >= 1")
    files = _expand(inputs)
    if not files:
        raise ParameterError("inputs", list(inputs), "files, folders or globs that match at least one image")
    if labels is not None:
        if label_suffix is not None:
            raise ParameterError("labels", str(labels), "either a labels folder or a label suffix, not both")
        return _plan_with_labels(files, Path(out), copies, Path(labels))
    names = {str(f) for f in files}
    label_files = set()
    pairs = []
    for f in files:
        stem, ext = _split_ext(f.name)
        if label_suffix and stem.endswith(label_suffix) and str(f.with_name(stem[: -len(label_suffix)] + ext)) in names:
            label_files.add(str(f))
    for f in files:
        if str(f) in label_files:
            continue
        stem, ext = _split_ext(f.name)
        label = f.with_name(stem + label_suffix + ext) if label_suffix else None
        pairs.append((f, label if label is not None and label.exists() else None))
    out = Path(out)
    stems: dict[str, list[str]] = {}
    for f, _ in pairs:
        stems.setdefault(_split_ext(f.name)[0], []).append(str(f))
    _clash(stems)
    jobs: list[Job] = []
    for f, label in pairs:
        stem, ext = _split_ext(f.name)
        for k in range(copies):
            tag = f"_aug{k:03d}"
            jobs.append(Job(len(jobs), str(f), None if label is None else str(label), k, str(out / f"{stem}{tag}{ext}"),
                            None if label is None else str(out / f"{stem}{label_suffix}{tag}{ext}"),
                            str(out / f"{stem}{tag}.json")))
    return jobs


_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _clash(groups: dict[str, list[str]]) -> None:
    clashes = {k: v for k, v in groups.items() if len(v) > 1}
    if clashes:
        raise ParameterError("inputs", sorted(sum(clashes.values(), [])), "file names that differ (their outputs "
                             "would overwrite each other in the output folder)")


def _plan_with_labels(files: list[Path], out: Path, copies: int, labels: Path) -> list[Job]:
    if not labels.is_dir():
        raise ParameterError("labels", str(labels), "an existing folder of label files")
    files = [f for f in files if f.resolve().parent != labels.resolve()]     # a parent folder given: not the labels
    if not files:
        raise ParameterError("inputs", [], f"image files outside the labels folder {labels}")
    matches = [_CHANNEL.match(_split_ext(f.name)[0]) for f in files]
    nnunet = all(matches) and not any((labels / f.name).exists() for f in files)
    parents = {f.parent.name for f in files}
    image_dir = parents.pop() if len(parents) == 1 else "images"
    label_dir = labels.resolve().name
    if image_dir in ("", label_dir):
        image_dir, label_dir = "images", "labels"
    cases: dict[str, list[tuple[str, Path]]] = {}
    for f, m in zip(files, matches):
        if nnunet and m is not None:
            cases.setdefault(m["case"], []).append((m["channel"], f))
        else:
            cases.setdefault(_split_ext(f.name)[0], []).append(("", f))
    _clash({f"{case}_{ch}": [str(f) for c, f in chans if c == ch] for case, chans in cases.items() for ch, _ in chans})
    jobs: list[Job] = []
    for case, chans in cases.items():
        chans = sorted(chans)
        ext = _split_ext(chans[0][1].name)[1]
        label = labels / (f"{case}{ext}" if nnunet else chans[0][1].name)
        for k in range(copies):
            name = f"{case}_aug{k:03d}"
            outs = tuple(str(out / image_dir / (f"{name}_{ch}{ext}" if nnunet else f"{name}{ext}")) for ch, _ in chans)
            jobs.append(Job(len(jobs), str(chans[0][1]), str(label), k, outs[0], str(out / label_dir / f"{name}{ext}"),
                            str(out / f"{name}.json"), images=tuple(str(f) for _, f in chans) if nnunet else (),
                            out_images=outs if nnunet else (), layout="nnunet" if nnunet else "folders"))
    return jobs


def channel_layers(job: Job) -> dict[str, tuple[str, str]]:
    """An nnU-Net case's intensity layers: layer name -> (channel file, its output). One channel is
    the layer ``"image"``; several are ``image_0000``, ``image_0001``, ... (by channel suffix)."""
    if len(job.images) <= 1:
        return {"image": (job.image, job.out_image)}
    return {f"image_{_CHANNEL.match(_split_ext(Path(f).name)[0])['channel']}": (f, o)  # type: ignore[index]
            for f, o in zip(job.images, job.out_images)}


def job_inputs(job: Job) -> list[str]:
    """Every file a job reads: its image (or channel files) and its label."""
    return [*(job.images or (job.image,)), *([job.label] if job.label else [])]


def job_bands(job: Job, bands: Bands) -> tuple[str, list[str]] | None:
    """The band names for ``job``'s image, and the pattern that gave them: ``bands`` is a list for
    every file, or a table of file-name glob -> names (the first pattern that matches the image's
    file name wins; ``None`` when none does: the file's band descriptions name its bands)."""
    if bands is None:
        return None
    if isinstance(bands, Mapping):
        name = Path(job.image).name
        for pattern, names in bands.items():
            if fnmatch.fnmatchcase(name, pattern):
                return pattern, list(names)
        return None
    return "*", list(bands)


def load_job(job: Job, bands: Bands = None, sensor: str | None = None,
             equivalent_crs: bool = False) -> Sample:
    """The sample a job augments (its image or channel files, its label, its band names).

    Raises:
        DomainaugError: a missing label (naming the image and the label), nnU-Net channel files that
            are not ``_0000``, ``_0001``, ... without a gap, or ``bands`` whose count is not the
            file's (naming the file).
        SpaceMismatchError: channel files (or the label) of one case on different grids.
    """
    if job.label is not None and not Path(job.label).exists():
        how = "<case>_0000 -> <case>, nnU-Net's layout" if job.layout == "nnunet" else "the same file name"
        raise DomainaugError(f"{job.image}: its label {job.label} does not exist (labels pair by {how})")
    if job.images:
        found = [_CHANNEL.match(_split_ext(Path(f).name)[0])["channel"] for f in job.images]  # type: ignore[index]
        if found != [f"{i:04d}" for i in range(len(found))]:
            raise DomainaugError(f"{job.image}: the case's channel files end in {', '.join('_' + c for c in found)}; "
                                 "nnU-Net's channels are _0000, _0001, ... with none missing")
    if len(job.images) > 1:
        layers = channel_layers(job)
        sample = load({**{n: f for n, (f, _) in layers.items()}, **({"label": job.label} if job.label else {})},
                      equivalent_crs=equivalent_crs)
        files = {**{n: f for n, (f, _) in layers.items()}, "label": job.label}
        first = next(iter(layers))
        for name in sample.grids:
            if name in files:
                check_same_grid(sample.space, files[first], sample.space_of(name), files[name], equivalent_crs,
                                "the channel files of one case and its label share one grid (resample them first)")
    else:
        sample = load(job.image, label=job.label, equivalent_crs=equivalent_crs)
    chosen = job_bands(job, bands)
    if chosen is not None:
        pattern, names = chosen
        from .remote_sensing import set_bands
        count = sample.layer_info("image").data.shape[0] if "image" in sample.layer_names() else 0
        if len(names) != count:
            given = f"--bands {pattern}={','.join(names)}" if pattern != "*" else f"--bands {','.join(names)}"
            raise DomainaugError(f"{job.image}: {given} names {len(names)} bands, but the file has {count}")
        sample = set_bands(sample, names, sensor)
    return sample


_LAYER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def layer_path(job: Job, name: str) -> str:
    """Where ``job`` writes its output layer ``name``: ``image`` at ``job.out_image``, ``label`` at
    ``job.out_label`` when the input had a label, every other layer (``valid``, ``occlusion``, an
    appended ``NDVI``, a label the pipeline made) at ``<stem>_aug<k>_<name><ext>`` beside the image.

    Raises:
        ParameterError: a layer name that cannot be part of a file name.
    """
    if name == "image":
        return job.out_image
    if name == "label" and job.out_label is not None:
        return job.out_label
    if job.images and name in channel_layers(job):
        return channel_layers(job)[name][1]
    if not _LAYER_NAME.fullmatch(name):
        raise ParameterError("layer", name, "a layer name of letters, digits, '_', '-' or '.' (it names a file)")
    stem, ext = _split_ext(Path(job.sidecar).name)[0], _split_ext(Path(job.out_image).name)[1]
    return str(Path(job.sidecar).with_name(f"{stem}_{name}{ext}"))   # beside the sidecar (not in imagesTr)


def resolve_pipeline(preset: str | None = None, pipeline: str | None = None) -> Transform:
    """A pipeline from a preset name (medical or remote sensing) or a YAML file."""
    if preset is not None and pipeline is None:
        from . import medical, remote_sensing
        names = medical.presets() + remote_sensing.presets()
        if preset not in names:
            raise ParameterError("preset", preset, "one of " + ", ".join(sorted(names)))
        return (medical if preset in medical.presets() else remote_sensing).preset(preset)
    if pipeline is None or preset is not None:
        raise ParameterError("preset", preset, "either --preset NAME or --pipeline FILE.yaml")
    import yaml
    path = Path(pipeline)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParameterError("pipeline", str(path), "an existing YAML file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise DomainaugError(f"{path}: {where}{getattr(exc, 'problem', None) or exc}") from exc
    try:
        return transform_from_dict(doc)
    except TypeError as exc:                                # an unknown or missing constructor key
        raise DomainaugError(f"{path}: {exc}") from exc
    except ParameterError as exc:
        raise DomainaugError(f"{path}: {exc}") from exc


def _complete(job: Job, pipeline: dict[str, Any], seed: int, bands: list[str] | None = None) -> bool:
    """Whether the job's outputs are those this request would make: its sidecar records the same
    seed, pipeline and domainaug version, the inputs still have the checksums it records, and every
    output it names still has its own. Anything else is made again."""
    try:
        doc = json.loads(Path(job.sidecar).read_text(encoding="utf-8"))
        if (doc.get("seed"), doc.get("pipeline"), doc.get("domainaug")) != (seed, pipeline, __version__):
            return False
        if doc.get("bands") != bands:
            return False
        inputs = job_inputs(job)
        if sorted(doc["inputs"]) != sorted(inputs) or any(sha256(p) != doc["inputs"][p] for p in inputs):
            return False
        return all(Path(p).exists() and sha256(p) == digest for p, digest in doc["outputs"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _foreign(jobs: Sequence[Job], pipeline: dict[str, Any], seed: int) -> str | None:
    """What makes the output folder another job's: a sidecar (or the manifest) of one of these
    outputs recording another seed or pipeline, or None."""
    out_dir = Path(jobs[0].sidecar).parent
    docs = [(out_dir / "manifest.json", "the manifest")] + [(Path(j.sidecar), Path(j.sidecar).name) for j in jobs]
    for path, what in docs:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        if "seed" in doc and doc["seed"] != seed:
            return f"{what} records seed {doc['seed']}, not {seed}"
        if "pipeline" in doc and doc["pipeline"] != pipeline:
            return f"{what} records another pipeline"
    return None


def _sidecar_layers(job: Job) -> dict[str, str]:
    """The layer files a finished job's sidecar lists (image and label for sidecars from before
    every layer was written)."""
    doc = json.loads(Path(job.sidecar).read_text(encoding="utf-8"))
    if "layers" in doc:
        return dict(doc["layers"])
    return {"image": job.out_image, **({"label": job.out_label} if job.out_label is not None else {})}


def run_job(job: Job, pipeline: dict[str, Any], seed: int, bands: Bands = None,
            sensor: str | None = None, equivalent_crs: bool = False) -> dict[str, Any]:
    """Make one output (skipped when already complete); never raises for a bad input file.
    ``bands`` (with ``sensor``) names the channels of rasters without band descriptions: a list
    for every file, or a table of file-name glob -> names (``job_bands``);
    ``equivalent_crs`` accepts a label whose CRS PROJ calls equal to the image's. Every layer of the
    output is written, each to its own file (``layer_path``) with its own on-disk type and metadata
    (``domainaug.io.save``; a VALID layer as a uint8 mask); the sidecar's ``"layers"`` maps each
    layer name to its file, and the result's ``"layers"`` too."""
    chosen = job_bands(job, bands)
    if _complete(job, pipeline, seed, None if chosen is None else chosen[1]):
        log.debug("%s: already complete (%s)", job.image, job.sidecar)
        return {"index": job.index, "status": "skipped", "image": job.image, "layers": _sidecar_layers(job)}
    try:
        transform = transform_from_dict(pipeline)
        sample = load_job(job, bands, sensor, equivalent_crs)
        out = transform(sample, generator_for(seed, 0, job_key(job)))
        layers = {name: layer_path(job, name) for name in out.layer_names()}
        outputs = [save(out, path, layer=name) for name, path in layers.items()]
        doc = {"domainaug": __version__, "python": platform.python_version(), "seed": seed, "pipeline": pipeline,
               "job": asdict(job),
               "inputs": {p: sha256(p) for p in job_inputs(job)},
               "bands": None if chosen is None else chosen[1], "sensor": sensor,
               "outputs": {str(p): sha256(p) for p in outputs},
               "layers": layers, "records": [r.to_dict() for r in out.history]}
        with atomic_path(Path(job.sidecar)) as tmp:                     # the completion marker, written last
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        log.debug("%s: wrote %s", job.image, ", ".join(map(str, outputs)))
        return {"index": job.index, "status": "done", "image": job.image, "layers": layers}
    except Exception as exc:  # noqa: BLE001 - a bad input is reported and skipped, the others go on
        log.debug("%s: failed: %s: %s", job.image, type(exc).__name__, exc)
        return {"index": job.index, "status": "failed", "image": job.image, "error": f"{type(exc).__name__}: {exc}"}


def run(jobs: Sequence[Job], pipeline: Transform, seed: int = 0, scheduler: str | None = None,
        workers: int | None = None, progress: Callable[[int, int, float], None] | None = None,
        bands: Bands = None, sensor: str | None = None,
        equivalent_crs: bool = False, overwrite: bool = False) -> list[dict[str, Any]]:
    """Run the jobs on ``workers`` threads in this process (default: the machine's cores) or on the Dask
    cluster at ``scheduler`` (needs the ``dask`` extra); write ``manifest.json`` beside the outputs (each
    entry lists its job, status and ``layers``: layer name -> file). The run holds the folder's lock
    (``folder_lock``) throughout; temporary files left by a killed run are removed under it.
    ``equivalent_crs`` (recorded in the manifest, for replay) accepts labels whose CRS PROJ calls equal.

    Resume: an output counts as complete only when its sidecar records this seed, pipeline and
    domainaug version and its input still has the recorded checksum; otherwise it is made again. A
    folder whose sidecars or manifest record another seed or pipeline belongs to another job: a
    ``ParameterError`` says so, unless ``overwrite`` replaces those outputs."""
    if not jobs:
        return []
    out_dir = Path(jobs[0].sidecar).parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".domainaug-write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ParameterError("out", str(out_dir), f"a writable folder ({exc.strerror})") from exc
    with folder_lock(out_dir):
        return _run_locked(jobs, pipeline, out_dir, seed, scheduler, workers, progress, bands, sensor,
                           equivalent_crs, overwrite)


LOCK = ".domainaug.lock"


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold the output folder's lock for a whole run (``filelock``), so two runs never share a folder
    (they would delete each other's temporaries and mix seeds); a second run gets a
    ``DomainaugError`` naming the folder and the run that holds it."""
    from filelock import FileLock, Timeout
    lock = FileLock(str(out_dir / LOCK))
    holder = out_dir / (LOCK + ".holder")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = holder.read_text(encoding="utf-8").strip()
        except OSError:
            who = "another run"
        raise DomainaugError(f"{out_dir}: another domainaug run writes into this folder ({who}); wait for it to "
                             "finish, or choose another --out") from None
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        holder.write_text(f"pid {os.getpid()} on {platform.node()}, since {since}", encoding="utf-8")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _run_locked(jobs: Sequence[Job], pipeline: Transform, out_dir: Path, seed: int, scheduler: str | None,
                workers: int | None, progress: Callable[[int, int, float], None] | None,
                bands: Bands,
                sensor: str | None, equivalent_crs: bool, overwrite: bool) -> list[dict[str, Any]]:
    folders = {out_dir} | {Path(p).parent for j in jobs for p in (j.out_image, j.out_label, *j.out_images) if p}
    for stale in sorted(f for d in folders for f in d.glob(".*.tmp*")):   # a killed run's: removed under the lock
        log.info("removing %s, a temporary file of an interrupted run", stale)
        stale.unlink()
    log.debug("%d jobs into %s (seed %d)", len(jobs), out_dir, seed)
    config = pipeline.to_dict()
    why = None if overwrite else _foreign(jobs, config, seed)
    if why is not None:
        raise ParameterError("out", str(out_dir), f"a folder of this job or a new one: {why} (pass --overwrite, "
                             "or overwrite=True, to replace those outputs)")
    bands = bands if bands is None or isinstance(bands, Mapping) else list(bands)
    if isinstance(bands, Mapping):
        bands = {str(k): list(v) for k, v in bands.items()}
    options: dict[str, Any] = {"pipeline": config, "seed": seed, "bands": bands, "sensor": sensor,
                               "equivalent_crs": equivalent_crs}
    results: list[dict[str, Any]] = []
    start = time.time()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        if progress:
            progress(len(results), len(jobs), time.time() - start)

    if scheduler is None:
        # in-process threads: kernels already compiled. Parallel numba kernels take a process-wide lock
        # (core.kernels.parallel_lock); torch ops release the GIL.
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for future in as_completed([pool.submit(run_job, job, **options) for job in jobs]):
                collect(future.result())
    else:
        distributed = require("distributed", "offline.run on a Dask cluster (scheduler=..., --scheduler)")
        client = distributed.Client(scheduler)
        try:
            for future in distributed.as_completed(client.map(run_job, list(jobs), **options, pure=False)):
                collect(future.result())
        finally:
            client.close()
    results.sort(key=lambda r: r["index"])
    manifest = {"domainaug": __version__, "seed": seed, "pipeline": config, "bands": bands, "sensor": sensor,
                "equivalent_crs": equivalent_crs,
                "outputs": [{"job": asdict(j), "status": r["status"],
                             **({"layers": r["layers"]} if "layers" in r else {}),
                             **({"error": r["error"]} if "error" in r else {})}
                            for j, r in zip(jobs, results)]}
    try:
        with atomic_path(out_dir / "manifest.json") as tmp:
            tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    except OSError as exc:               # (a full disk, a folder made read-only): the jobs' results still count
        raise ManifestError(f"{out_dir / 'manifest.json'}: could not be written ({exc.strerror or exc})",
                            results) from exc
    _dataset_json(jobs, results, out_dir)
    return results


def _dataset_json(jobs: Sequence[Job], results: list[dict[str, Any]], out_dir: Path) -> None:
    """For an nnU-Net-laid-out input with a ``dataset.json`` beside its ``imagesTr``: the same file in
    ``out_dir`` with ``numTraining`` the number of complete output cases, so nnU-Net reads the
    augmented set as a dataset of its own."""
    if not any(j.layout == "nnunet" for j in jobs):
        return
    source = Path(jobs[0].image).parent.parent / "dataset.json"
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.info("no readable %s: write a dataset.json into %s for nnU-Net", source, out_dir)
        return
    doc["numTraining"] = sum(r["status"] in ("done", "skipped") for r in results)
    try:
        with atomic_path(out_dir / "dataset.json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{out_dir / 'dataset.json'}: could not be written ({exc.strerror or exc})",
                            results) from exc


class ManifestError(DomainaugError):
    """The run finished but its manifest could not be written; ``results`` holds every job's result,
    so the caller can still report them."""

    def __init__(self, message: str, results: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.results = results


