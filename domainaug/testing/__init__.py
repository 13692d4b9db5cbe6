"""Reusable contract checks, run over every registered transform.

Each transform class declares its own :class:`Case` (how to build a random instance, an identity
instance and some bad constructor calls) in a classmethod ``contract_case`` in its own class body,
importing ``Case`` from here inside the method, so the library never imports this package at import
time. ``tests/test_contract.py`` fails for any library transform without one. The checks assert
properties, never seeded snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..core.boxes import Boxes
from ..core.record import ParamRecord
from ..core.sample import Layer, Role, Sample
from ..core.transform import SpatialTransform, Transform, replay
from ..errors import ParameterError

__all__ = ["Case", "library_transforms", "declared_cases", "missing_case", "make_volume", "make_raster",
           "check_same_seed", "check_replay_json",
           "check_identity", "check_no_new_labels", "check_points_follow", "check_boxes_follow", "check_dtypes",
           "check_bad_arguments",
           "check_valid_values", "with_image_dtype",
           "assert_samples_equal", "assert_boxes_equal", "check_batched", "check_batched_samples", "batch_variants"]


@dataclass
class Case:
    """How the contract suite exercises one transform class."""

    random: Callable[[Sample], Transform]                  # a strongly random instance for this sample
    identity: Callable[[Sample], Transform] | None         # parameters that must change nothing
    bad: list[tuple[str, Callable[[], Transform]]] = field(default_factory=list)  # (argument name, call)
    moves_points: bool = True                               # spatial: points must follow the content
    kinds: tuple[str, ...] = ("volume", "oblique-int16", "raster-nodata")   # the test samples it applies to


def library_transforms() -> dict[str, type[Transform]]:
    """The registered transforms that ``domainaug`` itself defines, by name (test modules register
    helper transforms too; those are not held to the contract)."""
    return {n: c for n, c in sorted(Transform.registry.items()) if c.__module__.split(".")[0] == "domainaug"}


def declared_cases(transforms: dict[str, type[Transform]]) -> dict[str, Case]:
    """The case each of ``transforms`` declares in its own class body, by name; a class that declares
    none is left out (see :func:`missing_case`), since a case is not inherited from a base class.

    Raises:
        TypeError: A ``contract_case`` that does not return a :class:`Case`.
    """
    out = {}
    for name, cls in transforms.items():
        if "contract_case" in vars(cls):
            case = cls.contract_case()           # type: ignore[attr-defined]
            if not isinstance(case, Case):
                raise TypeError(f"{name}.contract_case() returned {type(case).__name__}, not domainaug.testing.Case")
            out[name] = case
    return out


def missing_case(cls: type[Transform]) -> str:
    """What to add when ``cls`` declares no contract case (the contract test's failure message)."""
    return (f"{cls.__name__} ({cls.__module__}) declares no contract case: add a classmethod "
            f"`contract_case(cls) -> Case` to the class body of {cls.__name__}, returning "
            f"domainaug.testing.Case(random=..., identity=..., bad=[...]); a base class's case is not "
            f"inherited (see CONTRIBUTING.md)")


# --- samples ---------------------------------------------------------------------------------
def make_volume(shape: tuple[int, ...] = (14, 16, 12), spacing: Sequence[float] = (1.0, 1.5, 2.0),
                labels: Sequence[int] = (0, 3, 7), direction: np.ndarray | None = None,
                with_valid: bool = False, dtype: npt.DTypeLike = np.float32, seed: int = 0,
                label_mode: str | None = None) -> Sample:
    """A small anisotropic volume: smooth image, blob labels, a point at a labelled voxel."""
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float64)
    image = np.sin(idx @ rng.uniform(0.2, 0.6, len(shape))) * 100 + 200 + rng.normal(0, 5, shape)
    label = np.zeros(shape, dtype=np.uint8)
    center = np.array(shape) / 2
    label[np.linalg.norm(idx - center + 2, axis=-1) < min(shape) / 4] = labels[1]
    label[np.linalg.norm(idx - center - 2, axis=-1) < min(shape) / 5] = labels[2]
    affine = np.eye(len(shape) + 1)
    d = np.eye(len(shape)) if direction is None else direction
    affine[:-1, :-1] = d @ np.diag(spacing)
    affine[:-1, -1] = rng.uniform(-50, 50, len(shape))
    valid = None
    if with_valid:
        valid = np.ones(shape, dtype=bool)
        valid[(slice(0, 2),)] = False
    image = image.astype(dtype) if np.dtype(dtype).kind == "f" else np.clip(np.round(image), 0, 255).astype(dtype)
    point = affine[:-1, :-1] @ (center - 2) + affine[:-1, -1]
    inner = np.argwhere(label == labels[1])                     # a box around the first blob (voxel edges)
    corners = np.stack(np.meshgrid(*[[lo - 0.5, hi + 0.5] for lo, hi in zip(inner.min(0), inner.max(0))],
                                   indexing="ij"), -1).reshape(-1, len(shape))
    world = corners @ affine[:-1, :-1].T + affine[:-1, -1]
    boxes = {"b": Boxes(np.concatenate([world.min(0), world.max(0)])[None], labels=[labels[1]])}
    sample = Sample.from_numpy(image, label=label, valid=valid, affine=affine, fill=0.0, points={"p": point[None]},
                               boxes=boxes)
    if label_mode is not None:
        sample = sample.with_layers(label=replace(sample.layer_info("label"), interpolation=label_mode))
    return sample


