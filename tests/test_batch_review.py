"""Regressions from the adversarial review of the batched path (issue 22, helper-review branch):
element b of ``BatchAugment.augment`` must equal the pipeline on that sample alone with generator
``generator_for(seed, epoch, indices[b])`` (every layer, grid, role, points, boxes, record), bit for
bit on the CPU, and raise what the element alone raises. The first tests are the cases that broke;
the rest pin down mixes that held."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import medical as md
from domainaug import remote_sensing as rs
from domainaug.core.kernels.resample import resample_layers
from domainaug.core.kernels.spec import LayerSpec
from domainaug.core.random import generator_for
from domainaug.core.sample import materialize_batch, stacked
from domainaug.testing import assert_samples_equal, make_raster, make_volume
from domainaug.training import BatchAugment

sys.path.insert(0, str(Path(__file__).parent))
from test_many_grids_review import s2, vol  # noqa: E402


def assert_same(out: da.Sample, one: da.Sample) -> None:
    """Every layer (bits, dtype, role, grid), the space, points and boxes bit for bit, and the record."""
    assert out.space == one.space
    assert_samples_equal(out, one)
    for name in one.layer_names():
        assert out.layer_info(name).role is one.layer_info(name).role, name
        assert out.space_of(name) == one.space_of(name), name
    for name in one.points:
        assert torch.equal(out.points[name], one.points[name]), name
    assert [r.to_dict() for r in out.history] == [r.to_dict() for r in one.history]


def check(pipeline: da.Transform, elements: list[da.Sample], *, epoch: int = 0, seed: int = 9,
          indices: list[int] | None = None) -> list[da.Sample]:
    """The batch against every element alone; an error alone must be the batch's error (type and message)."""
    indices = list(range(len(elements))) if indices is None else indices
    pipeline.set_epoch(epoch)
    try:
        alone = [pipeline(e, generator_for(seed, epoch, i)) for e, i in zip(elements, indices)]
    except Exception as error:             # noqa: BLE001 - the batch must raise the same
        with pytest.raises(type(error)) as raised:
            BatchAugment(pipeline, seed=seed).augment(elements, epoch=epoch, indices=indices)
        assert str(raised.value) == str(error)
        return []
    outs = BatchAugment(pipeline, seed=seed).augment(elements, epoch=epoch, indices=indices)
    for out, one in zip(outs, alone):
        assert_same(out, one)
    return outs


def with_grad(sample: da.Sample) -> da.Sample:
    return sample.with_layers(image=replace(sample.layer_info("image"),
                                            data=sample["image"].clone().requires_grad_(True)))


# --- what broke ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pipeline", [da.Gamma(), da.GaussianNoise(), da.GaussianBlur((0.5, 1.0)),
                                      da.Compose([da.Affine(degrees=10), da.Gamma()])],
                         ids=["gamma", "noise", "blur", "affine+gamma"])
@pytest.mark.parametrize("first_valid", [True, False])
def test_elements_with_and_without_a_valid_layer_in_one_batch(pipeline, first_valid):
    """An intensity op of its own batch kernel stacked the VALID layers of every element when the first
    had one, and failed with an AttributeError on an element without (alone: no error)."""
    with_valid, plain = make_volume(seed=0, with_valid=True), make_volume(seed=1)
    check(pipeline, [with_valid, plain, with_valid] if first_valid else [plain, with_valid, plain])


@pytest.mark.parametrize("pipeline", [da.Gamma(), da.GaussianNoise(), da.Compose([da.GaussianNoise()]),
                                      da.Compose([da.Flip(p=0.0)])], ids=["gamma", "noise", "compose", "skip"])
def test_one_pending_sample_twice_in_a_batch(pipeline):
    """A sample with a pending map (``Transform.lazy``), given twice: materialize_batch resolved the
    object in place for its first occurrence and then asserted on the second (AssertionError)."""
    sample = make_volume()
    affine = da.Affine(degrees=10)

    def pending() -> da.Sample:
        return affine.lazy(sample, affine.sample_params(sample, generator_for(0)))

    twice = pending()
    outs = BatchAugment(pipeline, seed=9).augment([twice, twice], indices=[0, 1])
    for i, out in enumerate(outs):
        assert_same(out, pipeline(pending(), generator_for(9, 0, i)))


@pytest.mark.parametrize("pipeline", [da.GaussianNoise(), da.GaussianBlur((0.5, 1.0)), da.NormalizeIntensity(),
                                      md.CTWindow(), da.Crop(8), da.Compose([da.Crop(8), da.Pad(10)]),
                                      da.Compose([da.Crop(8), da.GaussianBlur((0.5, 1.0))])],
                         ids=["noise", "blur", "normalize", "ct-window", "crop", "crop+pad", "crop+blur"])
