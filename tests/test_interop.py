"""Interop with MONAI dicts and TorchIO subjects: data and affine pass through, both ways."""

import json

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
    return dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz",
                    label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")


def test_monai_round_trip_and_a_monai_transform(t1):
    d = interop.to_monai(t1)
    assert isinstance(d["image"], monai.data.MetaTensor)
    np.testing.assert_allclose(d["image"].affine.numpy(), t1.space.affine)
    back = interop.from_monai(d)
    assert back.space == t1.space
    assert torch.equal(back["image"], t1["image"]) and torch.equal(back["label"], t1["label"])
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


def test_pipeline_as_a_monai_dict_transform_in_a_monai_loader(t1):
    from monai.data import DataLoader, Dataset
    from monai.utils import set_determinism

    from domainaug.training.adapters import MonaiTransform
    pipeline = da.Compose([da.Affine(degrees=(-10, 10)), da.Crop((64, 64, 32), mode="center")])
    items = [interop.to_monai(t1) for _ in range(3)]
    transform = monai.transforms.Compose([MonaiTransform(pipeline)])

    def run(workers):
        set_determinism(seed=0)
        loader = DataLoader(Dataset(items, transform), batch_size=3, num_workers=workers)
        return next(iter(loader))

    a, b = run(0), run(2)
    assert a["image"].shape == (3, 1, 64, 64, 32)
    assert set(a["label"].unique().tolist()) <= set(t1["label"].unique().tolist())
    assert torch.equal(a["image"], b["image"])                         # MONAI's worker seeding applies
    assert not torch.equal(a["image"][0], a["image"][1])               # each item gets its own draw
    np.testing.assert_allclose(a["image"].affine[0, :3, :3].numpy(), t1.space.affine[:3, :3], atol=1e-6)
    records = [json.loads(r) for r in a["domainaug_records"]]          # collated as strings, replayable
    again = da.replay(t1, records[1])
    torch.testing.assert_close(again["image"].float(), a["image"][1].as_tensor().float(), atol=1e-4, rtol=0)


def test_pipeline_as_a_torchio_transform(t1):
    from domainaug.training.adapters import TorchioTransform
    subject = interop.to_torchio(t1)
    torch.manual_seed(0)
    out = tio.Compose([TorchioTransform(da.Crop((64, 64, 32), mode="center")),
                       tio.RandomFlip(axes=(0,), p=0.0)])(subject)
    assert out["image"].shape == (1, 64, 64, 32) and out["label"].shape == (1, 64, 64, 32)
    start = out.domainaug_records[0]["params"]["start"]
    np.testing.assert_allclose(out["image"].affine[:3, 3], t1.space.index_to_world(start), atol=1e-5)


def test_from_monai_takes_extra_keys_and_from_torchio_every_image(t1):
    d = interop.to_monai(t1)
    d["mask"] = (d["label"] > 0).to(torch.uint8)
    d["t2"] = d["image"] * 2
    sample = interop.from_monai(d, keys=["mask", "t2"])
    assert sample.layer_info("mask").role is da.Role.LABEL and sample.layer_info("t2").role is da.Role.INTENSITY
    with pytest.raises(da.ParameterError, match="^keys="):
        interop.from_monai(d, keys=["nope"])
    subject = interop.to_torchio(sample)
    back = interop.from_torchio(subject)                                # every image, not only image and label
    assert set(back.layer_names()) == {"image", "label", "mask", "t2"} and torch.equal(back["mask"], sample["mask"])
