"""Training data path: worker-independent augmentation, epochs, collate."""

import json

import pytest
import torch
from torch.utils.data import DataLoader

import domainaug as da
from domainaug.testing import make_volume
from domainaug.training import AugmentedDataset, collate


def _dataset(seed=0):
    items = [make_volume(seed=k) for k in range(6)]
    pipeline = da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic(), da.GaussianNoise((0.0, 0.1))])
    return AugmentedDataset(items, pipeline, seed=seed)


def _epoch(ds, workers, epoch=0):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)
    return list(loader)


def test_batches_do_not_depend_on_the_number_of_workers():
    ds = _dataset()
    ref = _epoch(ds, 0)
    for workers in (1, 2):
        other = _epoch(ds, workers)
        for a, b in zip(ref, other):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
            assert json.dumps(a["records"]) == json.dumps(b["records"])


def test_no_two_samples_share_a_draw_and_epochs_differ():
    ds = _dataset()
    e0, e1 = _epoch(ds, 2, 0), _epoch(ds, 2, 1)
    draws = [json.dumps(r[-1]["params"]) for batch in e0 + e1 for r in batch["records"]]
    assert len(set(draws)) == len(draws) == 12
    assert not torch.equal(e0[0]["image"], e1[0]["image"])


def test_a_batch_replays_from_its_records():
    ds = _dataset(seed=5)
    batch = _epoch(ds, 0)[1]
    again = da.replay(ds.load(2), batch["records"][0])
    assert torch.equal(again["image"], batch["image"][0])


def test_paths_and_pairs_load(fixtures):
    pipeline = da.Flip(axes=(0,))
    ds = AugmentedDataset([(fixtures / "KmeansTest_T1UCharRaw.nii.gz",
                            fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"),
                           str(fixtures / "KmeansTest_T1UCharRaw.nii.gz")], pipeline)
    assert ds[0]["label"].shape == ds[0]["image"].shape and "label" not in ds[1].layer_names()


def test_collate_names_mismatched_shapes_and_bad_arguments():
    a, b = make_volume(shape=(8, 9, 10)), make_volume(shape=(8, 9, 11))
    with pytest.raises(da.ParameterError, match="common size"):
        collate([a, b])
    with pytest.raises(da.ParameterError, match="^pipeline="):
        AugmentedDataset([a], pipeline=lambda s: s)
    with pytest.raises(da.ParameterError, match="^epoch="):
        AugmentedDataset([a], da.Flip()).set_epoch(-1)


def test_kernels_launched_from_many_threads_match_serial_results():
    """Parallel kernels from concurrent threads (Dask's local workers do this) are serialised safely."""
    from concurrent.futures import ThreadPoolExecutor
    samples = [make_volume(seed=k) for k in range(8)]
    t = da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic(), da.Flip(axes=(1,)), da.Rot90(axes=(0, 1))])
    serial = [t(s, da.generator_for(1, 0, k))["image"] for k, s in enumerate(samples)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda ks: t(ks[1], da.generator_for(1, 0, ks[0]))["image"], enumerate(samples)))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded))


def test_inference_keeps_only_the_deterministic_steps(fixtures):
    from domainaug import medical as md
    brain = md.preset("brain-mri").inference()
    assert [type(t).__name__ for t in brain.transforms] == ["Reorient"]
    ct = md.preset("ct-body").inference()
    assert [type(t).__name__ for t in ct.transforms] == ["Reorient", "CTWindow"]
    assert ct.transforms[1].config()["level_shift"] == 0.0 and ct.transforms[1].config()["width_scale"] == 1.0
    t1 = da.io.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    a = ct(t1, torch.Generator().manual_seed(1))
    b = ct(t1, torch.Generator().manual_seed(2))
    assert torch.equal(a["image"], b["image"])                         # no randomness left
    assert da.Compose([da.Affine(degrees=10)], p=0.5).inference() is None


def test_a_failing_item_names_its_index_and_path_even_from_a_worker(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    ds = AugmentedDataset([make_volume(), str(broken)], da.Flip(axes=(0,)))
    with pytest.raises(da.errors.SampleError, match=r"item 1 \('.*broken\.nii\.gz'\)") as info:
        ds[1]
    assert isinstance(info.value.__cause__, da.errors.DomainaugError)
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=collate)
    with pytest.raises(da.errors.SampleError, match=r"item 1 .*broken\.nii\.gz"):
        list(loader)
