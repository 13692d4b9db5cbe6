"""Nothing dropped on the way out: collate/BatchAugment keep every layer, point set and grid;
the MONAI and TorchIO adapters move every image key and keep their metadata and inversion."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.core.sample import Layer, Role
from domainaug.testing import make_raster, make_volume
from domainaug.training import BatchAugment, collate


def _with_occlusion(sample, value=1):
    mask = torch.full((1,) + sample.space.shape, value, dtype=torch.uint8)
    return sample.with_layers(occlusion=Layer(mask, Role.LABEL, 0))


# --- collate ---------------------------------------------------------------------------------------

def test_collate_keeps_an_optional_layer_with_its_fill_and_a_presence_mask():
    a, b, c = (make_raster(seed=i) for i in range(3))
    batch = collate([_with_occlusion(a), b, _with_occlusion(c, 2)])
    assert batch["occlusion"].shape == (3, 1) + a.space.shape
    assert batch["present"]["occlusion"].tolist() == [True, False, True]
    assert torch.all(batch["occlusion"][1] == 0)                       # the layer's fill
    assert torch.all(batch["occlusion"][2] == 2)
    assert batch["present"]["image"].all() and batch["present"]["valid"].all()


def test_collate_keeps_points_and_each_samples_grid_and_crs():
    a = make_raster(seed=0)
    b = make_raster(seed=1)
    shifted = b.space.affine.copy()
    shifted[:2, -1] += 100.0
    b = b.replace(space=da.Space(b.space.shape, shifted, b.space.crs),
                  points={"trees": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)})
    batch = collate([a, b])
    assert batch["affine"].dtype == torch.float64 and batch["affine"].shape == (2, 3, 3)
    np.testing.assert_array_equal(batch["affine"][1].numpy(), shifted)
    assert batch["crs"] == [a.space.crs, b.space.crs] and a.space.crs is not None
    assert set(batch["points"][0]) == set(a.points) and torch.equal(batch["points"][0]["p"], a.points["p"])
    assert set(batch["points"][1]) == {"trees"} and torch.equal(batch["points"][1]["trees"], b.points["trees"])
    assert set(batch) >= {"image", "label", "valid", "records"}        # the old keys are all there


def test_collate_refuses_a_layer_named_like_a_batch_key_and_mixed_roles():
    a = make_volume(shape=(4, 5, 6))
    bad = a.with_layers(points=Layer(torch.zeros((1, 4, 5, 6)), Role.INTENSITY))
    with pytest.raises(da.ParameterError, match="'points'"):
        collate([bad])
    other = a.with_layers(occlusion=Layer(torch.zeros((1, 4, 5, 6)), Role.INTENSITY))
    with pytest.raises(da.ParameterError, match="one role"):
        collate([_with_occlusion(a), other])


def test_batch_augment_stacks_like_collate():
    sample = make_volume(shape=(8, 9, 10))
    pipeline = da.Compose([da.Flip(axes=(0,), p=0.5), da.Crop((6, 6, 6), mode="center")])
    images = torch.stack([sample["image"]] * 2)
    out = BatchAugment(pipeline, seed=1)(images, space=sample.space)
    assert out["affine"].shape == (2, 4, 4) and out["crs"] == [None, None]
    np.testing.assert_allclose(out["affine"][0].numpy(), out["spaces"][0].affine)
    assert out["points"] == [{}, {}] and out["present"]["image"].all()
