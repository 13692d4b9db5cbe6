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
