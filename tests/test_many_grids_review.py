"""Regressions from the review of "many grids" (helper-review branch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from domainaug import BrightnessContrast, Compose, Crop, Flip, Layer, ResampleToMatch, Role, Sample, Space
from domainaug.errors import SampleError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vol(valid: bool = False) -> Sample:
    t1s = Space.from_spacing((16, 16, 16), 1.0, origin=(0, 0, 0))
    fls = Space.from_spacing((10, 10, 10), 3.0, origin=(-6, -6, -6))
    r = np.random.default_rng(0)
    layers = {"t1": Layer(torch.from_numpy(r.uniform(0, 1, (1, 16, 16, 16)).astype(np.float32))),
              "flair": Layer(torch.from_numpy(r.uniform(0, 100, (1, 10, 10, 10)).astype(np.float32)))}
    if valid:
        layers["valid"] = Layer(torch.ones((1, 16, 16, 16), dtype=torch.bool), Role.VALID)
    return Sample(t1s, layers, grids={"flair": fls})


def s2(h: int = 64, w: int = 64) -> Sample:
    x0, y0 = 500000.0, 4200000.0
    s10 = Space((h, w), np.array([[0.0, 10.0, x0 + 5], [-10.0, 0.0, y0 - 5], [0, 0, 1]]), "EPSG:32633")
    s20 = Space((h // 2, w // 2), np.array([[0.0, 20.0, x0 + 10], [-20.0, 0.0, y0 - 10], [0, 0, 1]]), "EPSG:32633")
    r = np.random.default_rng(0)
    return Sample(s10, {"image": Layer(torch.from_numpy(r.uniform(0, 1, (4, h, w)).astype(np.float32)),
                                       channels=("B02", "B03", "B04", "B08")),
                        "image_20": Layer(torch.from_numpy(r.uniform(0, 1, (2, h // 2, w // 2)).astype(np.float32)),
                                          channels=("B05", "B11"))},
                  grids={"image_20": s20},
                  meta={"band_groups": {"image": ["image", "image_20"]}, "sensor": "sentinel2"})


def test_a_value_stage_is_not_fused_for_a_layer_that_another_grid_brings_in():
    bc = BrightnessContrast(brightness=0.3, contrast=0.5, layers=["flair"])
    fused = Compose([ResampleToMatch("t1"), Flip(axes=[0]), bc])(vol(), gen(0))
    step = bc.run(Compose([ResampleToMatch("t1"), Flip(axes=[0])])(vol(), gen(0)),
                  fused.history[-1].params["children"][2])
    torch.testing.assert_close(fused["flair"], step["flair"])
    Compose([ResampleToMatch("t1"), bc])(vol(valid=True), gen(0))          # no shape error from the t1 VALID


def test_random_crops_of_one_size_stack():
    from domainaug.training import collate
    a, b = (Crop(32).run(s2(), {"start": [s, 0]}) for s in (0, 1))
    assert a.space_of("image_20").shape == b.space_of("image_20").shape
    collate([a, b])


def test_a_sample_without_a_grid_valid_layer_is_valid_there_in_a_batch():
    from domainaug.training import collate
    s = s2()
    v = torch.ones((1, 32, 32), dtype=torch.bool)
    v[0, 0, 0] = False
    a = Sample(s.space, {**s.layers, "image_20_valid": Layer(v, Role.VALID)},
               grids={**s.grids, "image_20_valid": s.space_of("image_20")})
    batch = collate([a, s2()])
    assert bool(batch["image_20_valid"][1].all())


def test_the_merged_valid_layer_of_the_reference_grid_is_named_valid():
    s = vol()
    vf = torch.ones((1, 10, 10, 10), dtype=torch.bool)
    vf[0, 5, 5, 5] = False
    a = Sample(s.space, {**s.layers, "flair_valid": Layer(vf, Role.VALID)},
               grids={"flair": s.space_of("flair"), "flair_valid": s.space_of("flair")})
    out = ResampleToMatch("t1")(a, gen(0))
    assert out.layer_names(Role.VALID) == ["valid"] and not bool(out["valid"].all())


def test_a_crop_past_a_grids_field_of_view_marks_it_invalid():
    t1s = Space.from_spacing((32, 32, 32), 1.0, origin=(-15.5, -15.5, -15.5))
    slab = Space.from_spacing((16, 16, 4), 2.0, origin=(-15.0, -15.0, -3.0))
    s = Sample(t1s, {"t1": Layer(torch.rand(1, 32, 32, 32)),
                     "flair": Layer(torch.full((1, 16, 16, 4), 5.0), fill=-1.0)},
               grids={"flair": slab})
    c = Crop((32, 32, 16)).run(s, {"start": [0, 0, 8]})
    v = c.valid_of("flair")
    assert v is not None and bool((c["flair"][c[v].expand_as(c["flair"])] == 5.0).all())
    step = ResampleToMatch("t1")(c, gen(0))
    assert not bool(step["valid"].all())
    assert bool((step["flair"][step["valid"]] == 5.0).all())


def test_cloud_shadow_clouds_every_band_of_a_band_group():
    from domainaug.remote_sensing import CloudShadow
    r = ResampleToMatch("image")(s2(), gen(0))
    o = CloudShadow(coverage=0.5, shadow_shift=0.0)(r, gen(1))
    m = o["occlusion"][0] == 1
    assert int(m.sum()) > 0
    for n in ("image", "image_20"):
        assert float((o[n] - r[n])[:, m].abs().mean()) > 0, n


def test_tissue_contrast_refuses_a_layer_off_the_labels_grid_by_name():
    from domainaug.medical import TissueContrast
    s = vol()
    s = Sample(s.space, {**s.layers, "label": Layer((s["t1"] > 0.5).to(torch.uint8), Role.LABEL)}, grids=s.grids)
    with pytest.raises(SampleError, match="TissueContrast.*flair"):
        TissueContrast(layers=["t1", "flair"])(s, gen(0))
    TissueContrast(layers=["t1"])(s, gen(0))
