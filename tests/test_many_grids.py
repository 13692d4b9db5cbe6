"""Many grids: layers of one sample on grids of their own (a 2 mm FLAIR beside a 1 mm T1; 20 m bands
beside 10 m ones), one world map for all of them, one resampling pass.

Issue "Many layers, many grids, many dates", item 2, its two named tests (the sphere on a 1 mm and
a 2 mm grid; the 20 m band fused onto the 10 m grid against resampling first), and its bad input
(other CRS, no overlap, uncovered voxels invalid).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from domainaug import (
    Affine,
    Compose,
    Crop,
    Elastic,
    Flip,
    Gamma,
    GaussianBlur,
    Layer,
    Pad,
    ParamRecord,
    Resample,
    ResampleToMatch,
    Role,
    Rot90,
    Sample,
    Space,
    replay,
)
from domainaug.core.kernels.resample import passes
from domainaug.core.maps import pull_back_points
from domainaug.core.transform import trace
from domainaug.errors import ParameterError, SampleError, SpaceMismatchError
from domainaug.medical import Spike
from domainaug.remote_sensing import CloudShadow
from domainaug.testing import assert_samples_equal

CENTRE = np.array([3.3, -2.1, 4.7])          # mm, the sphere's world centre
RADIUS = 8.0


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grid(shape, spacing, origin, crs=None) -> Space:
    return Space.from_spacing(shape, spacing, origin=origin, crs=crs)


def sphere_on(space: Space) -> tuple[torch.Tensor, torch.Tensor]:
    """A soft sphere (intensity) and its mask (label) sampled on ``space``'s voxel centres."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in space.shape], indexing="ij"), -1).reshape(-1, space.ndim)
    r = np.linalg.norm(space.index_to_world(idx) - CENTRE, axis=1).reshape(space.shape)
    soft = 1.0 / (1.0 + np.exp((r - RADIUS) / 1.0))
    return torch.from_numpy(soft[None].astype(np.float32)), torch.from_numpy((r <= RADIUS)[None].astype(np.uint8))


def two_grid_volume() -> Sample:
    """t1 (+ label) on a 1 mm grid, flair (+ flair_label) on a 2 mm grid whose lattice is shifted."""
    t1_space = grid((64, 64, 64), 1.0, (-31.5, -31.5, -31.5))
    flair_space = grid((33, 33, 33), 2.0, (-32.3, -31.7, -32.9))
    t1, label = sphere_on(t1_space)
    flair, flair_label = sphere_on(flair_space)
    layers = {"t1": Layer(t1), "label": Layer(label, Role.LABEL),
              "flair": Layer(flair), "flair_label": Layer(flair_label, Role.LABEL)}
    return Sample(t1_space, layers, points={"centre": CENTRE[None]},
                  grids={"flair": flair_space, "flair_label": flair_space})


def centroid(sample: Sample, name: str) -> np.ndarray:
    w = sample[name][0].double().numpy()
    space = sample.space_of(name)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in space.shape], indexing="ij"), -1).reshape(-1, space.ndim)
    return (space.index_to_world(idx) * w.reshape(-1, 1)).sum(0) / w.sum()


def test_sphere_on_a_1mm_and_a_2mm_grid_keeps_one_world_centre_after_affine_elastic_crop():
    sample = two_grid_volume()
    before = passes()
    pipeline = Compose([Affine(degrees=(-20, 20), scales=(0.9, 1.1), translation=(-4, 4)),
                        Elastic(spacing=16.0, max_displacement=3.0), Crop(48, mode="center")])
    out = pipeline(sample, gen(3))
    assert passes() - before == 1                                   # every grid in the one pass
    assert out.space.shape == (48, 48, 48) and out.space_of("flair").shape[0] in (24, 25)
    assert np.allclose(out.space_of("flair").spacing, 2.0)
    for a, b in (("t1", "flair"), ("label", "flair_label")):
        gap = np.linalg.norm(centroid(out, a) - centroid(out, b))
        assert gap < 1.0, (a, b, gap)                               # within half the coarser voxel
    moved = np.linalg.norm(centroid(out, "t1") - CENTRE)
    assert moved > 1.0                                              # the sphere did move
    assert np.linalg.norm(centroid(out, "t1") - out.points["centre"][0].numpy()) < 1.0   # and its point with it