def test_an_element_without_gradients_stays_out_of_the_others_graph(pipeline):
    """Elements that require grad beside ones that do not: the batch stacked them into one buffer, so the
    output of an element that does not require grad did (alone it does not), tied to the others' graph."""
    elements = [with_grad(make_volume(seed=0)), make_volume(seed=1), with_grad(make_volume(seed=2))]
    alone = [pipeline(e, generator_for(9, 0, i)) for i, e in enumerate(elements)]
    outs = BatchAugment(pipeline, seed=9).augment(elements)
    for out, one in zip(outs, alone):
        assert torch.equal(out["image"], one["image"])
        assert out["image"].requires_grad == one["image"].requires_grad
    if isinstance(pipeline, da.GaussianNoise):
        return          # (its gradient fails alone too: "modified by an inplace operation"; see the report)
    x = elements[0]["image"]
    assert torch.equal(torch.autograd.grad(outs[0]["image"].sum(), x)[0],
                       torch.autograd.grad(alone[0]["image"].sum(), x)[0])


def test_collate_still_stacks_elements_with_and_without_gradients():
    from domainaug.training import collate
    a, b = with_grad(make_volume(seed=0)), make_volume(seed=1)
    batch = collate([a, b])
    assert torch.equal(batch["image"], torch.stack([a["image"], b["image"]])) and batch["image"].requires_grad


def test_elements_that_raise_different_errors_raise_the_first_elements_error():
    """The batch runs op by op, so element 1's error at the first op came before element 0's at the
    second; the per-element loop (and ``check_batched_samples``' rule) raises element 0's."""
    small = make_volume(seed=1, shape=(10, 12, 8))                    # a Crop(12) too large for it
    big = make_volume(seed=0)
    no_label = big.replace(layers={"image": big.layer_info("image")})  # no mask for NormalizeIntensity
    pipeline = da.Compose([da.NormalizeIntensity(mask="label"), da.Crop(12)])
    with pytest.raises(da.ShapeError, match="larger than the grid"):
        pipeline(small, generator_for(9, 0, 0))
    with pytest.raises(da.ShapeError, match="larger than the grid"):
        BatchAugment(pipeline, seed=9).augment([small, no_label])
    with pytest.raises(da.ParameterError, match="mask='label'"):
        BatchAugment(pipeline, seed=9).augment([no_label, small])


class Backwards(da.Compose):
    """A user's composite that draws its own way (its children in reverse order)."""

    def _draw_and_run(self, sample: da.Sample, generator: torch.Generator, lazy: bool) -> tuple[da.Sample, Any]:
        out, children = sample, []
        for t in reversed(self.transforms):
            out, params = t.step(out, generator, lazy=True)
            children.append(params)
        return self.finish(out, sample, lazy), {"children": children[::-1]}

    def walk(self, state: Any, params: dict[str, Any], step: Any) -> Any:
        for t, p in reversed(list(zip(self.transforms, params["children"]))):
            state = step(t, p, state)
        return state


class DrawnWhileRunning(da.Gamma):
    """An intensity op of a user that draws as it runs (its own ``_draw_and_run``)."""

    def _draw_and_run(self, sample: da.Sample, generator: torch.Generator, lazy: bool) -> tuple[da.Sample, Any]:
        params = {"gamma": 0.5 + torch.rand((), generator=generator, dtype=torch.float64).item()}
        return self.run(sample, params, lazy=lazy), params


class NeverFused(da.BrightnessContrast):
    """An intensity op of a user that is never fused into a pending permutation (its own ``lazy``)."""

    def lazy(self, sample: da.Sample, params: dict[str, Any]) -> da.Sample:
        return self.apply(sample.materialize(), params)


class Stepped(da.GaussianNoise):
    """An op of a user with its own ``step`` (here: every element skips)."""

    def step(self, sample: da.Sample, generator: torch.Generator, *, lazy: bool) -> tuple[da.Sample, Any]:
        return self.run(sample, {"applied": False}, lazy=lazy), {"applied": False}


@pytest.mark.parametrize("pipeline", [Backwards([da.Gamma(), da.Crop(8)]), da.Compose([DrawnWhileRunning()]),
                                      da.Compose([da.Flip(axes=(0,)), NeverFused()]), da.Compose([Stepped()])],
                         ids=["composite-draw", "intensity-draw", "intensity-lazy", "step"])
def test_a_subclass_that_overrides_the_per_element_path_is_run_as_alone(pipeline):
    """Compose's and IntensityTransform's batched methods stood in for ``_draw_and_run``, ``lazy`` and
    ``step`` of a subclass that overrides them (Transform's own check only caught its direct subclasses)."""
    check(pipeline, [make_volume(seed=k) for k in range(3)])


