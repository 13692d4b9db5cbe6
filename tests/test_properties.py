"""Properties over random inputs (hypothesis): world coordinates of kept voxels, no new labels."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import domainaug as da

SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(shape=st.tuples(st.integers(3, 9), st.integers(3, 9), st.integers(3, 9)),
       ops=st.lists(st.tuples(st.sampled_from(["crop", "pad", "flip", "rot"]), st.integers(1, 12)), max_size=4),
       seed=st.integers(0, 1000))
def test_regrids_and_exact_warps_keep_every_voxel_at_its_world_position(shape, ops, seed):
    """An image holding each voxel's world x-coordinate: after crops, pads, flips and quarter turns,
    every valid voxel still holds the x-coordinate of where it sits in the world (mirrored or rotated
    about the grid centre for the warps, whose maps are pushed through the points)."""
    space = da.Space.from_spacing(shape, (1.0, 1.5, 2.0), origin=(3.0, -2.0, 7.0))
    index = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = space.index_to_world(index)
    sample = da.Sample.from_numpy(np.zeros(shape), valid=np.ones(shape, bool), affine=space.affine,
                                  points={"all": world}, fill=-1.0)
    sample = sample.with_layers(image=da.Layer(torch.from_numpy(np.arange(len(index), dtype=np.float64)
                                                                .reshape((1,) + shape)), da.Role.INTENSITY, -1.0))
    transforms = []
    for kind, n in ops:
        if kind == "crop":
            transforms.append(da.Crop(1))            # resized below to fit
        elif kind == "pad":
            transforms.append(da.Pad(n))
        elif kind == "flip":
            transforms.append(da.Flip(axes=(n % 3,)))
        else:
            transforms.append(da.Rot90(axes=(0, 1) if n % 2 else (1, 2), k=n % 4))
    out = sample
    for t in transforms:
        if isinstance(t, da.Crop):
            t = da.Crop(tuple(max(1, s - 2) for s in out.space.shape))
        out = t(out, torch.Generator().manual_seed(seed))
    ids = out["image"][0].numpy()
    valid = out["valid"][0].numpy()
    assert (ids[~valid] == -1).all()
    where = np.argwhere(valid)
    # each kept voxel id must sit exactly where its pushed point landed
    pushed = out.points["all"].numpy()
    landed = out.space.world_to_index(pushed[ids[valid].astype(int)])
    np.testing.assert_allclose(landed, where, atol=1e-6)


@SETTINGS
@given(n_labels=st.integers(2, 40), seed=st.integers(0, 10_000),
       degrees=st.floats(-45, 45), scale=st.floats(0.7, 1.3))
def test_random_warps_never_invent_labels(n_labels, seed, degrees, scale):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_labels, (6, 7, 5)).repeat(2, 0).repeat(2, 1).repeat(2, 2)
    sample = da.Sample.from_numpy(rng.random(label.shape).astype(np.float32), label=label.astype(np.int32),
                                  spacing=(1.0, 0.8, 2.0))
    out = da.Compose([da.Affine(degrees=degrees, scales=scale), da.Elastic(max_displacement=2.0)])(
        sample, torch.Generator().manual_seed(seed))
    assert set(out["label"].unique().tolist()) <= set(np.unique(label).tolist()) | {0}
