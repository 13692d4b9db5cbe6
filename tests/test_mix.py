"""MixUp and CutMix: segmentation and classification targets, 3D boxes, nodata, replay."""

import json

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug.testing import make_raster, make_volume
from domainaug.training import AugmentedDataset, CutMix, MixUp, mixing_collate


def batch(n=4, **kw):
    out = []
    for i in range(n):
        s = make_volume(**kw)
        s = s.with_layers(image=da.Layer(s["image"] + 10.0 * i, da.Role.INTENSITY))
        s.meta["target"] = i % 3
        out.append(s)
    return out


def test_mixup_is_a_convex_combination_with_soft_targets():
    samples = batch()
    outs = MixUp(alpha=0.4, num_classes=8)(samples, torch.Generator().manual_seed(0))
    for out, s in zip(outs, samples):
        p = out.history[-1].params
        lam, b = p["lam"], samples[p["partner"]]
        torch.testing.assert_close(out["image"], (lam * s["image"].double() + (1 - lam) * b["image"].double()).float())
        soft = out["label"]
        assert soft.shape == (8,) + s.space.shape and soft.dtype == torch.float32
        torch.testing.assert_close(soft.sum(0), torch.ones(s.space.shape))
        assert out.meta["target"][s.meta["target"]] >= lam - 1e-9
        assert sum(out.meta["target"]) == pytest.approx(1.0)


def test_cutmix_pastes_one_3d_box_in_image_and_label():
    samples = batch()
    outs = CutMix(alpha=1.0, num_classes=3)(samples, torch.Generator().manual_seed(3))
    for out, s in zip(outs, samples):
        p = out.history[-1].params
        b = samples[p["partner"]]
        box = (slice(None),) + tuple(slice(a, a + n) for a, n in zip(p["start"], p["size"]))
        assert len(p["size"]) == 3
        for name in ("image", "label"):
            assert torch.equal(out[name][box], b[name][box])
            rest = torch.ones_like(out[name], dtype=torch.bool)
            rest[box] = False
            assert torch.equal(out[name][rest], s[name][rest])
        assert out["label"].dtype == s["label"].dtype                  # labels stay hard
        assert p["lam"] == pytest.approx(1 - np.prod(p["size"]) / np.prod(s.space.shape))
        assert out.meta["target"][s.meta["target"]] >= p["lam"] - 1e-9


def test_cutmix_on_rasters_respects_nodata_in_the_target_weight():
    samples = [make_raster(seed=i) for i in range(3)]
    for i, s in enumerate(samples):
        s.meta["target"] = [1.0 if c == i else 0.0 for c in range(3)]
    outs = CutMix(alpha=1.0)(samples, torch.Generator().manual_seed(1))
    for out, _sample in zip(outs, samples):
        p = out.history[-1].params
        b = samples[p["partner"]]
        valid = out["valid"][0]
        box = tuple(slice(a, a + n) for a, n in zip(p["start"], p["size"]))
        assert torch.equal(valid[box], b["valid"][0][box])
        inside = torch.zeros_like(valid)
        inside[box] = True
        expected = float((valid & ~inside).sum()) / float(valid.sum())
        assert p["lam"] == pytest.approx(expected)
        # nodata never carries values: invalid pixels hold the fill
        assert torch.all(out["image"][:, ~valid] == out.layer_info("image").fill)


def test_mixup_keeps_only_pixels_valid_in_both():
    samples = [make_raster(seed=i) for i in range(2)]
    samples[1] = samples[1].with_layers(valid=da.Layer(samples[1]["valid"].roll(2, -1), da.Role.VALID))
    k = int(max(s["label"].max() for s in samples)) + 1
    outs = MixUp(alpha=1.0, num_classes=k)(samples, torch.Generator().manual_seed(0))
    for out, s in zip(outs, samples):
        b = samples[out.history[-1].params["partner"]]
        assert torch.equal(out["valid"], s["valid"] & b["valid"])
        assert torch.all(out["image"][:, ~out["valid"][0]] == out.layer_info("image").fill)


def test_replay_from_json_records_and_same_seed():
    samples = batch()
    for mix in (MixUp(0.4, num_classes=8), CutMix(1.0, num_classes=3)):
        a = mix(samples, torch.Generator().manual_seed(5))
        b = mix(samples, torch.Generator().manual_seed(5))
        params = [json.loads(json.dumps(o.history[-1].to_dict()))["params"] for o in a]
        again = mix.replay(samples, params)
        for x, y, z in zip(a, b, again):
            assert torch.equal(x["image"], y["image"]) and torch.equal(x["image"], z["image"])
            assert x.meta["target"] == z.meta["target"]


def test_bad_batches_are_named():
    a, b = make_volume(), make_volume(shape=(10, 10, 10))
    with pytest.raises(da.SpaceMismatchError, match="one grid shape"):
        MixUp()([a, b])
    flipped = make_volume(direction=np.diag([-1.0, 1.0, 1.0]))          # same shape, mirrored orientation
    with pytest.raises(da.SpaceMismatchError, match="one grid shape and orientation"):
        CutMix()([a, flipped])
    with pytest.raises(da.ParameterError, match="^num_classes="):
        MixUp()([a, make_volume()])
    with pytest.raises(da.ParameterError, match="^alpha="):
        MixUp(alpha=0)


def test_mixing_collate_in_a_dataloader_does_not_depend_on_workers():
    samples = batch(6, shape=(8, 8, 8))
    ds = AugmentedDataset(samples, da.Flip(axes=(0,), p=0.5), seed=1)
    fn = mixing_collate(CutMix(num_classes=3), seed=2)

    def run(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=fn)
        return list(loader)

    a, b = run(0), run(2)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["target"], y["target"])
    assert a[0]["target"].shape == (3, 3) and a[0]["target"].dtype == torch.float32


def test_layers_missing_from_some_samples_are_dropped_like_collate_does():
    samples = batch(2)
    extra = da.Layer(torch.zeros_like(samples[0]["label"]), da.Role.LABEL)
    samples[0] = samples[0].with_layers(occlusion=extra)
    outs = CutMix(num_classes=3)(samples, torch.Generator().manual_seed(0))
    assert all(o.layer_names() == ["image", "label"] for o in outs)


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