def make_raster(shape: tuple[int, int] = (24, 20), bands: int = 4, spacing: float = 10.0, nodata_border: int = 3,
                seed: int = 0) -> Sample:
    """A small multispectral raster with a nodata border, a CRS and a class map."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([1000 + 300 * np.sin(0.3 * yy + b) * np.cos(0.2 * xx - b) + rng.normal(0, 10, shape)
                      for b in range(bands)]).astype(np.float32)
    label = ((yy // 6 + xx // 5) % 3 + 1).astype(np.uint8)
    valid = np.zeros(shape, dtype=bool)
    valid[nodata_border:, :w - nodata_border] = True
    affine = np.array([[0.0, spacing, 500000.0], [-spacing, 0.0, 4200000.0], [0, 0, 1]])
    centre = np.array([h / 2, w / 2])
    point = affine[:2, :2] @ centre + affine[:2, 2]
    axis = np.concatenate([point - 3 * spacing, point + [2 * spacing, 4 * spacing]])[None]  # (x0, y0, x1, y1)
    boxes = {"b": Boxes(axis, labels=[2]), "o": Boxes([[*point, 6 * spacing, 3 * spacing, 30.0]], labels=[1],
                                                        kind="oriented")}
    sample = Sample.from_numpy(image, label=label, valid=valid, affine=affine, crs="EPSG:32633", fill=-9999.0,
                               channels=[f"B{i + 1}" for i in range(bands)], points={"p": point[None]}, boxes=boxes)
    sample.meta["sensor"] = "landsat7"                          # B1..B4: blue, green, red, nir
    return sample


# --- checks ----------------------------------------------------------------------------------
def assert_samples_equal(a: Sample, b: Sample, atol: float = 0.0) -> None:
    assert a.space.same_grid(b.space, tolerance=1e-9), (a.space.describe(), b.space.describe())
    assert a.layer_names() == b.layer_names()
    for name in a.layer_names():
        x, y = a[name], b[name]
        assert x.dtype == y.dtype, (name, x.dtype, y.dtype)
        if atol == 0 or not x.dtype.is_floating_point:
            assert torch.equal(x, y), f"layer {name!r} differs"
        else:
            torch.testing.assert_close(x, y, atol=atol, rtol=0)
    for name in a.points:
        torch.testing.assert_close(a.points[name], b.points[name], atol=1e-9, rtol=0)
    assert_boxes_equal(a, b, atol=1e-9)


def assert_boxes_equal(a: Sample, b: Sample, atol: float = 1e-9) -> None:
    """The same box sets, labels and visibility; coordinates within ``atol`` world units."""
    assert sorted(a.boxes) == sorted(b.boxes), (sorted(a.boxes), sorted(b.boxes))
    for name, x in a.boxes.items():
        y = b.boxes[name]
        assert x.kind == y.kind and torch.equal(x.labels, y.labels), (name, x.labels, y.labels)
        torch.testing.assert_close(x.data, y.data, atol=atol, rtol=0)
        torch.testing.assert_close(x.visibility, y.visibility, atol=1e-9, rtol=0)


def check_same_seed(t: Transform, sample: Sample) -> Sample:
    a = t(sample, torch.Generator().manual_seed(7))
    b = t(sample, torch.Generator().manual_seed(7))
    assert_samples_equal(a, b)
    assert json.dumps([r.to_dict() for r in a.history]) == json.dumps([r.to_dict() for r in b.history])
    return a


def check_replay_json(t: Transform, sample: Sample) -> None:
    out = t(sample, torch.Generator().manual_seed(11))
    logged = json.dumps([r.to_dict() for r in out.history])      # what a training run would log
    records = [ParamRecord.from_dict(d) for d in json.loads(logged)]
    again = replay(sample, records)
    assert_samples_equal(out, again)
    # apply is pure: global RNG state does not matter
    torch.manual_seed(123), np.random.seed(5)
    again2 = replay(sample, json.loads(logged))
    assert_samples_equal(out, again2)


def check_identity(t: Transform, sample: Sample) -> None:
    out = t(sample, torch.Generator().manual_seed(3))
    assert out.space.same_grid(sample.space, tolerance=1e-9)
    for name in sample.layer_names():
        x, y = sample[name], out[name]
        assert x.dtype == y.dtype
        if x.dtype.is_floating_point:
            scale = float(x.abs().max()) or 1.0
            torch.testing.assert_close(y, x, atol=1e-5 * scale, rtol=0)
        else:
            assert torch.equal(x, y), f"identity changed layer {name!r}"
    for name in sample.points:
        torch.testing.assert_close(out.points[name], sample.points[name], atol=1e-6, rtol=0)
    assert_boxes_equal(out, sample, atol=1e-6)


def check_no_new_labels(t: Transform, sample: Sample) -> None:
    for seed in range(3):
        out = t(sample, torch.Generator().manual_seed(seed))
        for name in sample.layer_names(Role.LABEL):
            before = set(sample[name].unique().tolist()) | {int(sample.layer_info(name).fill)}
            assert set(out[name].unique().tolist()) <= before


def check_dtypes(t: Transform, sample: Sample) -> None:
    out = t(sample, torch.Generator().manual_seed(5))
    for name in sample.layer_names():
        assert out[name].dtype == sample[name].dtype, (name, out[name].dtype, sample[name].dtype)


def with_image_dtype(sample: Sample, dtype: torch.dtype) -> Sample:
    """``sample`` with its ``"image"`` layer cast to another float dtype (values kept as they round)."""
    info = sample.layer_info("image")
    return sample.with_layers(image=replace(info, data=sample["image"].to(dtype)))


def check_valid_values(t: Transform, sample: Sample, seeds: int = 3) -> None:
    """Float input gives the same float dtype out, and no NaN/Inf in any valid voxel of an INTENSITY
    layer (a NaN fill, an overflow to Inf in float16, or a 0/0 in a statistic would show here)."""
    for seed in range(seeds):
        out = t(sample, torch.Generator().manual_seed(seed))
        valid = out[out.valid_name][0] if out.valid_name else None
        for name in out.layer_names(Role.INTENSITY):
            x = out[name]
            if name in sample.layer_names():
                assert x.dtype == sample[name].dtype, (type(t).__name__, name, x.dtype, sample[name].dtype)
            finite = torch.isfinite(x).all(0)
            bad = ~finite if valid is None else ~finite & valid
            assert not bool(bad.any()), (type(t).__name__, name, f"{int(bad.sum())} NaN/Inf valid voxels, seed {seed}")


def check_points_follow(t: Transform, sample: Sample, tolerance_voxels: float = 1.0) -> None:
    """A tiny labelled blob and a point at its centre: after the transform, the point is within
    ``tolerance_voxels`` of the blob's centroid (world units scaled by the largest voxel size)."""
    if not isinstance(t, SpatialTransform):
        return
    n = sample.space.ndim
    shape = sample.space.shape
    centre = np.array(shape) // 2
    label = torch.zeros((1,) + shape, dtype=torch.uint8)
    label[(0,) + tuple(slice(c - 1, c + 2) for c in centre)] = 1
    probe = Sample(sample.space, {"label": Layer(label, Role.LABEL, 0, interpolation="nearest")},
                   points={"p": torch.from_numpy(sample.space.index_to_world(centre)[None])})
    out = t(probe, torch.Generator().manual_seed(2))
    where = torch.nonzero(out["label"][0] == 1).double().numpy()
    assert len(where), "the probe blob left the field of view"
    centroid = out.space.index_to_world(where.mean(0))
    err = np.linalg.norm(centroid - out.points["p"][0].numpy())
    assert err <= tolerance_voxels * float(out.space.spacing.max()) * np.sqrt(n), err


