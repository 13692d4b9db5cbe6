"""RandAugment / TrivialAugment: ops from the set, magnitude mapping, replay."""

import torch

import domainaug as da
from domainaug.policy import OP_SETS
from domainaug.testing import make_volume


def test_randaugment_picks_from_its_set_and_maps_the_magnitude():
    sample = make_volume()
    seen = set()
    for seed in range(40):
        out = da.RandAugment(n=2, magnitude=10, ops="generic")(sample, torch.Generator().manual_seed(seed))
        params = out.history[-1].params
        seen |= set(params["ops"])
        for name, child in zip(params["ops"], params["children"]):
            if name == "rotate":
                assert all(-30 <= d <= 30 for d in child["degrees"])
    assert seen == set(OP_SETS["generic"])


def test_trivialaugment_records_its_magnitude_and_replays():
    sample = make_volume()
    out = da.TrivialAugment(ops="medical")(sample, torch.Generator().manual_seed(3))
    params = out.history[-1].params
    assert params["op"] in OP_SETS["medical"] and 0 <= params["magnitude"] <= 10
    again = da.replay(sample, [r.to_dict() for r in out.history])
    assert torch.equal(again["image"], out["image"])


def test_vision_ops_join_the_raster_sets_with_their_magnitude_map():
    from domainaug.policy import OPS
    from domainaug.testing import make_raster
    assert {"jpeg", "resized_crop"} <= set(OP_SETS["remote_sensing"]) and not {"color", "hsv"} & set(
        OP_SETS["remote_sensing"])
    assert set(OP_SETS["rgb"]) == set(OP_SETS["remote_sensing"]) | {"color", "hsv"}
    assert not {"jpeg", "resized_crop", "color", "hsv"} & set(OP_SETS["generic"])     # 2D only: generic serves 3D
    sample = make_raster((30, 24))                       # bands B1..B4 of landsat7: blue, green, red, nir
    for name in ("jpeg", "resized_crop", "color", "hsv"):
        zero = OPS[name](0.0, sample.space)
        strong = OPS[name](10.0, sample.space)
        out = strong(sample, torch.Generator().manual_seed(1))
        assert out.space.shape == sample.space.shape                    # sizes kept (crop resized back)
        if name != "jpeg":                                              # a codec is lossy even at quality 100
            assert torch.equal(zero(sample, torch.Generator().manual_seed(1))["image"], sample["image"]), name
    assert OPS["jpeg"](10.0, sample.space).quality.low == 10.0
    seen = set()
    for seed in range(30):
        out = da.RandAugment(n=2, magnitude=6, ops="rgb")(sample, torch.Generator().manual_seed(seed))
        seen |= set(out.history[-1].params["ops"])
        again = da.replay(sample, [r.to_dict() for r in out.history])
        assert torch.equal(again["image"], out["image"])
    assert {"color", "hsv", "jpeg", "resized_crop"} <= seen