# --- what held -------------------------------------------------------------------------------------
def test_samples_on_several_grids_mixed_with_plain_ones():
    elements = [make_volume(seed=0), vol(), make_volume(seed=1, with_valid=True), vol(valid=True)]
    for pipeline in (da.Compose([da.Flip(axes=(0,)), da.Affine(degrees=10), da.GaussianNoise(), da.Gamma()]),
                     da.Compose([da.Resample(2.0), da.BrightnessContrast()])):
        check(pipeline, elements)
    check(da.Compose([da.ResampleToMatch("t1"), da.Gamma(), da.GaussianNoise()]), [vol(), vol(valid=True)])
    check(da.Crop(8), [make_volume(seed=0), vol()])                  # (Crop refuses many grids: both ways)
    check(da.Compose([da.Crop(32), da.BrightnessContrast()]), [s2(), s2()])


def test_points_boxes_and_spaces_of_every_element_follow_its_own_map():
    elements = [make_volume(seed=k) for k in range(3)] + [make_raster(seed=0), make_raster(seed=1)]
    check(da.Compose([da.Affine(degrees=(-30, 30), translation=(-3, 3)), da.Flip(p=0.5), da.RandomResizedCrop(8),
                      da.GaussianNoise()]), elements)
    outs = check(da.Compose([da.Rot90(), da.Crop(8), da.GaussianNoise()]), elements[:3])
    assert len({o.space.affine.tobytes() for o in outs}) == 3          # three spaces, each its own


def test_schedules_at_several_epochs_with_nested_probabilities():
    s = da.Schedule
    pipeline = da.Compose([da.Affine(degrees=s.linear(0, 30, 10), p=s.linear(0.2, 1.0, 10)),
                           da.Gamma(gamma=(s.linear(1.0, 0.7, 10), s.linear(1.0, 1.4, 10))),
                           da.GaussianNoise(std=(0.0, s.cosine(0.01, 0.2, 10)), p=0.5),
                           da.OneOf([da.Flip(), da.Crop(s.step([12, 10], [5], integer=True))], p=0.7),
                           da.SomeOf([da.Gamma(), da.GaussianBlur((0.5, 1.0)), da.Flip()], n=(0, 2), p=0.8),
                           da.RandomApply([da.BrightnessContrast(), da.Compose([da.Gamma(p=0.5)], p=0.5)])], p=0.9)
    elements = [make_volume(seed=k) for k in range(4)]
    for epoch in (0, 3, 12):
        check(pipeline, elements, epoch=epoch, indices=[1, 2, 3, 4])


def test_policies_and_per_layer_draws_on_dates_mixed_with_single_rasters():
    def two_dates(k: int) -> da.Sample:
        x = make_raster(seed=k)
        return rs.dates(x.with_layers(image=replace(x.layer_info("image"), channels=("B1", "B2") * 2)), count=2)

    from domainaug.policy import RandAugment, TrivialAugment
    elements = [make_raster(seed=0), two_dates(0), make_raster(seed=1), two_dates(1)]
    for pipeline in (da.Compose([da.BrightnessContrast(per_layer=True), da.Gamma(per_layer=None), rs.Haze()]),
                     da.Compose([rs.CloudShadow(p=0.6), da.Gamma(), rs.BandDropout()]),
                     da.Compose([RandAugment(n=2)]), da.Compose([TrivialAugment()])):
        check(pipeline, elements)


def test_dtypes_and_layers_that_appear_in_some_elements_only():
    ints = [make_volume(seed=k, dtype=np.int16) for k in range(2)]
    check(da.Compose([md.CTWindow(), da.GaussianNoise()]), [ints[0], make_volume(seed=0), ints[1]])
    halves = [replace_image(make_volume(seed=0), torch.float64), make_volume(seed=1),
              replace_image(make_volume(seed=2), torch.float16)]
    check(da.Compose([da.Flip(), da.Affine(degrees=15), da.GaussianNoise(), da.BrightnessContrast()]), halves)
    check(da.Compose([md.LabelsToImage(), da.Gamma()]), [make_volume(seed=k) for k in range(2)])
    tiles = [make_volume(seed=k, shape=(14, 14, 12)) for k in range(2)] + \
        [make_volume(seed=5, shape=(14, 14, 12), with_valid=True)]
    check(da.Compose([rs.RotationPolicy("any"), da.GaussianNoise(), da.BrightnessContrast()]), tiles)


def replace_image(sample: da.Sample, dtype: torch.dtype) -> da.Sample:
    return sample.with_layers(image=replace(sample.layer_info("image"), data=sample["image"].to(dtype)))


def test_an_element_that_raises_mid_batch_raises_the_same_error():
    big, small = make_volume(seed=0), make_volume(seed=1, shape=(10, 12, 8))
    check(da.Compose([da.Gamma(), da.Crop(12)]), [big, small])
    no_label = big.replace(layers={"image": big.layer_info("image")})
    check(da.Compose([da.Affine(degrees=10), da.GaussianNoise(), da.NormalizeIntensity(mask="label")]),
          [big, no_label, big])
    check(da.Compose([da.Flip(), md.LabelsToImage()]), [big, no_label])