def check_boxes_follow(t: Transform, sample: Sample, tolerance_voxels: float = 1.0) -> None:
    """A labelled block with an axis-aligned box (and in 2D an oriented one) on its outer voxel edges:
    after a spatial transform the axis box is the enclosing box of the moved block within
    ``tolerance_voxels`` (largest voxel size) per coordinate, and the oriented box encloses it tightly
    (its extent along the box's own axes, within the same tolerance). Other transforms keep boxes as
    they are."""
    if not isinstance(t, SpatialTransform):
        from ..core.transform import trace
        out = t(sample, torch.Generator().manual_seed(2))
        pending = trace(sample.space, out.history[len(sample.history):])
        if not pending.stages and pending.space == sample.space:      # no spatial map: boxes as they were
            assert_boxes_equal(out, sample, atol=1e-6)
        return
    space = sample.space
    n, shape = space.ndim, np.array(space.shape)
    lo, hi = shape // 2 - np.maximum(1, shape // 6), shape // 2 + np.maximum(1, shape // 5)
    label = torch.zeros((1,) + space.shape, dtype=torch.uint8)
    label[(0,) + tuple(slice(a, b + 1) for a, b in zip(lo, hi))] = 1
    boxes = {"axis": Boxes.from_pixels(np.concatenate([lo, hi + 1])[None], space, labels=[1])}
    if n == 2:
        corners = np.array([[lo[0], lo[1]], [lo[0], hi[1] + 1], [hi[0] + 1, hi[1] + 1], [hi[0] + 1, lo[1]]], float)
        boxes["oriented"] = Boxes.from_pixels(corners[None], space, labels=[2])
    probe = Sample(space, {"label": Layer(label, Role.LABEL, 0, interpolation="nearest")}, boxes=boxes)
    out = t(probe, torch.Generator().manual_seed(2))
    where = torch.nonzero(out["label"][0] == 1).double().numpy()
    assert len(where), "the probe block left the field of view"
    tol = tolerance_voxels * float(out.space.spacing.max())
    edges = np.stack(np.meshgrid(*[[-0.5, 0.5]] * n, indexing="ij"), -1).reshape(-1, n)
    world = out.space.index_to_world((where[:, None] + edges[None]).reshape(-1, n))    # voxel corners
    got = out.boxes["axis"].data[0].numpy()
    want = np.concatenate([world.min(0), world.max(0)])
    assert np.abs(got - want).max() <= tol, (type(t).__name__, got.tolist(), want.tolist())
    if n == 2:
        cx, cy, w, h, angle = out.boxes["oriented"].data[0].numpy()
        a = np.radians(angle)
        centres = out.space.index_to_world(where)
        p = (centres[:, 0] - cx) * np.cos(a) + (centres[:, 1] - cy) * np.sin(a)
        q = -(centres[:, 0] - cx) * np.sin(a) + (centres[:, 1] - cy) * np.cos(a)
        for extent, size in ((p, w), (q, h)):       # encloses the voxel centres, and no more than a voxel wider
            assert extent.min() >= -size / 2 - tol and extent.max() <= size / 2 + tol, (type(t).__name__, size)
            assert size <= np.ptp(extent) + 2 * tol, (type(t).__name__, size, float(np.ptp(extent)))