def test_the_sphere_test_fails_when_a_grid_ignores_the_world_map():
    """The property above can fail: the flair on its grid without the map is far from the warped t1."""
    sample = two_grid_volume()
    out = Compose([Affine(translation=6.0), Crop(48, mode="center")])(sample, gen(0))
    still = Crop(24, mode="center")(Sample(sample.space_of("flair"), {"flair": sample.layer_info("flair")}), gen(0))
    assert np.linalg.norm(centroid(out, "t1") - centroid(still, "flair")) > 5.0
    assert np.linalg.norm(centroid(out, "t1") - centroid(out, "flair")) < 1.0


def sentinel2(h: int = 128, w: int = 128) -> Sample:
    """4 bands at 10 m and 6 at 20 m over one extent, smooth fields of the world position."""
    x0, y0 = 500000.0, 4200000.0
    s10 = Space((h, w), np.array([[0.0, 10.0, x0 + 5], [-10.0, 0.0, y0 - 5], [0, 0, 1]]), "EPSG:32633")
    s20 = Space((h // 2, w // 2), np.array([[0.0, 20.0, x0 + 10], [-20.0, 0.0, y0 - 10], [0, 0, 1]]), "EPSG:32633")

    def bands(space: Space, n: int, seed: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([field(space, seed + b) for b in range(n)]).astype(np.float32))

    layers = {"b10": Layer(bands(s10, 4, 0), channels=("B02", "B03", "B04", "B08")),
              "b20": Layer(bands(s20, 6, 10), channels=("B05", "B06", "B07", "B8A", "B11", "B12"))}
    return Sample(s10, layers, grids={"b20": s20})


def field(space: Space, seed: int, stages=()) -> np.ndarray:
    """A smooth reflectance-like field (wavelengths of 400-900 m) at the voxel centres of ``space``
    (pulled back through ``stages`` first: the field an augmented grid should show)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in space.shape], indexing="ij"), -1).reshape(-1, 2)
    x, y = pull_back_points(list(stages), space.index_to_world(idx)).T - np.array([500000.0, 4200000.0])[:, None]
    rng = np.random.default_rng(seed)
    kx, ky = rng.uniform(2 * np.pi / 900, 2 * np.pi / 400, 2)
    return (2000 + 800 * np.sin(kx * x + rng.uniform(0, 6)) * np.cos(ky * y)).reshape(space.shape)


def test_20m_band_fused_onto_the_10m_grid_equals_resampling_first_then_warping():
    sample = sentinel2()
    warp = [Affine(degrees=(-30, 30)), Crop(96)]
    before = passes()
    fused = Compose(warp + [ResampleToMatch("b10")])(sample, gen(5))
    assert passes() - before == 1 and fused.grids == {} and fused["b20"].shape == (6, 96, 96)
    children = fused.history[-1].params["children"]
    before = passes()
    first = ResampleToMatch("b10")(sample, gen(0))
    two = replay(first, [ParamRecord("Compose", Compose(warp).config(), {"children": children[:2]})])
    assert passes() - before == 2
    assert two.space.same_grid(fused.space, 1e-9)
    torch.testing.assert_close(fused["b10"], two["b10"], atol=1e-2, rtol=0)     # the 10 m bands: the same pass
    rng = float(two["b20"].max() - two["b20"].min())
    gap = float((fused["b20"] - two["b20"]).abs().max())
    assert gap < 0.02 * rng, gap                                    # within interpolation tolerance
    # and against the truth at the output pixels (those the map takes well inside the 20 m grid)
    stages = trace(sample.space, fused.history).stages
    truth = torch.from_numpy(np.stack([field(fused.space, 10 + b, stages) for b in range(6)]).astype(np.float32))
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in fused.space.shape], indexing="ij"), -1).reshape(-1, 2)
    src = sample.space_of("b20").world_to_index(pull_back_points(stages, fused.space.index_to_world(idx)))
    inside = torch.from_numpy(np.all((src >= 1) & (src <= 62), axis=1).reshape(fused.space.shape))
    assert int(inside.sum()) > 4000
    err_fused = float((fused["b20"] - truth)[:, inside].abs().max())
    err_two = float((two["b20"] - truth)[:, inside].abs().max())
    assert err_fused < 0.01 * rng and err_fused <= err_two * 1.05, (err_fused, err_two)
    mean_fused = float((fused["b20"] - truth)[:, inside].abs().mean())
    mean_two = float((two["b20"] - truth)[:, inside].abs().mean())
    assert mean_fused < 0.85 * mean_two, (mean_fused, mean_two)     # one interpolation blurs less than two


def test_crop_on_the_reference_is_a_copy_of_the_covering_block_on_a_coarser_grid():
    sample = sentinel2()
    out = Crop(64).run(sample, {"start": [5, 7]})                   # odd 10 m start: half a 20 m pixel
    b20 = out.space_of("b20")
    box10, box20 = out.space.world_box(), b20.world_box()
    assert np.all(box20[0] <= box10[0] + 1e-6) and np.all(box20[1] >= box10[1] - 1e-6)   # covers the block
    assert np.all(box20[1] - box20[0] <= box10[1] - box10[0] + 40 + 1e-6)             # by at most a pixel a side
    start = np.round(sample.space_of("b20").world_to_index(b20.index_to_world(np.zeros((1, 2))))[0]).astype(int)
    h, w = b20.shape
    assert torch.equal(out["b20"], sample["b20"][:, start[0]:start[0] + h, start[1]:start[1] + w])  # no interpolation


def test_replay_from_json_reproduces_every_grid():
    sample = two_grid_volume()
    pipeline = Compose([Affine(degrees=(-10, 10)), Elastic(spacing=16.0, max_displacement=2.0), Crop(40),
                        Gamma((0.7, 1.4), per_layer=True), GaussianBlur(sigma=(0.5, 1.5))])
    out = pipeline(sample, gen(11))
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    again = replay(sample, records)
    assert_samples_equal(out, again)
    assert out.grids.keys() == again.grids.keys() and {"flair", "flair_label"} <= out.grids.keys()
    assert set(out.grids) - {"flair", "flair_label"} <= {"flair_valid"}   # what the crop took from outside its FOV
    assert all(out.grids[n] == again.grids[n] for n in out.grids)


def test_intensity_ops_use_each_layers_own_grid():
    sample = two_grid_volume()
    blur = GaussianBlur(sigma=4.0)                                  # mm: 4 voxels on t1, 2 on flair
    out = blur(sample, gen(0))
    alone = blur(Sample(sample.space_of("flair"), {"flair": sample.layer_info("flair")}), gen(0))
    assert torch.equal(out["flair"], alone["flair"])
    wrong = blur(Sample(sample.space_of("flair").with_grid((33, 33, 33), np.eye(4)),
                        {"flair": sample.layer_info("flair")}), gen(0))
    assert not torch.allclose(out["flair"], wrong["flair"], atol=1e-3)   # 1 mm voxels would blur twice as much


def test_uncovered_voxels_of_a_layer_moved_onto_another_grid_are_invalid():
    t1_space = grid((32, 32, 32), 1.0, (-15.5, -15.5, -15.5))
    slab = grid((16, 16, 4), 2.0, (-15.0, -15.0, -3.0))             # a thick slab: z in [-4, 4] mm
    t1, _ = sphere_on(t1_space)
    flair = torch.full((1, 16, 16, 4), 5.0)
    sample = Sample(t1_space, {"t1": Layer(t1), "flair": Layer(flair, fill=-1.0)}, grids={"flair": slab})
    out = ResampleToMatch("t1")(sample, gen(0))
    assert out.grids == {} and out.valid_name == "valid"
    valid = out["valid"][0]
    z = out.space.index_to_world(np.stack([np.zeros(32), np.zeros(32), np.arange(32)], 1))[:, 2]
    covered = torch.from_numpy(np.abs(z) < 4.0)
    assert torch.equal(valid[16, 16], covered)                      # invalid exactly where the slab is not
    assert bool((out["flair"][0][~valid] == -1.0).all())            # those voxels hold the fill, not data
    assert bool((out["flair"][0][valid] == 5.0).all())
    assert bool((out["t1"][0][~valid] == out.layer_info("t1").fill).all())   # the sample's nodata is one mask


def test_a_covered_layer_adds_no_valid_layer():
    sample = two_grid_volume()
    out = Compose([Crop(40, mode="center"), ResampleToMatch("t1")])(sample, gen(0))
    assert out.valid_name is None and out.grids == {}


def test_resample_to_a_spacing_resamples_every_grid_over_its_own_extent():
    sample = two_grid_volume()
    out = Resample(4.0)(sample, gen(0))
    assert np.allclose(out.space.spacing, 4.0) and np.allclose(out.space_of("flair").spacing, 4.0)
    assert out.space_of("flair").shape == (16, 16, 16) and out.space.shape == (16, 16, 16)
    assert np.allclose(out.space_of("flair").world_box(), sample.space_of("flair").world_box(), atol=2.0)


def test_resample_to_a_target_records_its_grid_and_traces_without_data():
    sample = two_grid_volume()
    out = Resample(target="flair")(sample, gen(0))
    assert out.space == sample.space_of("flair") and out.grids == {}
    params = out.history[-1].params
    assert params["shape"] == [33, 33, 33] and np.allclose(params["affine"], sample.space_of("flair").affine)
    with pytest.raises(ParameterError, match="target"):
        Resample(target="nope")(sample, gen(0))


def test_rot90_on_a_non_square_grid_permutes_every_grid_exactly():
    sample = sentinel2(128, 96)
    out = Rot90(k=1)(sample, gen(0))
    alone = Rot90(k=1)(Sample(sample.space_of("b20"), {"b20": sample.layer_info("b20")}), gen(0))
    assert out.space_of("b20").same_grid(alone.space, 1e-9) and torch.equal(out["b20"], alone["b20"])
    assert out.space.shape == (96, 128) and out.space_of("b20").shape == (48, 64)


def test_flip_and_pad_keep_the_grids_in_the_world():
    sample = sentinel2()
    out = Compose([Flip(axes=(0,)), Pad(160)])(sample, gen(0))
    assert out.space.shape == (160, 160)
    b20 = out.space_of("b20")
    assert np.allclose(b20.spacing, 20.0) and np.all(b20.world_box()[0] <= out.space.world_box()[0] + 1e-6)
    assert torch.equal(out["b20"][:, 8:-8, 8:-8], sample["b20"].flip(1))    # the same 20 m pixels, mirrored


def test_crop_centres_on_a_label_on_its_own_grid():
    sample = sentinel2()
    lab = torch.zeros((1, 64, 64), dtype=torch.uint8)
    lab[0, 50, 10] = 1
    sample = Sample(sample.space, {**sample.layers, "lab20": Layer(lab, Role.LABEL)},
                    grids={"b20": sample.space_of("b20"), "lab20": sample.space_of("b20")})
    spot = sample.space_of("lab20").index_to_world(np.array([[50.0, 10.0]]))[0]
    out = Crop(32, mode="label", layer="lab20")(sample, gen(1))
    assert np.abs(out.space.center_world() - spot).max() <= 10.0 + 1e-6
    assert int(out["lab20"].sum()) == 1                             # and the labelled pixel is in the crop


def test_grids_in_another_crs_or_not_overlapping_are_refused():
    sample = sentinel2()
    s20 = sample.space_of("b20")
    layers = sample.layers
    with pytest.raises(SpaceMismatchError, match="CRS"):
        Sample(sample.space, layers, grids={"b20": Space(s20.shape, s20.affine, "EPSG:32634")})
    far = s20.affine.copy()
    far[0, 2] += 1e6
    with pytest.raises(SpaceMismatchError, match="do not overlap"):
        Sample(sample.space, layers, grids={"b20": Space(s20.shape, far, s20.crs)})
    with pytest.raises(SpaceMismatchError, match="b20"):
        Sample(sample.space, layers)                                # the 20 m data is not on the 10 m grid


def test_one_valid_layer_per_grid():
    sample = sentinel2()
    v20 = Layer(torch.ones((1, 64, 64), dtype=torch.bool), Role.VALID)
    ok = Sample(sample.space, {**sample.layers, "valid": Layer(torch.ones((1, 128, 128), dtype=torch.bool), Role.VALID),
                               "b20_valid": v20},
                grids={"b20": sample.space_of("b20"), "b20_valid": sample.space_of("b20")})
    assert ok.valid_name == "valid" and ok.valid_of("b20") == "b20_valid"
    with pytest.raises(ParameterError, match="one VALID layer per grid"):
        Sample(sample.space, {**sample.layers, "v1": v20, "v2": v20},
               grids={"b20": sample.space_of("b20"), "v1": sample.space_of("b20"), "v2": sample.space_of("b20")})


def test_ops_that_work_on_one_grid_refuse_many_grids_by_name():
    sample = sentinel2()
    with pytest.raises(SampleError, match="CloudShadow.*b20.*ResampleToMatch"):
        CloudShadow()(sample, gen(0))
    vol = two_grid_volume()
    with pytest.raises(SampleError, match="Spike.*per_layer"):
        Spike(layers=["t1", "flair"])(vol, gen(0))
    out = Spike(layers=["t1", "flair"], per_layer=True)(vol, gen(0))   # each drawn on its own grid
    for name, n in (("t1", 64), ("flair", 33)):
        freqs = np.array(out.history[-1].params["layers"][name]["frequencies"])
        assert np.all(freqs >= -(n // 2)) and np.all(freqs < (n + 1) // 2)


def test_collate_keeps_each_grid_and_its_affine():
    from domainaug.training import collate
    batch = collate([sentinel2(), sentinel2()])
    assert batch["b10"].shape == (2, 4, 128, 128) and batch["b20"].shape == (2, 6, 64, 64)
    assert np.allclose(batch["grids"]["b20"][0].numpy(), sentinel2().space_of("b20").affine)
    assert np.allclose(batch["affine"][0].numpy(), sentinel2().space.affine)


def test_mixing_refuses_many_grids_by_name():
    from domainaug.training import MixUp
    with pytest.raises(SampleError, match="MixUp.*b20"):
        MixUp()([sentinel2(), sentinel2()], gen(0))


def test_jpeg2000_bands_load_like_geotiffs(tmp_path):
    import rasterio

    from domainaug import io as dio
    s = sentinel2(64, 64)
    paths = []
    for layer, space in (("b10", s.space), ("b20", s.space_of("b20"))):
        a = space.affine
        transform = rasterio.Affine(a[0, 1], a[0, 0], a[0, 2] - a[0, 1] / 2, a[1, 1], a[1, 0], a[1, 2] - a[1, 0] / 2)
        for k, band in enumerate(s.layer_info(layer).channels[:2]):
            path = tmp_path / f"T33UUP_20240601_{band}_{'10' if layer == 'b10' else '20'}m.jp2"
            data = s[layer][k].numpy().round().astype(np.uint16)
            with rasterio.open(path, "w", driver="JP2OpenJPEG", width=space.shape[1], height=space.shape[0], count=1,
                               dtype="uint16", crs="EPSG:32633", transform=transform, QUALITY=100,
                               REVERSIBLE=True) as dst:
                dst.write(data, 1)
            paths.append(path)
    loaded = dio.load(sorted(paths))
    assert loaded.layer_info("image").channels == ("B02", "B03")
    assert loaded.layer_info("image_20").channels == ("B05", "B06")
    assert loaded.space.same_grid(s.space, 1e-6) and loaded.space_of("image_20").same_grid(s.space_of("b20"), 1e-6)
    assert torch.equal(loaded["image_20"][0], s["b20"][0].round())
    with pytest.raises(ParameterError, match="jp2"):
        dio.save(loaded, tmp_path / "out.jp2")


def test_flip_and_quarter_turns_permute_a_grid_that_is_not_symmetric_about_the_reference_centre():
    sample = two_grid_volume()                       # the 2 mm lattice is shifted: not symmetric about t1's centre
    for t in (Flip(axes=(0,)), Rot90(axes=(0, 1), k=1)):
        out = t(sample, gen(0))
        src = sample["flair"][0]
        got = out["flair"][0]
        assert sorted(got.flatten().tolist()) == sorted(src.flatten().tolist())    # a permutation: no new values
        gap = np.linalg.norm(centroid(out, "t1") - centroid(out, "flair"))
        assert gap < 0.1, (type(t).__name__, gap)
