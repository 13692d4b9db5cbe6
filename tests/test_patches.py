"""Patch sampling: uniform and label-weighted crops, fused with the warps before them."""

import numpy as np
import torch

import domainaug as da
from domainaug.core.kernels import resample
from domainaug.training import AugmentedDataset, collate


def blob_volume(shape=(40, 40, 40), rare=(slice(30, 34), slice(5, 9), slice(20, 24))):
    label = np.zeros(shape, np.uint8)
    label[10:20, 10:30, 10:30] = 1
    label[rare] = 2                                     # a small structure, rare by volume
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return da.Sample.from_numpy(image, label=label, spacing=(1.0, 1.2, 0.9))


def test_label_ratios_pick_classes_as_asked():
    sample = blob_volume()
    crop = da.Crop(1, mode="label", ratios=[0, 0, 1])
    for seed in range(20):
        assert int(crop(sample, torch.Generator().manual_seed(seed))["label"].item()) == 2
    balanced = da.Crop(1, mode="label", ratios=[1, 1, 1])
    picks = [int(balanced(sample, torch.Generator().manual_seed(s))["label"].item()) for s in range(300)]
    counts = np.bincount(picks, minlength=3) / 300
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.08)   # the rare class as often as the others
    uniform = [int(da.Crop(1)(sample, torch.Generator().manual_seed(s))["label"].item()) for s in range(300)]
    assert np.mean(np.array(uniform) == 2) < 0.02


def test_a_label_crop_after_warps_resamples_only_the_patch_once_and_stays_on_the_label():
    sample = blob_volume()
    pipeline = da.Compose([da.Affine(degrees=(-20, 20), translation=(-3, 3)), da.Elastic(max_displacement=1.0),
                           da.Crop(8, mode="label", ratios=[0, 0, 1])])
    hits = 0
    for seed in range(10):
        before = resample.passes()
        out = pipeline(sample, torch.Generator().manual_seed(seed))
        assert resample.passes() - before == 1                  # one pass, on the 8^3 block only
        assert out.space.shape == (8, 8, 8)
        hits += int((out["label"] == 2).any())
        # the patch is where the replayed full warp puts it: same world grid, same values (up to the
        # coordinate lattice, whose nodes align with each output grid: a few boundary voxels differ)
        full = da.replay(sample, [da.ParamRecord("Compose", da.Compose(pipeline.transforms[:2]).config(),
                                                 {"children": out.history[0].params["children"][:2]})])
        start = np.round(full.space.world_to_index(out.space.index_to_world(np.zeros((1, 3))))[0]).astype(int)
        block = full["label"][(0,) + tuple(slice(s, s + 8) for s in start)]
        assert (block == out["label"][0]).float().mean() > 0.97
    assert hits == 10


def test_dataset_patches_per_item_flatten_into_one_batch():
    sample = blob_volume()
    ds = AugmentedDataset([sample, sample], da.Crop(8, mode="label", ratios=[1, 1, 1]), seed=3, patches=4)
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (8, 1, 8, 8, 8) and len(batch["records"]) == 8
    starts = {tuple(r[-1]["params"]["start"]) for r in batch["records"]}
    assert len(starts) > 1                                      # every patch has its own draw
    again = collate([ds[0], ds[1]])
    assert torch.equal(batch["image"], again["image"])


def test_with_patch_puts_the_crop_after_the_leading_spatial_steps_in_order():
    from domainaug.training import with_patch
    steps = [da.Affine(degrees=5), da.Elastic(max_displacement=1.0), da.Gamma((0.8, 1.2)), da.Flip(axes=(0,))]
    crop = da.Crop(8, mode="label", ratios=[0, 1, 1])
    pipeline = with_patch(da.Compose(steps), crop)
    assert [type(t).__name__ for t in pipeline.transforms] == ["Affine", "Elastic", "Crop", "Gamma", "Flip"]
    before = resample.passes()
    out = pipeline(blob_volume(), torch.Generator().manual_seed(0))
    assert out.space.shape == (8, 8, 8) and resample.passes() - before == 2   # warp+crop once, the flip once