def check_inverse(t: Transform, sample: Sample, tolerance: float = 0.05) -> None:
    """The inverse of the transform's spatial record, composed with it, is the identity within
    interpolation error: a smooth field of world position (values in [-3, 3]) is pushed through
    the recorded map and pulled back with ``Invert.with_coverage``, then compared on input
    voxels that stayed in view (eroded by two voxels)."""
    from scipy import ndimage

    from ..core.kernels.resample import resample_layers
    from ..core.kernels.spec import LayerSpec
    from ..core.transform import trace
    from ..invert import Invert
    out = t(sample, torch.Generator().manual_seed(4))
    records = out.history[len(sample.history):]
    pending = trace(sample.space, records)
    assert pending.space.same_grid(out.space, tolerance=1e-6), "trace() does not end on the output grid"
    world = sample.space.index_to_world(np.indices(sample.space.shape).reshape(sample.space.ndim, -1).T)
    extent = np.ptp(world, axis=0) + 1.0
    smooth = np.sin(2 * np.pi * world / (2.0 * extent)).sum(1).reshape(sample.space.shape)
    image = torch.from_numpy(smooth[None].astype(np.float32))
    ones = torch.ones((1,) + sample.space.shape, dtype=torch.bool)
    fwd, fwd_valid = resample_layers([LayerSpec(image, "intensity", "linear", 0.0),
                                      LayerSpec(ones, "valid", "valid", 0.0)], pending)
    back, covered = Invert(records, sample.space).with_coverage(fwd, valid=fwd_valid.bool())
    keep = ndimage.binary_erosion(covered[0].numpy(), iterations=2)
    if keep.sum() == 0:
        return
    err = np.abs(back[0].numpy() - smooth)[keep]
    assert err.max() <= tolerance * 6, (type(t).__name__, float(err.max()))