def test_interpolation_fill_and_value_stage_mixes_in_one_materialize_batch():
    base = [make_volume(seed=k) for k in range(3)]
    cubic = base[1].with_layers(image=replace(base[1].layer_info("image"), interpolation="cubic"))
    filled = base[2].with_layers(image=replace(base[2].layer_info("image"), fill=5.0))
    for pipeline in (da.Compose([da.Affine(degrees=20), da.Gamma()]),
                     da.Compose([da.Flip(axes=(1,)), da.CropOrPad((18, 10, 14)), da.BrightnessContrast()])):
        check(pipeline, [base[0], cubic, filled, base[0]])


def test_outputs_of_a_batch_do_not_share_memory_across_elements():
    elements = [make_volume(seed=k) for k in range(3)]
    outs = BatchAugment(da.Compose([da.Affine(degrees=10), da.Gamma()]), seed=1).augment(elements)
    kept = [o["image"].clone() for o in outs]
    outs[1]["image"].fill_(0)
    outs[1]["label"].fill_(0)
    assert torch.equal(outs[0]["image"], kept[0]) and torch.equal(outs[2]["image"], kept[2])
    assert all(e["image"].abs().sum() > 0 for e in elements)


def test_stacked_only_views_consecutive_slices_of_one_buffer():
    base = torch.arange(24.0).view(4, 1, 2, 3)
    view = stacked([base[1], base[2]])
    assert view is not None and view.data_ptr() == base[1].data_ptr() and torch.equal(view, base[1:3])
    for parts in ([base[0], base[0]], [base[0], base[2]], [base[2], base[1]],
                  [base.transpose(2, 3)[0], base.transpose(2, 3)[1]]):
        out = stacked(parts)
        assert out is not None and torch.equal(out, torch.stack(parts)) and out.data_ptr() != base.data_ptr()
        assert stacked(parts, copy=False) is None
    overlapping = base.view(-1).as_strided((2, 1, 2, 3), (3, 6, 3, 1))
    out = stacked([overlapping[0], overlapping[1]])
    assert out is not None and torch.equal(out, torch.stack([overlapping[0], overlapping[1]]))


@pytest.mark.parametrize("with_valid", [False, True])
def test_resample_layers_into_a_dirty_buffer_writes_every_voxel(with_valid):
    """``out=`` (a batch's slices) with the exact path's fill regions (pads, crops past the edge, flips)
    and bool/uint8/int16/int64/float64 layers: the same bits as a fresh result, whatever the buffer held."""
    sample = make_volume(seed=1, with_valid=with_valid)
    for t in (da.Compose([da.Flip(axes=(0,)), da.Pad((16, 17, 15))]), da.CropOrPad((18, 10, 14)),
              da.Compose([da.Rot90(), da.CropOrPad((18, 10, 14))]), da.Affine(degrees=20),
              da.Compose([da.Flip(axes=(1,)), da.BrightnessContrast()]),      # (a value stage on the copy)
              da.Compose([da.Rot90(), da.Gamma(), da.CropOrPad((18, 10, 14))])):
        lazy = t.step(sample, generator_for(0), lazy=True)[0]
        pending = lazy.pending
        assert pending is not None
        specs = [replace(lazy._layers[n].spec(), gain=pending.values[n][0], bias=pending.values[n][1])
                 if n in pending.values else lazy._layers[n].spec() for n in lazy._layers]
        label = lazy._layers["label"].data
        specs += [LayerSpec(label.to(torch.int16), "label", "nearest", 5.0),
                  LayerSpec(lazy._layers["image"].data.double(), "intensity", "linear", -3.0),
                  LayerSpec(label.long(), "label", "argmax", 0.0)]
        fresh = resample_layers(specs, pending)
        dirty = [torch.full((2,) + tuple(r.shape), True if r.dtype == torch.bool else 77, dtype=r.dtype)
                 for r in fresh]
        written = resample_layers(specs, pending, out=[d[1] for d in dirty])
        for r, w, d in zip(fresh, written, dirty):
            assert torch.equal(w, r) and w.data_ptr() == d[1].data_ptr()


def test_materialize_batch_of_pending_samples_of_other_spaces_in_one_group():
    affine = da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic()])
    def pendings() -> list[da.Sample]:
        return [affine.step(make_volume(seed=k), generator_for(1, 0, k), lazy=True)[0] for k in range(3)]
    together = materialize_batch(pendings())
    for one, alone in zip(together, [s.materialize() for s in pendings()]):
        assert_same(one, alone)
    assert stacked([s["image"] for s in together], copy=False) is not None       # one buffer
