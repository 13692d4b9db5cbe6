"""The batched path itself (issue 22): elements resampled into one buffer, intensity ops on the
batch view, draws per element; every result equal to the element alone bit for bit."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import remote_sensing as rs
from domainaug.core.random import generator_for
from domainaug.core.sample import materialize_batch, stacked
from domainaug.testing import assert_samples_equal, make_raster, make_volume
from domainaug.training import BatchAugment


def _elements(n: int, **kw) -> list[da.Sample]:
    return [make_volume(seed=k, **kw) for k in range(n)]


def _pending(samples: list[da.Sample], seed: int = 0) -> list[da.Sample]:
    warp = da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic()])
    return [warp.lazy(s, warp.sample_params(s, generator_for(seed, 0, k))) for k, s in enumerate(samples)]


def test_materialize_batch_equals_each_alone_and_leaves_views_of_one_buffer():
    alone = [s.materialize() for s in _pending(_elements(3))]
    together = materialize_batch(_pending(_elements(3)))
    for a, b in zip(alone, together):
        assert b.pending is None
        assert_samples_equal(a, b)
    image = stacked([s["image"] for s in together])
    assert image is not None and image.data_ptr() == together[0]["image"].data_ptr()      # a view, no copy
    assert torch.equal(image[2], together[2]["image"])


def test_materialize_batch_groups_what_matches_and_leaves_the_rest_alone():
    mixed = _pending(_elements(2)) + _pending(_elements(1, shape=(10, 12, 8))) + _elements(1)
    alone = [s.materialize() for s in _pending(_elements(2)) + _pending(_elements(1, shape=(10, 12, 8)))
             ] + _elements(1)
    out = materialize_batch(mixed)
    assert [s.pending for s in out] == [None] * 4
    for a, b in zip(alone, out):
        assert_samples_equal(a, b)


def test_stacked_copies_what_is_not_one_buffer_and_refuses_what_differs():
    a, b = torch.arange(6.0).view(2, 3), torch.arange(6.0).view(2, 3) + 1
    out = stacked([a, b])
    assert out is not None and torch.equal(out, torch.stack([a, b])) and out.data_ptr() != a.data_ptr()
    assert stacked([a, b.double()]) is None and stacked([a, b[:1]]) is None
    base = torch.arange(12.0).view(2, 2, 3)
    assert stacked([base[0], base[1]]).data_ptr() == base.data_ptr()             # type: ignore[union-attr]
    assert stacked([base[1], base[0]]).data_ptr() != base.data_ptr()             # type: ignore[union-attr]


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_a_pipeline_with_skips_mixed_across_the_batch_equals_each_element_alone(p):
    """Elements that skip an op and elements that run it, in one batch: each draws as alone."""
    pipeline = da.Compose([da.Flip(axes=(0,), p=p), da.Affine(degrees=(-10, 10), p=p), da.Gamma((0.7, 1.4), p=p),
                           da.GaussianNoise((0.01, 0.1), p=p), da.BrightnessContrast(p=p),
                           da.OneOf([da.Gamma(), da.GaussianBlur((0.5, 1.0))], p=p)])
    elements = _elements(6)
    outs = BatchAugment(pipeline, seed=5).augment(elements, indices=list(range(20, 26)))
    for k, (element, out) in enumerate(zip(elements, outs)):
        one = pipeline(element, generator_for(5, 0, 20 + k))
        assert_samples_equal(out, one)
        assert [r.to_dict() for r in out.history] == [r.to_dict() for r in one.history]


def test_the_remote_sensing_preset_batched_equals_each_tile_alone_with_nodata():
    tiles = [make_raster(seed=k) for k in range(4)]
    tiles = [rs.set_bands(t, ["B02", "B03", "B04", "B08"], sensor="sentinel2") for t in tiles]
    pipeline = rs.preset("sentinel2")
    outs = BatchAugment(pipeline, seed=2).augment(tiles, epoch=3, indices=[7, 8, 9, 10])
    for k, (tile, out) in enumerate(zip(tiles, outs)):
        assert_samples_equal(out, pipeline(tile, generator_for(2, 3, 7 + k)))


def test_the_batch_never_hands_back_the_callers_memory():
    """An op that leaves a layer alone must not return a view of the input batch (stacking used to copy)."""
    sample = make_volume()
    images, labels = torch.stack([sample["image"]] * 2), torch.stack([sample["label"]] * 2)
    kept = labels.clone()
    out = BatchAugment(da.Compose([da.Gamma((0.8, 1.2))]))(images, labels, space=sample.space)
    out["label"].fill_(0)
    out["image"].fill_(0)
    assert torch.equal(labels, kept) and images.abs().sum() > 0


def test_records_replay_the_batch_and_a_json_round_trip_changes_nothing():
    import json
    elements = _elements(3)
    pipeline = da.Compose([da.Affine(degrees=(-10, 10)), da.Elastic(), da.Gamma(), da.GaussianNoise()])
    augment = BatchAugment(pipeline, seed=4)
    outs = augment.augment(elements)
    records = json.loads(json.dumps([[r.to_dict() for r in o.history] for o in outs]))
    again = augment.augment(elements, records=records)
    for a, b in zip(outs, again):
        assert_samples_equal(a, b)
    assert np.all([len(o.history) == 1 for o in outs])


def test_the_device_path_resamples_a_group_in_one_batched_call_equal_to_each_element_through_it():
    """What a CUDA batch runs (``resample_layers_batch``, the batched torch path), here on CPU tensors:
    element b equals that element alone through the torch path bit for bit, and the CPU kernel
    within float32 rounding."""
    from domainaug.core.kernels.resample import resample_layers
    elements = _pending(_elements(3, with_valid=True))
    alone = []
    for s in elements:
        specs = [s.layer_info(n).spec() for n in s.layer_names()]
        alone.append(resample_layers(specs, s.pending, backend="torch", count=False))
    cpu = [s.materialize() for s in _pending(_elements(3, with_valid=True))]
    out = materialize_batch(elements, backend="torch")
    for one, through_torch, kernel in zip(out, alone, cpu):
        for name, expected in zip(one.layer_names(), through_torch):
            assert torch.equal(one[name], expected), name
        torch.testing.assert_close(one["image"], kernel["image"], atol=1e-4 * float(kernel["image"].abs().max()),
                                   rtol=0)
        assert (one["label"] != kernel["label"]).float().mean() <= 1e-3


def test_the_device_path_takes_value_stages_quietly():
    """A dihedral flip with spectral jitter fused into it, through the batched device path: the value
    stages (read-only numpy broadcasts) reach torch without a warning, and equal the CPU copy."""
    import warnings
    tiles = [rs.set_bands(make_raster(seed=k), ["B02", "B03", "B04", "B08"], sensor="sentinel2") for k in range(3)]
    pipeline = da.Compose([rs.RotationPolicy("dihedral"), rs.SpectralJitter(gain=(0.9, 1.1), bias=(-0.01, 0.01))])
    pending = [pipeline.lazy(t, pipeline.sample_params(t, generator_for(1, 0, k))) for k, t in enumerate(tiles)]
    assert all(p.pending is not None and p.pending.values for p in pending)
    cpu = [pipeline(t, generator_for(1, 0, k)) for k, t in enumerate(tiles)]
    from dataclasses import replace

    from domainaug.core.kernels.resample import resample_layers
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in pending:                 # alone through the torch path: the stages as the sample holds them
            specs = [replace(p.layer_info(n).spec(), gain=p.pending.values[n][0], bias=p.pending.values[n][1])
                     if n in p.pending.values else p.layer_info(n).spec() for n in p.layer_names()]
            resample_layers(specs, p.pending, backend="torch", count=False)
        out = materialize_batch(pending, backend="torch")
    for one, ref in zip(out, cpu):
        torch.testing.assert_close(one["image"], ref["image"], atol=1e-5, rtol=1e-5)
        assert torch.equal(one["label"], ref["label"])