def check_batched(t: Transform, sample: Sample) -> None:
    """A batch of two elements in one ``BatchAugment`` call equals each element augmented alone with
    the same generator, and replaying the batch's records gives the batch again."""
    from ..core.random import generator_for
    from ..errors import ShapeError
    from ..training.batch import BatchAugment
    image = sample["image"]
    changed = (image.double() * 0.5 + 1).to(image.dtype)
    if sample.valid_name:                             # keep nodata canonical: invalid voxels hold the fill
        changed = torch.where(sample[sample.valid_name], changed, image)
    second = sample.with_layers(image=replace(sample.layer_info("image"), data=changed))
    elements, indices = [sample, second], [4, 7]
    alone = [t(e, generator_for(9, 0, i)) for e, i in zip(elements, indices)]
    def stack(name: str) -> torch.Tensor | None:
        return torch.stack([s[name] for s in elements]) if name in sample.layer_names() else None

    images = torch.stack([s["image"] for s in elements])
    info = sample.layer_info("image")
    kw: dict[str, Any] = dict(space=sample.space, fill=info.fill, channels=info.channels, meta=sample.meta,
                              label_interpolation=sample.layer_info("label").interpolation
                              if "label" in sample.layer_names() else None)
    augment = BatchAugment(t, seed=9)
    if alone[0].space.shape != alone[1].space.shape:      # e.g. Rot90 of a non-square plane: cannot stack
        import pytest
        with pytest.raises(ShapeError, match="to stack them"):
            augment(images, stack("label"), stack("valid"), indices=indices, **kw)
        return
    kw.update(points=[e.points for e in elements], boxes=[e.boxes for e in elements])
    out = augment(images, stack("label"), stack("valid"), indices=indices, **kw)
    for b, one in enumerate(alone):
        for name in one.layer_names():
            assert torch.equal(out[name][b], one[name]), (type(t).__name__, name)
        assert sorted(out["boxes"][b]) == sorted(one.boxes)
        for name, bx in one.boxes.items():
            assert torch.equal(out["boxes"][b][name].data, bx.data), (type(t).__name__, name)
            assert torch.equal(out["boxes"][b][name].labels, bx.labels), (type(t).__name__, name)
        assert out["records"][b] == [r.to_dict() for r in one.history]
    again = augment(images, stack("label"), stack("valid"), records=out["records"], **kw)
    assert torch.equal(again["image"], out["image"])
    for variant in batch_variants(sample):
        check_batched_samples(t, variant)


