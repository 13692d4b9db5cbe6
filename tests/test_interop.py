"""Interop with MONAI dicts and TorchIO subjects: data and affine pass through, both ways."""

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug.io import interop

monai = pytest.importorskip("monai")
tio = pytest.importorskip("torchio")


@pytest.fixture
def t1(fixtures):
    return dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz", label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")


def test_monai_round_trip_and_a_monai_transform(t1):
    d = interop.to_monai(t1)
    assert isinstance(d["image"], monai.data.MetaTensor)
    np.testing.assert_allclose(d["image"].affine.numpy(), t1.space.affine)
    back = interop.from_monai(d)
    assert back.space == t1.space and torch.equal(back["image"], t1["image"]) and torch.equal(back["label"], t1["label"])
    flipped = monai.transforms.Flipd(keys=["image", "label"], spatial_axis=0)(d)
    again = interop.from_monai(flipped)
    assert torch.equal(again["image"], torch.flip(t1["image"], [1]))
    ours = da.Flip(axes=(0,))(t1, torch.Generator().manual_seed(0))
    assert torch.equal(ours["image"], again["image"])                   # the same content, as a warp in world space


def test_torchio_round_trip_keeps_the_affine(t1):
    subject = interop.to_torchio(t1)
    assert isinstance(subject["image"], tio.ScalarImage) and isinstance(subject["label"], tio.LabelMap)
    np.testing.assert_allclose(subject["image"].affine, t1.space.affine)
    back = interop.from_torchio(subject)
    assert back.space.same_grid(t1.space, tolerance=1e-9)
    assert torch.equal(back["image"], t1["image"]) and torch.equal(back["label"], t1["label"])
    cropped = tio.Crop((2, 0, 3, 0, 1, 0))(subject)                    # TorchIO regrid: affine moves
    ours = interop.from_torchio(cropped)
    np.testing.assert_allclose(ours.space.index_to_world([0, 0, 0]), t1.space.index_to_world([2, 3, 1]), atol=1e-5)


def test_mismatched_label_grid_is_an_error(t1):
    d = interop.to_monai(t1)
    d["label"] = d["label"][:, :-1]
    with pytest.raises(da.SpaceMismatchError, match="'label'"):
        interop.from_monai(d)
