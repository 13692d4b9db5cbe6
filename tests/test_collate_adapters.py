"""Nothing dropped on the way out: collate/BatchAugment keep every layer, point set and grid;
the MONAI and TorchIO adapters move every image key and keep their metadata and inversion."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import remote_sensing as rs
from domainaug.core.sample import Layer, Role
from domainaug.testing import make_raster, make_volume
from domainaug.training import BatchAugment, MixUp, collate


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


# --- MONAI -----------------------------------------------------------------------------------------

monai = pytest.importorskip("monai")
tio = pytest.importorskip("torchio")


def _volume(shape=(20, 22, 18)):
    return make_volume(shape=shape)


def _monai_dict(sample, mask_shape=None):
    from monai.data import MetaTensor
    affine = torch.as_tensor(np.array(sample.space.affine), dtype=torch.float64)
    mask = (sample["label"] > 0).to(torch.uint8) if mask_shape is None else \
        torch.zeros((1,) + mask_shape, dtype=torch.uint8)
    meta = {"filename_or_obj": "/data/sub-01_T1w.nii.gz", "custom": 7}
    return {"image": MetaTensor(sample["image"].clone(), affine=affine.clone(), meta=dict(meta)),
            "label": MetaTensor(sample["label"].float(), affine=affine.clone(), meta=dict(meta)),   # LoadImaged floats
            "mask": MetaTensor(mask, affine=affine.clone(), meta=dict(meta)),
            "target": torch.tensor([1])}


CROP = da.Compose([da.Flip(axes=(0,), p=0.5), da.Affine(degrees=(-10, 10)), da.Crop((12, 12, 12), mode="center")])


def test_monai_transform_moves_every_image_key_and_keeps_metadata():
    from domainaug.training.adapters import MonaiTransform
    sample = _volume()
    d = _monai_dict(sample)
    out = MonaiTransform(CROP)(d)
    for key in ("image", "label", "mask"):
        assert out[key].shape == (1, 12, 12, 12), key                  # the mask moves too, not left 20x22x18
        assert out[key].meta["filename_or_obj"] == "/data/sub-01_T1w.nii.gz" and out[key].meta["custom"] == 7
        assert isinstance(out[key], monai.data.MetaTensor) and len(out[key].applied_operations) == 1
    assert out["label"].dtype == torch.float32 and out["mask"].dtype == torch.uint8     # input dtypes kept
    assert set(out["label"].unique().tolist()) <= set(sample["label"].unique().tolist())
    assert set(out["mask"].unique().tolist()) <= {0, 1}
    assert torch.equal(out["mask"].as_tensor().bool(), out["label"].as_tensor() > 0)  # moved together, as labels
    records = json.loads(out["domainaug_records"])
    again = da.replay(sample, records)
    np.testing.assert_allclose(out["image"].affine.numpy(), again.space.affine, atol=1e-9)
    torch.testing.assert_close(out["image"].as_tensor(), again["image"])
    assert torch.equal(out["target"], d["target"]) and d["image"].shape == (1, 20, 22, 18)   # input untouched


def test_monai_transform_refuses_a_key_on_another_grid():
    from domainaug.training.adapters import MonaiTransform
    d = _monai_dict(_volume(), mask_shape=(20, 22, 17))
    with pytest.raises(da.SpaceMismatchError, match="'mask'"):
        MonaiTransform(CROP)(d)
    out = MonaiTransform(CROP, keys=["image", "label"])(d)              # explicit keys, as in MONAI
    assert out["label"].shape == (1, 12, 12, 12) and out["mask"].shape == (1, 20, 22, 17)
    with pytest.raises(da.ParameterError, match="keys="):
        MonaiTransform(CROP, keys=["image", "seg"])(d)
    assert MonaiTransform(CROP, keys=["image", "seg"], allow_missing_keys=True)(d)["image"].shape == (1, 12, 12, 12)


def test_monai_invertd_maps_a_prediction_back_and_saveimaged_writes_it(tmp_path):
    from monai.transforms import Compose, Invertd, SaveImaged

    from domainaug.training.adapters import MonaiTransform
    sample = _volume()
    pipeline = da.Compose([da.Flip(axes=(0,), p=1.0), da.Affine(degrees=(-10, 10)),
                           da.Crop((14, 14, 14), mode="center")])
    forward = Compose([MonaiTransform(pipeline)])
    out = forward(_monai_dict(sample))
    out["pred"] = out["label"].clone()                                  # an equivariant 'network'
    inverted = Invertd(keys="pred", transform=forward, orig_keys="label", nearest_interp=True)(out)
    pred = inverted["pred"]
    assert pred.shape == (1, 20, 22, 18) and not pred.applied_operations
    np.testing.assert_allclose(pred.affine.numpy(), sample.space.affine, atol=1e-9)
    assert set(pred.unique().tolist()) <= set(sample["label"].unique().tolist())
    seen = pred.as_tensor() > 0
    assert seen.any() and (pred.as_tensor()[seen] == sample["label"].float()[seen]).float().mean() > 0.9
    image_back = forward.inverse(out)["image"]                          # Compose.inverse too
    assert image_back.shape == (1, 20, 22, 18)
    SaveImaged(keys="pred", output_dir=str(tmp_path), output_postfix="inv", separate_folder=False,
               print_log=False)(inverted)
    import nibabel as nib
    written = nib.load(str(tmp_path / "sub-01_T1w_inv.nii.gz"))
    assert written.shape[:3] == (20, 22, 18)
    np.testing.assert_allclose(written.affine, sample.space.affine, atol=1e-5)


# --- TorchIO ---------------------------------------------------------------------------------------

def _subject(sample, mask_shape=None):
    affine = np.array(sample.space.affine)
    mask = (sample["label"] > 0).to(torch.uint8) if mask_shape is None else \
        torch.zeros((1,) + mask_shape, dtype=torch.uint8)
    return tio.Subject(image=tio.ScalarImage(tensor=sample["image"].clone(), affine=affine),
                       t2=tio.ScalarImage(tensor=sample["image"].clone() * 2, affine=affine),
                       label=tio.LabelMap(tensor=sample["label"].clone(), affine=affine),
                       mask=tio.LabelMap(tensor=mask, affine=affine), age=42)


def test_torchio_transform_moves_every_image_and_inverts():
    from domainaug.training.adapters import TorchioTransform
    sample = _volume()
    torch.manual_seed(0)
    out = TorchioTransform(CROP)(_subject(sample))
    for key in ("image", "t2", "label", "mask"):
        assert out[key].shape == (1, 12, 12, 12), key
        np.testing.assert_allclose(out[key].affine, out["image"].affine)
    torch.testing.assert_close(out["t2"].data, out["image"].data * 2)
    assert torch.equal(out["mask"].data.bool(), out["label"].data > 0) and out["age"] == 42
    assert out["mask"].data.dtype == torch.uint8
    replayed = out.get_composed_history()(_subject(sample))            # the history replays the draw
    torch.testing.assert_close(replayed["image"].data, out["image"].data)
    back = out.apply_inverse_transform()
    assert back["label"].shape == (1, 20, 22, 18)
    np.testing.assert_allclose(back["label"].affine, sample.space.affine, atol=1e-9)
    seen = back["mask"].data > 0
    assert seen.any() and torch.equal(back["label"].data[seen] > 0, torch.ones(int(seen.sum()), dtype=torch.bool))


def test_torchio_transform_refuses_an_image_on_another_grid():
    from domainaug.training.adapters import TorchioTransform
    with pytest.raises(da.SpaceMismatchError, match="'mask'"):
        TorchioTransform(CROP)(_subject(_volume(), mask_shape=(20, 22, 17)))


def test_adapters_import_monai_and_torchio_only_when_used():
    code = ("import sys, domainaug, domainaug.training, domainaug.training.adapters as a, domainaug.io.interop\n"
            "assert 'monai' not in sys.modules and 'torchio' not in sys.modules\n"
            "a.TorchioTransform\nassert 'torchio' in sys.modules and 'monai' not in sys.modules\n"
            "a.MonaiTransform\nassert 'monai' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nodata_marked_on_some_samples_survives_collate_mixup_and_batches():
    tiles = []
    for i in range(4):
        s = make_raster(seed=i)
        tiles.append(s.replace(layers={n: layer for n, layer in s.layers.items() if n != "valid"}))
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


def test_numpy_integer_targets_collate_as_class_indices():
    samples = [make_volume() for _ in range(3)]
    for i, s in enumerate(samples):
        s.meta["target"] = np.int64(i)
    target = collate(samples)["target"]
    assert target.dtype == torch.int64 and target.tolist() == [0, 1, 2]