def batch_variants(sample: Sample) -> list[Sample]:
    """``sample`` as a multi-layer sample (a second INTENSITY layer, ``image * 0.5 + 1``, beside it) and
    with its validity turned the other way (its VALID layer dropped, or one added that hides a corner
    block, where the image then holds the fill): what ``check_batched_samples`` also runs on."""
    info = sample.layer_info("image")
    image = sample["image"]
    second = Layer((image.double() * 0.5 + 1).to(image.dtype), Role.INTENSITY, info.fill, info.channels)
    many = sample.with_layers(t2=second)
    if sample.valid_name:
        toggled = sample.replace(layers={n: v for n, v in sample.layers.items() if n != sample.valid_name})
    else:
        valid = torch.ones((1,) + tuple(sample.space.shape), dtype=torch.bool)
        valid[(slice(None),) + tuple(slice(0, max(1, n // 3)) for n in sample.space.shape)] = False
        data = torch.where(valid, image, torch.full_like(image, info.fill))
        toggled = sample.with_layers(image=replace(info, data=data), valid=Layer(valid, Role.VALID))
    return [many, toggled]


def check_batched_samples(t: Transform, sample: Sample) -> None:
    """``BatchAugment.augment`` of two elements (``sample`` and a changed copy of it, any layers) equals
    each element augmented alone with the same generator (every layer, the space, targets and the
    record), or raises what the element alone raises."""
    import pytest

    from ..core.random import generator_for
    from ..training.batch import BatchAugment
    changed = {n: replace(sample.layer_info(n), data=(sample[n].double() * 0.5 + 1).to(sample[n].dtype))
               for n in sample.layer_names(Role.INTENSITY)}
    if sample.valid_name:
        valid = sample[sample.valid_name]
        changed = {n: replace(x, data=torch.where(valid, x.data, sample[n])) for n, x in changed.items()}
    elements, indices = [sample, sample.with_layers(**changed)], [3, 8]
    try:
        alone = [t(e, generator_for(9, 0, i)) for e, i in zip(elements, indices)]
    except Exception as error:           # noqa: BLE001 - the batch must refuse it the same way
        with pytest.raises(type(error)):
            BatchAugment(t, seed=9).augment(elements, indices=indices)
        return
    outs = BatchAugment(t, seed=9).augment(elements, indices=indices)
    for one, out in zip(alone, outs):
        assert out.space == one.space, (type(t).__name__, out.space.describe(), one.space.describe())
        assert_samples_equal(out, one)
        for name in one.layer_names():
            assert out.layer_info(name).role is one.layer_info(name).role, (type(t).__name__, name)
            assert out.space_of(name) == one.space_of(name), (type(t).__name__, name)
        assert [r.to_dict() for r in out.history] == [r.to_dict() for r in one.history], type(t).__name__


def check_bad_arguments(case: Case) -> None:
    import pytest
    for name, call in case.bad:
        with pytest.raises(ParameterError, match=rf"^{name}="):
            call()
