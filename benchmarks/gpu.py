"""Device benchmark (issue 22, item 4): batches augmented on one device, against MONAI (per
element, tensors on the device) and Kornia (batched), with the device's floors measured in the
same run.

    python benchmarks/gpu.py [--device cuda|cpu] [--quick] [--only KEY ...] [--rounds N]
                             [--budget SECONDS] [--out FILE.md] [--json FILE.json]

Workloads (keys for ``--only``):

- ``3d-spatial``: 4 x 1x160x192x160 + label, Affine + Elastic (one resampling pass each).
- ``3d-intensity``: the same batch, Gamma + GaussianNoise + BiasField.
- ``2d-dihedral`` and ``2d-any``: 8 x 12x1024^2 + label, RotationPolicy("dihedral") / ("any").

Rows per workload: two floors (a copy of the batch, image and label; ``F.grid_sample`` with an
identity grid on the image batch, trilinear 3D / bilinear 2D), domainaug's ``BatchAugment``, the
per-element loop (the pipeline called on each element alone, ``generator_for(0, 0, index)``), then
the peers. A peer that does not import is listed as skipped; a row that fails prints its error and
the others still run; rows past the time budget (default 270 s) are skipped with a note. Every
clock stop comes after ``torch.cuda.synchronize``; peak memory is ``max_memory_allocated`` during a
call less what was allocated when it began (the resident inputs are not counted, the output is).

Runs with whatever python and torch are there (the peers are optional), but ``import domainaug``
needs its own dependencies (nibabel among them). On a lent GPU, write where the files come back:
``python benchmarks/gpu.py --out $OUT/gpu.md --json $OUT/gpu.json``; then copy ``gpu.md`` to
``benchmarks/results/gpu.md``. ``--device cpu`` gives the CPU-side numbers (batched path against
the per-element loop); ``--device cpu --quick`` (tiny sizes, 2 rounds) checks the code path in
seconds. benchmarks/suite.py's GPU section builds its rows with the workload functions here.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
# Targets of issue 22 on one H200 (they are for a GPU: a CPU run prints them as a check only).
TARGET_3D_RATE = 2000.0      # volumes/s for 3D affine + elastic + label
TARGET_3D_MONAI = 10.0       # x MONAI, same device
TARGET_2D_KORNIA = 5.0       # x Kornia, batches of 8


@dataclass(frozen=True)
class Sizes:
    """Batch and grid sizes of the workloads, and the peers to time."""

    batch3d: int = 4
    shape3d: tuple[int, int, int] = (160, 192, 160)
    batch2d: int = 8
    bands: int = 12
    shape2d: tuple[int, int] = (1024, 1024)
    peers: tuple[str, ...] = ("MONAI", "Kornia")


FULL = Sizes()
QUICK = Sizes(batch3d=2, shape3d=(24, 28, 24), batch2d=2, bands=12, shape2d=(64, 64))


@dataclass
class Row:
    """One timed (or untimed) line of a workload. ``kind``: ``floor``, ``ours``, ``loop``, ``peer``,
    ``partial`` (a peer doing less work, never in a ratio) or ``skipped``."""

    tool: str
    call: Callable[[], object] | None
    note: str = ""
    kind: str = "peer"
    version: str = ""
    error: str | None = None
    times: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    planned: int = 0


# ---------------------------------------------------------------------------------------------
# Helpers shared with benchmarks/suite.py's GPU section.
# ---------------------------------------------------------------------------------------------
def version(module: str) -> str:
    """``module.__version__``, or the import error in a few words."""
    try:
        return str(getattr(__import__(module), "__version__", "?"))
    except Exception as e:  # noqa: BLE001 - a peer may fail on import in any way
        return f"not importable ({type(e).__name__}: {e})"


def volume_batch(batch: int, shape: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth float32 volumes ``(B, 1, *shape)`` (trilinear upsampling of coarse noise, a different
    draw per element) and a uint8 map of 5 nested shells (labels 0..4), made on ``device``."""
    gen = torch.Generator().manual_seed(SEED)
    coarse = torch.rand((batch, 1) + tuple(max(2, s // 16) for s in shape), generator=gen)
    image = F.interpolate(coarse.to(device), size=tuple(shape), mode="trilinear", align_corners=True).contiguous()
    axes = torch.meshgrid(*[torch.linspace(-1.0, 1.0, s, device=device) for s in shape], indexing="ij")
    radius = torch.sqrt(sum(a * a for a in axes))
    label = torch.bucketize(radius, torch.tensor([0.3, 0.5, 0.7, 0.9], device=device)).to(torch.uint8)
    return image, label[None, None].expand(batch, 1, *shape).contiguous()


def raster_batch(batch: int, bands: int, shape: Sequence[int],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth float32 rasters ``(B, bands, H, W)`` (bilinear upsampling of 32x32 noise) and a uint8
    map of 7 classes in blocks, as benchmarks/bench_rs.py makes one, on ``device``."""
    gen = torch.Generator().manual_seed(SEED)
    coarse = torch.rand((batch, bands, 32, 32), generator=gen)
    image = F.interpolate(coarse.to(device), size=tuple(shape), mode="bilinear", align_corners=True).contiguous()
    yy = torch.arange(shape[0], device=device)[:, None] // max(1, shape[0] // 8)
    xx = torch.arange(shape[1], device=device)[None, :] // max(1, shape[1] // 10)
    label = ((yy + xx) % 7).to(torch.uint8)
    return image, label[None, None].expand(batch, 1, *shape).contiguous()


def floors(images: torch.Tensor, labels: torch.Tensor) -> list[Row]:
    """The device's floors for the batch: one copy of it (image and label) and one ``grid_sample``
    pass over the image batch with a precomputed identity grid (trilinear 3D, bilinear 2D)."""
    ndim = images.dim() - 2
    theta = torch.eye(ndim, ndim + 1, device=images.device)[None].expand(images.shape[0], -1, -1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    mode = "trilinear" if ndim == 3 else "bilinear"
    return [Row("floor: copy", lambda: (images.clone(), labels.clone()), "one copy of the batch, image + label",
                "floor", torch.__version__),
            Row("floor: grid_sample", lambda: F.grid_sample(images, grid, mode="bilinear", align_corners=True),
                f"{mode}, identity grid, image batch only", "floor", torch.__version__)]


def ours(pipeline: Any, images: torch.Tensor, labels: torch.Tensor) -> list[Row]:
    """domainaug's rows: ``BatchAugment`` on the batch, and the per-element loop (the pipeline on
    each element alone). Each call draws for fresh dataset indices, so no two calls repeat."""
    import domainaug as da
    from domainaug.training import BatchAugment, generator_for
    batch, size = BatchAugment(pipeline, seed=SEED), images.shape[0]
    samples = batch.samples(images, labels)
    counter = {"batched": 0, "loop": 0}

    def batched() -> object:
        counter["batched"] += 1
        return batch(images, labels, indices=[counter["batched"] * size + k for k in range(size)])

    def loop() -> object:
        counter["loop"] += 1
        return [pipeline(s, generator_for(SEED, 0, counter["loop"] * size + k)).layers for k, s in enumerate(samples)]

    check = agreement(batch, images, labels) if images.device.type != "cpu" else ""
    return [Row("domainaug", batched, "BatchAugment, image + label" + check, "ours", da.__version__),
            Row("domainaug per-element loop", loop, "pipeline(sample_b, generator_for(0, 0, index)), no stacking",
                "loop", da.__version__)]


def agreement(batch: Any, images: torch.Tensor, labels: torch.Tensor, reference: str = "cpu") -> str:
    """How the batch on its device agrees with the same batch (same draws) on ``reference``: the
    largest image difference as a fraction of the image's range, and the share of equal labels
    (float32 coordinates on the device: a label may flip at a tie). A note for the first run on a GPU,
    which is also the first check of the device path there."""
    try:
        indices = list(range(images.shape[0]))
        got = batch(images, labels, indices=indices)
        ref = batch(images.to(reference), labels.to(reference), indices=indices)
        span = float(ref["image"].max() - ref["image"].min()) or 1.0
        diff = float((got["image"].to(reference).double() - ref["image"].double()).abs().max()) / span
        same = float((got["label"].to(reference) == ref["label"]).double().mean())
        return f"; vs {reference}: image max |diff| {diff:.1e} of its range, labels {100 * same:.3f}% equal"
    except Exception as e:  # noqa: BLE001 - the timing still runs; the note says what failed
        return f"; vs {reference}: check failed ({type(e).__name__}: {e})"


def failed(tool: str, kind: str, error: BaseException) -> Row:
    """A row that could not be built: its error, in one line."""
    return Row(tool, None, "", kind, error=f"{type(error).__name__}: {error}".splitlines()[0][:300])


def peer(tool: str, module: str, build: Callable[[], list[Row]], sizes: Sizes) -> list[Row]:
    """The rows ``build`` makes for a peer, or a skipped row when ``module`` does not import or the
    peer is not in ``sizes.peers`` (an error row when building fails otherwise)."""
    if tool not in sizes.peers:
        return [Row(tool, None, "skipped: not asked for (--peers)", "skipped", "-")]
    try:
        __import__(module)
    except Exception as e:  # noqa: BLE001 - a peer may fail on import in any way
        return [Row(tool, None, f"skipped: {module} does not import ({type(e).__name__}: {e})".splitlines()[0][:300],
                    "skipped", "-")]
    try:
        rows = build()
    except Exception as e:  # noqa: BLE001
        return [failed(tool, "peer", e)]
    for r in rows:
        r.version = r.version or version(module)
    return rows


def monai_per_element(transforms: Sequence[Any], images: torch.Tensor, labels: torch.Tensor,
                      keys: Sequence[str] = ("image", "label")) -> Callable[[], object]:
    """MONAI's dictionary transforms on each element in turn (its way of taking a batch), tensors on
    the device, random state seeded once (not ``set_determinism``: that changes global flags)."""
    from monai.transforms import Compose
    pipeline = Compose(list(transforms))
    pipeline.set_random_state(seed=SEED)

    def call() -> object:
        return [pipeline({k: t[b] for k, t in zip(keys, (images, labels))}) for b in range(images.shape[0])]
    return call


# ---------------------------------------------------------------------------------------------
# Workloads: each returns its rows (floors first, then domainaug, then the peers).
# ---------------------------------------------------------------------------------------------
def w_spatial_3d(device: torch.device, sizes: Sizes) -> list[Row]:
    images, labels = volume_batch(sizes.batch3d, sizes.shape3d, device)
    rows = floors(images, labels)
    try:
        import domainaug as da
        pipeline = da.Compose([da.Affine(degrees=(-10, 10), scales=(0.9, 1.1)),
                               da.Elastic(spacing=32.0, max_displacement=(3.0, 6.0))])
        rows += ours(pipeline, images, labels)
    except Exception as e:  # noqa: BLE001
        rows.append(failed("domainaug", "ours", e))

    def monai_rows() -> list[Row]:
        import math

        from monai.transforms import Rand3DElasticd
        t = Rand3DElasticd(["image", "label"], sigma_range=(5, 8), magnitude_range=(100, 200), prob=1.0,
                           mode=("bilinear", "nearest"), padding_mode="zeros", rotate_range=[math.radians(10)] * 3,
                           scale_range=[0.1] * 3, device=device)
        return [Row("MONAI", monai_per_element([t], images, labels),
                    "Rand3DElasticd + rotate + scale (one resampling), per element, on the device")]

    def kornia_rows() -> list[Row]:
        import kornia.augmentation as K
        scale = ((0.9, 1.1),) * 3
        image_aug = K.RandomAffine3D(degrees=10.0, scale=scale, p=1.0)
        label_aug = K.RandomAffine3D(degrees=10.0, scale=scale, p=1.0, resample="nearest")
        masks = labels.float()

        def call() -> object:
            out = image_aug(images)
            return out, label_aug(masks, params=image_aug._params)     # the same draws, nearest
        return [Row("Kornia (affine only)", call, "RandomAffine3D batched, image + label: less work (Kornia has "
                    "no 3D elastic and no 3D masks in AugmentationSequential); not in the ratios", "partial")]

    return rows + peer("MONAI", "monai", monai_rows, sizes) + peer("Kornia", "kornia", kornia_rows, sizes)


def w_intensity_3d(device: torch.device, sizes: Sizes) -> list[Row]:
    images, labels = volume_batch(sizes.batch3d, sizes.shape3d, device)
    rows = floors(images, labels)
    try:
        import domainaug as da
        from domainaug import medical as md
        pipeline = da.Compose([da.Gamma((0.7, 1.5)), da.GaussianNoise((0.0, 0.1)),
                               md.BiasField((-0.3, 0.3), order=3)])
        rows += ours(pipeline, images, labels)
    except Exception as e:  # noqa: BLE001
        rows.append(failed("domainaug", "ours", e))

    def monai_rows() -> list[Row]:
        from monai.transforms import RandAdjustContrastd, RandBiasFieldd, RandGaussianNoised
        t = [RandAdjustContrastd(["image"], gamma=(0.7, 1.5), prob=1.0),
             RandGaussianNoised(["image"], std=0.1, prob=1.0),
             RandBiasFieldd(["image"], degree=3, coeff_range=(0.0, 0.3), prob=1.0)]
        return [Row("MONAI", monai_per_element(t, images, labels),
                    "RandAdjustContrastd + RandGaussianNoised + RandBiasFieldd, per element, on the device")]

    def kornia_rows() -> list[Row]:
        return [Row("Kornia", None, "no bias field, and its gamma and noise take 2D images", "skipped")]

    return rows + peer("MONAI", "monai", monai_rows, sizes) + peer("Kornia", "kornia", kornia_rows, sizes)


def w_raster(kind: str) -> Callable[[torch.device, Sizes], list[Row]]:
    """``"dihedral"`` or ``"any"``: RotationPolicy on a batch of rasters + label."""
    def build(device: torch.device, sizes: Sizes) -> list[Row]:
        images, labels = raster_batch(sizes.batch2d, sizes.bands, sizes.shape2d, device)
        rows = floors(images, labels)
        try:
            from domainaug import remote_sensing as rs
            rows += ours(rs.RotationPolicy(kind), images, labels)
            if kind == "any":
                rows[-2].note += " (+ validity: the corners are marked invalid)"
        except Exception as e:  # noqa: BLE001
            rows.append(failed("domainaug", "ours", e))

        def monai_rows() -> list[Row]:
            import math

            from monai.transforms import RandFlipd, RandRotate90d, RandRotated
            keys = ["image", "label"]
            t = [RandFlipd(keys, prob=0.5, spatial_axis=1), RandRotate90d(keys, prob=1.0)] if kind == "dihedral" \
                else [RandRotated(keys, range_x=math.pi, prob=1.0, mode=("bilinear", "nearest"), padding_mode="zeros")]
            return [Row("MONAI", monai_per_element(t, images, labels), "per element, on the device")]

        def kornia_rows() -> list[Row]:
            import kornia.augmentation as K
            aug = [K.RandomHorizontalFlip(p=0.5), K.RandomRotation90(times=(0, 3), p=1.0)] if kind == "dihedral" \
                else [K.RandomRotation(degrees=180.0, p=1.0)]
            seq = K.AugmentationSequential(*aug, data_keys=["input", "mask"])
            masks = labels.float()
            return [Row("Kornia", lambda: seq(images, masks),
                        "AugmentationSequential batched" + ("; its rot90 is a bilinear warp" if kind == "dihedral"
                                                            else ""))]

        return rows + peer("MONAI", "monai", monai_rows, sizes) + peer("Kornia", "kornia", kornia_rows, sizes)
    return build


@dataclass(frozen=True)
class Workload:
    """A workload: its title, its rows, the floor its ratio uses, and its target (if the issue set one)."""

    title: Callable[[Sizes], str]
    build: Callable[[torch.device, Sizes], list[Row]]
    batch: Callable[[Sizes], int]
    floor: str
    target: str   # "3d", "2d" or "" (none)


WORKLOADS: dict[str, Workload] = {
    "3d-spatial": Workload(lambda s: f"3D affine + elastic + label, {s.batch3d} x 1x{'x'.join(map(str, s.shape3d))}",
                           w_spatial_3d, lambda s: s.batch3d, "floor: grid_sample", "3d"),
    "3d-intensity": Workload(lambda s: f"3D gamma + noise + bias field, {s.batch3d} x 1x"
                             f"{'x'.join(map(str, s.shape3d))}", w_intensity_3d, lambda s: s.batch3d,
                             "floor: copy", ""),
    "2d-dihedral": Workload(lambda s: f"2D dihedral + label, {s.batch2d} x {s.bands}x{'x'.join(map(str, s.shape2d))}",
                            w_raster("dihedral"), lambda s: s.batch2d, "floor: copy", "2d"),
    "2d-any": Workload(lambda s: f"2D any-angle rotation + label, {s.batch2d} x {s.bands}x"
                       f"{'x'.join(map(str, s.shape2d))}", w_raster("any"), lambda s: s.batch2d,
                       "floor: grid_sample", "2d"),
}


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def measure(call: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """Seconds of one call, to its end on the device, and its peak device memory in MiB over what
    was allocated when it began (``None`` off CUDA)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    out = call()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20 if cuda else None
    del out
    return seconds, peak


def time_rows(rows: list[Row], device: torch.device, rounds: int, warmup: int, allowance: float,
              deadline: float) -> None:
    """Warm-up calls, then up to ``rounds`` interleaved timed rounds. Each row gets as many rounds
    as its share of ``allowance`` seconds holds (at least one); none start after ``deadline``
    once a row has one."""
    active = [r for r in rows if r.call is not None]
    for r in active:
        try:
            for _ in range(warmup):
                seconds, peak = measure(r.call, device)
                r.peak_mb = peak if r.peak_mb is None or peak is None else max(r.peak_mb, peak)
            r.planned = max(1, min(rounds, int(allowance / max(1, len(active)) / max(seconds, 1e-6))))
        except Exception as e:  # noqa: BLE001
            r.error, r.call = f"{type(e).__name__}: {e}".splitlines()[0][:300], None
            traceback.print_exc()
    for _ in range(rounds):
        for r in active:
            if r.call is None or len(r.times) >= r.planned or (r.times and time.perf_counter() > deadline):
                continue
            try:
                seconds, peak = measure(r.call, device)
            except Exception as e:  # noqa: BLE001
                r.error, r.call = f"{type(e).__name__}: {e}".splitlines()[0][:300], None
                traceback.print_exc()
                continue
            r.times.append(seconds)
            if peak is not None:
                r.peak_mb = max(r.peak_mb or 0.0, peak)


def stats(key: str, title: str, batch: int, r: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "workload": title, "tool": r.tool, "kind": r.kind, "version": r.version,
                           "note": r.note, "batch": batch}
    if r.error is not None:
        out["error"] = r.error
    if r.times:
        median, best = statistics.median(r.times), min(r.times)
        out.update(median_ms=1e3 * median, min_ms=1e3 * best, per_element_ms=1e3 * median / batch,
                   elements_per_s=batch / median, rounds=len(r.times), peak_mb=r.peak_mb)
    return out


def run(keys: Sequence[str], device: torch.device, sizes: Sizes, rounds: int, warmup: int,
        budget: float) -> list[dict[str, Any]]:
    """Every workload of ``keys`` in turn; the rows as dicts. Workloads that would start after
    ``budget`` seconds are skipped with a note."""
    start = time.perf_counter()
    deadline = start + budget
    out: list[dict[str, Any]] = []
    for i, key in enumerate(keys):
        wl = WORKLOADS[key]
        title, batch = wl.title(sizes), wl.batch(sizes)
        now = time.perf_counter()
        if now > deadline:
            out.append({"key": key, "workload": title, "tool": "domainaug", "kind": "ours", "batch": batch,
                        "version": "", "note": "", "error": f"skipped: over the time budget of {budget:.0f} s"})
            continue
        print(f"... {title} ({now - start:.0f} s so far)", flush=True)
        try:
            rows = wl.build(device, sizes)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory making the batch
            traceback.print_exc()
            rows = [failed("domainaug", "ours", e)]
        try:
            time_rows(rows, device, rounds, warmup, (deadline - now) / (len(keys) - i), deadline)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            rows = [failed("domainaug", "ours", e)]
        out += [stats(key, title, batch, r) for r in rows]
        del rows
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def environment(device: torch.device) -> dict[str, str]:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
           "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores seen, "
                  f"{torch.get_num_threads()} torch threads"}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["device"] = f"{device} ({props.name}, {props.total_memory / 2 ** 30:.0f} GiB, " \
                        f"{props.multi_processor_count} SMs)"
        env["cuda"] = f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    for module in ("domainaug", "monai", "kornia", "numba"):
        env[module] = version(module)
    return env


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _ratio(num: float | None, den: float | None) -> str:
    return "—" if num is None or den is None else f"{num / den:.2f}x"


def verdict(target: str, ours_row: dict[str, Any], peers: dict[str, dict[str, Any]], cpu: bool) -> str:
    """The issue's target for a workload, met or NOT met, with the numbers it reads."""
    if "median_ms" not in ours_row:
        return "—"
    suffix = " (a CPU run: the target is for one H200)" if cpu else ""
    if target == "3d":
        rate = ours_row["elements_per_s"]
        parts = [f">= {TARGET_3D_RATE:.0f} volumes/s: {'met' if rate >= TARGET_3D_RATE else 'NOT met'} ({rate:.0f})"]
        monai = peers.get("MONAI", {}).get("median_ms")
        if monai is None:
            parts.append(f">= {TARGET_3D_MONAI:.0f}x MONAI: n/a (MONAI not timed)")
        else:
            speedup = monai / ours_row["median_ms"]
            parts.append(f">= {TARGET_3D_MONAI:.0f}x MONAI: {'met' if speedup >= TARGET_3D_MONAI else 'NOT met'} "
                         f"({speedup:.1f}x)")
        return "; ".join(parts) + suffix
    if target == "2d":
        kornia = peers.get("Kornia", {}).get("median_ms")
        if kornia is None:
            return f">= {TARGET_2D_KORNIA:.0f}x Kornia: n/a (Kornia not timed)" + suffix
        speedup = kornia / ours_row["median_ms"]
        return (f">= {TARGET_2D_KORNIA:.0f}x Kornia: {'met' if speedup >= TARGET_2D_KORNIA else 'NOT met'} "
                f"({speedup:.1f}x)" + suffix)
    return "none in the issue"


def render(rows: list[dict[str, Any]], env: dict[str, str], command: str, rounds: int, warmup: int,
           budget: float) -> str:
    cpu = not env["device"].startswith("cuda")
    lines = [f"# Device benchmark ({time.strftime('%Y-%m-%d %H:%M')})", "",
             "Reproduce: `" + command + "`.", "",
             "Environment: " + "; ".join(f"{k} {v}" for k, v in env.items()) + ".", "",
             f"Method: per workload {warmup} warm-up call(s) per row, then up to {rounds} interleaved timed rounds "
             f"(fewer where a row's share of the {budget:.0f} s budget holds fewer); times per batch, median "
             "(min); " + ("no CUDA: these are CPU-side numbers (the batched path against the per-element loop), "
                          "not a device measurement; " if cpu else
                          "`torch.cuda.synchronize` before each clock start and stop; ") +
             "peak MB is the device memory a call allocates beyond what was allocated when it began "
             "(the output counts, the resident inputs do not; n/a on the CPU). `x MONAI` and `x Kornia` are the "
             "peer's time over domainaug's (> 1: domainaug is faster); `x floor` is domainaug's time over the "
             "workload's floor (grid_sample for any-angle warps, the copy for permutations and intensity).", "",
             "## Summary", "",
             "| workload | domainaug ms/batch (min) | ms/element | elements/s | per-element loop ms/batch | "
             "MONAI ms/batch | x MONAI | Kornia ms/batch | x Kornia | copy floor ms | grid_sample floor ms | "
             "x floor | peak MB | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    keys = list(dict.fromkeys(r["key"] for r in rows))
    for key in keys:
        group = [r for r in rows if r["key"] == key]
        by_tool = {r["tool"]: r for r in group}
        ours_row = next((r for r in group if r["kind"] == "ours"), {})
        title = group[0]["workload"]
        if "median_ms" not in ours_row:
            error = ours_row.get("error") or "not timed"
            lines.append(f"| {title} | {error} |" + " — |" * 12)
            continue
        med = ours_row["median_ms"]
        peers = {t: r for t, r in by_tool.items() if r["kind"] == "peer"}
        loop = next((r for r in group if r["kind"] == "loop"), {})
        floor = by_tool.get(WORKLOADS[key].floor, {}).get("median_ms")
        monai, kornia = (peers.get(t, {}).get("median_ms") for t in ("MONAI", "Kornia"))
        peak = ours_row.get("peak_mb")
        lines.append(
            f"| {title} | {_ms(med)} ({_ms(ours_row['min_ms'])}) | {_ms(ours_row['per_element_ms'])} | "
            f"{ours_row['elements_per_s']:.1f} | {_ms(loop.get('median_ms'))} | {_ms(monai)} | {_ratio(monai, med)} | "
            f"{_ms(kornia)} | {_ratio(kornia, med)} | {_ms(by_tool.get('floor: copy', {}).get('median_ms'))} | "
            f"{_ms(by_tool.get('floor: grid_sample', {}).get('median_ms'))} | {_ratio(med, floor)} | "
            f"{'n/a' if peak is None else f'{peak:.0f}'} | {verdict(WORKLOADS[key].target, ours_row, peers, cpu)} |")
    lines += ["", "## All rows", "",
              "| workload | tool | version | median ms/batch | min ms/batch | ms/element | elements/s | rounds | "
              "peak MB | x domainaug | note |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key in keys:
        group = [r for r in rows if r["key"] == key]
        ours_ms = next((r.get("median_ms") for r in group if r["kind"] == "ours"), None)
        for r in group:
            if "median_ms" not in r:
                note = r.get("error") or r["note"]
                if not note.startswith("skipped"):
                    note = ("error: " if r.get("error") else "cannot: ") + note
                lines.append(f"| {r['workload']} | {r['tool']} | {r['version']} | — | — | — | — | 0 | — | — | "
                             f"{note} |")
                continue
            peak = "n/a" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
            lines.append(f"| {r['workload']} | {r['tool']} | {r['version']} | {_ms(r['median_ms'])} | "
                         f"{_ms(r['min_ms'])} | {_ms(r['per_element_ms'])} | {r['elements_per_s']:.1f} | "
                         f"{r['rounds']} | {peak} | {_ratio(r['median_ms'], ours_ms)} | {r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 warm-up, 2 rounds: a check of the code")
    parser.add_argument("--only", nargs="*", default=None, choices=list(WORKLOADS), help="workload keys")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 10; 2 with --quick)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per row (default 2; 1 with --quick)")
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for the whole run (default 270)")
    parser.add_argument("--peers", nargs="*", default=["MONAI", "Kornia"], choices=["MONAI", "Kornia"],
                        help="peers to time (default both; none: domainaug and the floors alone)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown file (default results/gpu.md on CUDA, results/gpu_cpu_check.md on the CPU)")
    parser.add_argument("--json", type=Path, default=None, help="JSON file (default: --out with .json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (use --device cpu)")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = dataclasses.replace(QUICK if args.quick else FULL, peers=tuple(args.peers))
    rounds = args.rounds or (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if rounds < 1 or warmup < 1:
        parser.error("--rounds and --warmup must be >= 1 (the first call plans the rounds)")
    out = args.out or RESULTS / ("gpu.md" if device.type == "cuda" else "gpu_cpu_check.md")
    env = environment(device)
    for k, v in env.items():
        print(f"{k}: {v}")
    rows = run(args.only or list(WORKLOADS), device, sizes, rounds, warmup, args.budget)
    command = "python benchmarks/gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(rows, env, command.strip(), rounds, warmup, args.budget)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    (args.json or out.with_suffix(".json")).write_text(
        json.dumps({"environment": env, "sizes": dataclasses.asdict(sizes), "rounds": rounds, "warmup": warmup,
                    "budget_s": args.budget, "rows": rows}, indent=1), encoding="utf-8")
    errors = [r for r in rows if r.get("error") and not r["error"].startswith("skipped")]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
