"""Curriculum schedules: any numeric argument or probability as a function of the epoch."""

import json

import pytest
import torch

import domainaug as da
from domainaug import Schedule
from domainaug.errors import ParameterError
from domainaug.testing import make_volume
from domainaug.training import AugmentedDataset


def test_schedule_values():
    lin = Schedule.linear(0.3, 1.0, 10)
    assert [lin.at(e) for e in (0, 5, 10, 20)] == pytest.approx([0.3, 0.65, 1.0, 1.0])
    cos = Schedule.cosine(0.0, 1.0, 4)
    assert [cos.at(e) for e in (0, 2, 4)] == pytest.approx([0.0, 0.5, 1.0])
    assert cos.at(1) < 0.25                                  # slow start
    step = Schedule.step([0.1, 0.5, 0.9], [3, 6])
    assert [step.at(e) for e in (0, 2, 3, 5, 6, 100)] == [0.1, 0.1, 0.5, 0.5, 0.9, 0.9]
    assert Schedule.linear(8, 16, 4, integer=True).at(1) == 10
    assert isinstance(Schedule.linear(8, 16, 4, integer=True).at(1), int)
    assert Schedule.linear(0, 1, 10).at(3) == pytest.approx(0.3)          # integer ends, smooth ramp


def test_set_epoch_drives_the_probability():
    flip = da.Flip(axes=(0,), p=Schedule.linear(0.0, 1.0, 10))
    assert flip.p == 0.0
    flip.set_epoch(5)
    assert flip.p == 0.5
    flip.set_epoch(10)
    assert flip.p == 1.0
    sample = make_volume()
    out = flip(sample, torch.Generator().manual_seed(0))
    assert out.history[0].params["epoch"] == 10
    assert torch.equal(out["image"], sample["image"].flip(1))


def test_schedules_are_config_and_replay_at_the_recorded_epoch():
    pipeline = da.Compose([da.Gamma(gamma=(Schedule.linear(1.0, 0.5, 4), Schedule.linear(1.0, 2.0, 4))),
                           da.Affine(degrees=(Schedule.linear(0, -20, 4), Schedule.linear(0, 20, 4)))])
    sample = make_volume()
    assert da.Compose([da.Gamma(1.0), da.Affine()])(sample, torch.Generator().manual_seed(1))["image"].equal(
        pipeline(sample, torch.Generator().manual_seed(1))["image"])      # epoch 0: identity
    pipeline.set_epoch(3)
    out = pipeline(sample, torch.Generator().manual_seed(1))
    logged = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert logged[0]["config"]["transforms"][0]["config"]["gamma"][0]["schedule"] == "linear"
    fresh = da.replay(sample, logged)                        # a new process: pipeline built at epoch 0
    assert torch.equal(fresh["image"], out["image"])
    again = da.transform_from_dict(json.loads(json.dumps(pipeline.to_dict())))
    again.set_epoch(3)
    assert torch.equal(again(sample, torch.Generator().manual_seed(1))["image"], out["image"])
    yaml_again = da.Compose.from_yaml(pipeline.to_yaml())
    assert yaml_again.to_dict() == pipeline.to_dict()


def test_a_probability_schedule_outside_0_1_is_refused():
    with pytest.raises(da.ParameterError, match="^p="):
        da.Flip(p=Schedule.linear(0.5, 1.5, 10))
    with pytest.raises(da.ParameterError, match="^p="):
        da.Flip(p={"schedule": "step", "values": [0.5, -0.1], "milestones": [2]})
    with pytest.raises(da.ParameterError, match="^epochs="):
        Schedule.linear(0, 1, 0)
    with pytest.raises(da.ParameterError, match="^milestones="):
        Schedule.step([0.1, 0.2], [3, 4])


def test_the_dataset_epoch_drives_the_pipeline_even_in_workers():
    sample = make_volume()
    ds = AugmentedDataset([sample] * 4, da.Flip(axes=(0,), p=Schedule.step([0.0, 1.0], [2])), seed=0)
    flipped = lambda: [bool(ds[i].history[-1].params.get("applied", True)) for i in range(4)]  # noqa: E731
    assert flipped() == [False] * 4
    ds.set_epoch(2)
    assert flipped() == [True] * 4
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=da.training.collate)
    records = [r for batch in loader for r in batch["records"]]
    assert all(r[-1]["params"]["epoch"] == 2 for r in records)


def test_no_method_of_a_transform_is_wrapped():
    """Schedules are resolved in one visible step (``ScheduledConstruction``), not by wrapping
    each class's ``__init__``/``config``/``apply``/``lazy``/``spatial_map``."""
    for cls in da.Transform.registry.values():
        for name in ("__init__", "config", "apply", "lazy", "spatial_map"):
            method = cls.__dict__.get(name)
            assert method is None or not hasattr(method, "__wrapped__"), (cls.__name__, name)


def test_at_epoch_builds_another_transform_and_set_epoch_takes_its_state():
    flip = da.Flip(axes=(0,), p=Schedule.linear(0.2, 1.0, epochs=4))
    later = flip.at_epoch(4)
    assert later is not flip and later.p == 1.0 and flip.p == 0.2 and flip.epoch == 0 and later.epoch == 4
    assert later.config() == flip.config()                     # the schedule, not a value
    flip.set_epoch(2)
    assert flip.p == pytest.approx(0.6) and flip.epoch == 2
    assert da.Flip(axes=(0,)).at_epoch(3).epoch == 0           # nothing scheduled: itself


def test_a_transform_name_already_taken_is_refused():
    with pytest.raises(ParameterError, match="Flip"):
        class Flip(da.SpatialTransform):                        # noqa: F811 - the point of the test
            def sample_params(self, sample, generator):
                return {}

            def spatial_map(self, space, params):
                return space, []
    assert da.Transform.registry["Flip"] is da.Flip


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
