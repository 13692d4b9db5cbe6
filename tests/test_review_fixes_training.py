"""Regressions found by a review of the training, curriculum and evaluation code."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import Schedule
from domainaug import remote_sensing as rs
from domainaug.evaluate import expected_calibration_error, group_kfold, paired_ttest
from domainaug.training import MixUp, mixing_collate
from domainaug.testing import make_raster, make_volume
from domainaug.training import AugmentedDataset, BatchAugment, collate


def test_subclasses_forwarding_args_and_kwargs_build_and_schedule():
    class MyGamma(da.Gamma):
        def __init__(self, strength=0.3, **kw):
            super().__init__(gamma=(1 - strength, 1 + strength), **kw)

    class MyFlip(da.Flip):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)

    assert MyGamma(0.2, p=0.5).p == 0.5
    flip = MyFlip(axes=(0,), p=Schedule.linear(0.0, 1.0, 4))
    flip.set_epoch(2)
    assert flip.p == 0.5 and flip.config()["p"]["schedule"] == "linear"


def test_a_pair_of_schedules_is_checked_between_its_key_epochs():
    with pytest.raises(da.ParameterError, match="^gamma="):
        da.Gamma(gamma=(Schedule.step([1.4, 0.5], [10]), Schedule.linear(3.0, 0.6, 10)))


def test_integer_endpoints_still_ramp_smoothly_unless_asked():
    flip = da.Flip(axes=(0,), p=Schedule.linear(0, 1, epochs=10))
    flip.set_epoch(3)
    assert flip.p == pytest.approx(0.3)
    crop = da.Crop(Schedule.linear(4, 12, 2, integer=True))
    crop.set_epoch(1)
    assert crop.size == (8,)


def test_apply_runs_a_record_at_its_recorded_epoch():
    volume = make_volume(shape=(14, 14, 14))
    crop = da.Crop(Schedule.linear(4, 12, 2, integer=True))
    out = crop(volume, torch.Generator().manual_seed(0))
    crop.set_epoch(2)
    assert crop.apply(volume, out.history[-1].params).space.shape == (4, 4, 4)


def test_nodata_marked_on_some_samples_survives_collate_mixup_and_batches():
    tiles = []
    for i in range(4):
        s = make_raster(seed=i)
        tiles.append(s.replace(layers={n: l for n, l in s.layers.items() if n != "valid"}))
    policy = rs.RotationPolicy("small", max_degrees=30, p=0.5)
    outs = [policy(s, torch.Generator().manual_seed(i)) for i, s in enumerate(tiles)]
    assert len({tuple(o.layer_names()) for o in outs}) == 2          # some rotated, some not
    batch = collate(outs)
    assert "valid" in batch
    assert torch.all(batch["image"][~batch["valid"].expand_as(batch["image"])] == outs[0].layer_info("image").fill)
    k = int(max(s["label"].max() for s in outs)) + 1
    for out in MixUp(num_classes=k)(outs, torch.Generator().manual_seed(0)):
        invalid = ~out["valid"].expand_as(out["image"])
        assert torch.all(out["image"][invalid] == out.layer_info("image").fill)
    result = BatchAugment(rs.RotationPolicy("small", p=0.5))(torch.rand(4, 3, 16, 16), indices=[2, 0, 1, 3])
    assert result["valid"].shape == (4, 1, 16, 16)


def test_mixing_collate_draws_differ_between_batches_and_epochs():
    rasters = [make_raster(seed=i) for i in range(6)]
    for r in rasters:
        r.meta["target"] = 0
    ds = AugmentedDataset(rasters, da.Compose([da.Crop(10, mode="center")]))
    fn = mixing_collate(MixUp(num_classes=4), seed=0)
    lams = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        for b in range(3):
            batch = fn([ds[2 * b], ds[2 * b + 1]])
            lams.append(tuple(round(r[-1]["params"]["lam"], 6) for r in batch["records"]))
    assert len(set(lams)) == len(lams)


def test_group_kfold_deals_large_groups_first():
    groups = ["a"] * 10 + list("bcdefg")
    for seed in range(5):
        assert sorted(len(f) for f in group_kfold(16, 2, seed=seed, groups=groups)) == [6, 10]


def test_effect_size_of_a_constant_difference_is_infinite_and_bfloat16_works():
    assert paired_ttest([1, 2, 3], [2, 3, 4])["effect_size"] == float("inf")
    probs = torch.softmax(torch.randn(100, 10), 1).bfloat16()
    labels = torch.randint(0, 10, (100,))
    assert expected_calibration_error(probs.float() / probs.float().sum(1, keepdim=True), labels) == pytest.approx(
        expected_calibration_error(probs, labels), abs=1e-2)


def test_numpy_integer_targets_collate_as_class_indices():
    samples = [make_volume() for _ in range(3)]
    for i, s in enumerate(samples):
        s.meta["target"] = np.int64(i)
    target = collate(samples)["target"]
    assert target.dtype == torch.int64 and target.tolist() == [0, 1, 2]
