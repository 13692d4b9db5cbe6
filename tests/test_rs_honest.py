"""Honest values and metadata for rasters: band-name rules, cloud and haze physics, scene statistics
(no seams between tiles), derived index layers, and rotations of non-square grids."""

import json

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import remote_sensing as rs
from domainaug.remote_sensing.bands import resolve_bands

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731
L7 = ["B1", "B2", "B3", "B4", "B5", "B7"]
S2_SOME = ["B02", "B03", "B04", "B08", "B11", "B12"]


def names(channels, sensor):
    return [b.name for b in resolve_bands(channels, sensor)]


# --- band names ---------------------------------------------------------------------------------
def test_real_band_descriptions_resolve_to_the_sensor_bands(shared_data):
    nc = dio.load(shared_data / "derived/nc_landsat7_6band.tif")
    descriptions = list(nc.layer_info("image").channels)
    assert descriptions == ["B1_blue", "B2_green", "B3_red", "B4_nir", "B5_swir1", "B7_swir2"]
    assert names(descriptions, "landsat7") == L7
    # without a sensor the common-name part places them on the spectrum
    assert [b.common for b in resolve_bands(descriptions, None)] == ["blue", "green", "red", "nir", "swir16", "swir22"]
    # a wrong sensor is caught by the common-name part: Landsat-8 B1 is coastal, not blue
    with pytest.raises(da.ParameterError, match="B1_blue.*coastal.*sensor"):
        resolve_bands(descriptions, "landsat8")


def test_a_preset_runs_on_a_raster_with_band_descriptions(shared_data):
    nc = dio.load(shared_data / "derived/nc_landsat7_6band.tif")
    out = rs.preset("landsat7")(nc, G(0))
    assert out.layer_info("image").channels == nc.layer_info("image").channels


@pytest.mark.parametrize("channels, sensor, expected", [
    (["B02_blue", "b3", "B004", "B8A", "SR_B11", "TOA_B12", "B8"], "sentinel2",
     ["B02", "B03", "B04", "B8A", "B11", "B12", "B08"]),
    (["SR_B2", "SR_B3", "sr_b4", "SR_B5", "ST_B10"], "landsat8", ["B2", "B3", "B4", "B5", "B10"]),
    (["B01", "B02", "B03", "B04", "B05", "B07"], "landsat7", L7),
    (["blue", "GREEN", "Red", "nir", "swir1", "swir2"], "landsat8", ["B2", "B3", "B4", "B5", "B6", "B7"]),
    (["Blue", "nir"], "aerial-rgbn", ["blue", "nir"]),
    (["B1_blue", "B4_nir"], "landsat7", ["B1", "B4"]),
])
def test_band_name_rules(channels, sensor, expected):
    assert names(channels, sensor) == expected


def test_band_names_that_do_not_resolve_are_named_in_the_error():
    with pytest.raises(da.ParameterError, match="B13"):
        resolve_bands(["B02", "B13"], "sentinel2")
    with pytest.raises(da.ParameterError, match="rededge.*ambiguous|ambiguous.*rededge"):
        resolve_bands(["rededge"], "sentinel2")
    with pytest.raises(da.ParameterError, match="SR_B4.*sensor"):
        resolve_bands(["SR_B4"], None)


def test_unnamed_bands_in_a_preset_say_how_to_name_them(fixtures):
    unnamed = dio.load(fixtures / "L7_ETMs.tif")
    with pytest.raises(da.ParameterError, match=r"band1.*set_bands\(sample.*--bands"):
        rs.preset("landsat7")(unnamed, G())
    rgbn = dio.load(fixtures / "rgbn_suba.tif")          # independent per-band jitter needs band names too
    with pytest.raises(da.ParameterError, match=r"set_bands\(sample, \['blue', 'green', 'red', 'nir'\], "
                                                r"sensor='aerial-rgbn'\).*--bands blue,green,red,nir"):
        rs.preset("aerial-rgbn")(rgbn, G())


def test_a_preset_on_too_few_bands_says_how_many_it_needs():
    single = da.Sample.from_numpy(np.ones((1, 16, 16), np.float32), channels=["B04"], spacing=(10.0, 10.0))
    with pytest.raises(da.ShapeError, match="needs at least 4 bands, got 1"):
        rs.preset("sentinel2")(single, G())


def test_set_bands_understands_descriptions_and_keeps_scene_stats_keys():
    s = da.Sample.from_numpy(np.ones((2, 4, 4), np.float32), spacing=(10.0, 10.0))
    s.meta["scene_stats"] = {"image": {"a": {"min": 0.0, "max": 1.0, "mean": 0.5, "std": 0.1},
                                       "b": {"min": 0.0, "max": 2.0, "mean": 1.0, "std": 0.2}}}
    out = rs.set_bands(s, ["SR_B4", "SR_B5"], sensor="landsat8")
    assert list(out.meta["scene_stats"]["image"]) == ["SR_B4", "SR_B5"]
    assert out.meta["scene_stats"]["image"]["SR_B5"]["max"] == 2.0
    assert s.meta["scene_stats"]["image"].keys() == {"a", "b"}            # the input is not changed


# --- clouds and haze ----------------------------------------------------------------------------
def _dark_s2(shape=(64, 64)):
    """A dark (water-like) Sentinel-2 scene in reflectance: 0.02-0.06 in every band."""
    rng = np.random.default_rng(0)
    image = (0.02 + 0.04 * rng.random((len(S2_SOME),) + shape)).astype(np.float32)
    return da.Sample.from_numpy(image, channels=S2_SOME, spacing=(10.0, 10.0), crs="EPSG:32633")


def _opaque(t, sample, seed=0):
    params = t.sample_params(sample, G(seed))
    return {**params, "opacity": 1.0}


def test_clouds_follow_a_reflectance_model_not_the_scene():
    dark = _dark_s2()
    t = rs.CloudShadow(coverage=0.4, reflectance_scale=1.0, sensor="sentinel2")
    out = t.apply(dark, _opaque(t, dark))
    core = out["occlusion"][0] == 1
    cloud = out["image"][:, core].mean(dim=1)
    index = {b: i for i, b in enumerate(S2_SOME)}
    for b in ("B02", "B03", "B04", "B08"):                       # bright and flat in VNIR
        assert cloud[index[b]] > 0.6
    assert cloud[index["B11"]] < cloud[index["B04"]]              # water/ice absorb in SWIR
    assert cloud[index["B12"]] < cloud[index["B11"]]


@pytest.mark.parametrize("name, bands, sensor", [
    ("L7_ETMs.tif", L7, "landsat7"), ("rgbn_suba.tif", ["blue", "green", "red", "nir"], "aerial-rgbn")])
def test_clouds_are_brighter_and_shadows_darker_than_the_clear_scene_on_real_rasters(fixtures, name, bands, sensor):
    sample = rs.set_bands(dio.load(fixtures / name), bands, sensor=sensor)
    vnir = [i for i, b in enumerate(resolve_bands(bands, sensor)) if b.center_nm < 1000]
    t = rs.CloudShadow(coverage=0.3)
    for seed in range(3):
        out = t(sample, G(seed))
        marks = out["occlusion"][0]
        valid = sample["valid"][0] if sample.valid_name else torch.ones_like(marks, dtype=torch.bool)
        clear = (marks == 0) & valid
        assert (marks == 1).any() and (marks == 2).any()
        for i in vnir:
            assert out["image"][i][marks == 1].mean() > out["image"][i][clear].mean()
            assert out["image"][i][marks == 1].mean() > sample["image"][i][marks == 1].mean()
            assert out["image"][i][marks == 2].mean() < sample["image"][i][marks == 2].mean()
            assert out["image"][i][marks == 2].mean() < out["image"][i][clear].mean()


def test_haze_on_a_band_does_not_depend_on_the_other_bands():
    full = _dark_s2()
    alone = da.Sample.from_numpy(full["image"][2:3].numpy(), channels=["B04"], spacing=(10.0, 10.0))
    for scale in (None, 1.0):
        t = rs.Haze(sensor="sentinel2", reflectance_scale=scale)
        params = {"strength": 0.05, "exponent": 1.5}
        torch.testing.assert_close(t.apply(full, params)["image"][2], t.apply(alone, params)["image"][0])


def test_haze_is_the_angstrom_law_at_550_nm():
    image = np.full((4, 8, 8), 0.1, np.float32)
    s = da.Sample.from_numpy(image, channels=["blue", "green", "red", "nir"], spacing=(5.0, 5.0))
    out = rs.Haze(sensor="aerial-rgbn", reflectance_scale=1.0).apply(s, {"strength": 0.04, "exponent": 2.0})
    added = (out["image"] - s["image"]).mean(dim=(1, 2)).double()
    expected = torch.tensor([0.04 * (550.0 / lam) ** 2 for lam in (480.0, 550.0, 660.0, 830.0)], dtype=torch.float64)
    torch.testing.assert_close(added, expected, atol=1e-6, rtol=0)


# --- scene statistics: no seams -----------------------------------------------------------------
def test_scene_stats_from_tiles_match_the_whole_scene(fixtures):
    path = fixtures / "rgbn_suba.tif"
    bands = ["blue", "green", "red", "nir"]
    whole = rs.set_bands(dio.load(path), bands, sensor="aerial-rgbn")
    stats = rs.scene_stats(path, bands=bands)
    valid = whole["valid"][0]
    for i, b in enumerate(bands):
        x = whole["image"][i][valid].double()
        assert stats[b]["min"] == float(x.min()) and stats[b]["max"] == float(x.max())
        assert stats[b]["mean"] == pytest.approx(float(x.mean()), rel=1e-9)
        assert stats[b]["std"] == pytest.approx(float(x.std(unbiased=False)), rel=1e-9)
    assert json.loads(json.dumps(stats)) == stats
    tile = next(rs.tiles(path, 64, bands=bands, sensor="aerial-rgbn", scene_stats=True))
    assert tile.meta["scene_stats"] == {"image": stats}


def test_fixed_ops_with_scene_stats_leave_no_seam_between_tiles(fixtures):
    path = fixtures / "L7_ETMs.tif"
    ops = [rs.SpectralJitter(gain=1.05, bias=0.03, stats="scene", sensor="landsat7"),
           rs.Haze(strength=0.04, exponent=1.5, stats="scene", sensor="landsat7"),
           rs.BandDropout(bands=["B5"], value="mean", stats="scene"),
           rs.CloudShadow(coverage=0.0, stats="scene", sensor="landsat7")]
    pipeline = da.Compose(ops)
    whole = rs.set_bands(dio.load(path), L7, sensor="landsat7")
    whole.meta["scene_stats"] = {"image": rs.scene_stats(path, L7)}
    whole_out = pipeline(whole, G(0))["image"]
    tiles = list(rs.tiles(path, (160, 200), overlap=48, bands=L7, sensor="landsat7", scene_stats=True))
    assert len(tiles) >= 4
    for tile in tiles:
        r, c, h, w = tile.meta["window"]
        out = pipeline(tile, G(0))["image"]
        torch.testing.assert_close(out, whole_out[:, r:r + h, c:c + w], atol=1e-4, rtol=1e-6)
    # per-tile statistics (the default) do give seams here: the test is not vacuous
    per_tile = rs.SpectralJitter(gain=1.05, bias=0.03, sensor="landsat7")
    a = per_tile(tiles[0], G(0))["image"]
    r, c, h, w = tiles[0].meta["window"]
    assert not torch.allclose(a, per_tile(whole, G(0))["image"][:, r:r + h, c:c + w], atol=1e-3)


def test_explicit_stats_are_json_ready_and_replay(fixtures):
    whole = rs.set_bands(dio.load(fixtures / "L7_ETMs.tif"), L7, sensor="landsat7")
    stats = {b: {"min": 0.0, "max": 255.0, "mean": 100.0, "std": 30.0} for b in L7}
    t = rs.SpectralJitter(gain=(0.9, 1.1), bias=(-0.05, 0.05), stats=stats)
    out = t(whole, G(3))
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert torch.equal(da.replay(whole, records)["image"], out["image"])
    p = out.history[0].params
    expected = whole["image"][0] * p["gain"]["B1"] + p["bias"]["B1"] * 255.0
    torch.testing.assert_close(out["image"][0], expected)
    with pytest.raises(da.ParameterError, match="B7"):
        rs.SpectralJitter(stats={b: stats[b] for b in L7[:-1]})(whole, G())
    with pytest.raises(da.ParameterError, match="scene_stats"):
        rs.Haze(stats="scene")(whole, G())
    with pytest.raises(da.ParameterError, match="stats"):
        rs.Haze(stats={"B1": {"min": 0.0}})


# --- derived index layers -----------------------------------------------------------------------
@pytest.fixture
def landsat(fixtures):
    return rs.set_bands(dio.load(fixtures / "L7_ETMs.tif"), L7, sensor="landsat7")


def test_append_index_marks_its_layer_as_derived(landsat):
    out = rs.AppendIndex("NDVI")(landsat, G())
    assert out.meta["derived_layers"] == ["NDVI"]
    assert rs.derived_layers(out) == ["NDVI"]
    assert rs.source_layers(out) == ["image"]
    assert "derived_layers" not in landsat.meta                          # the input is not changed
    twice = rs.AppendIndex("NDWI")(out, G())
    assert twice.meta["derived_layers"] == ["NDVI", "NDWI"]


def test_presets_leave_an_appended_index_alone(landsat):
    with_index = rs.AppendIndex("NDVI")(landsat, G())
    for seed in range(4):
        out = rs.preset("landsat7")(with_index, G(seed))
        # dihedral turns move the index with the scene, but no intensity op changes its values
        assert torch.equal(out["NDVI"].flatten().sort().values, with_index["NDVI"].flatten().sort().values)


def test_generic_ops_skip_an_index_unless_asked(landsat):
    with_index = rs.AppendIndex("NDVI")(landsat, G())
    asked = da.GaussianNoise(std=0.1, layers=["NDVI"])(with_index, G())
    assert not torch.equal(asked["NDVI"], with_index["NDVI"])             # naming it still works
    layers = rs.source_layers(with_index)                                  # until the core skips them itself
    for op in (da.GaussianNoise(std=0.1, layers=layers), da.Gamma(2.0, layers=layers)):
        out = op(with_index, G())
        assert torch.equal(out["NDVI"], with_index["NDVI"])
        assert not torch.equal(out["image"], with_index["image"])


def test_generic_ops_skip_an_index_by_default(landsat):
    with_index = rs.AppendIndex("NDVI")(landsat, G())
    out = da.GaussianNoise(std=0.1)(with_index, G())
    assert torch.equal(out["NDVI"], with_index["NDVI"])


# --- rotations of non-square rasters ------------------------------------------------------------
def test_a_quarter_turn_of_a_non_square_raster_rotates_its_grid_and_keeps_its_footprint(landsat):
    assert landsat.space.shape == (352, 349)
    point = landsat.space.index_to_world(np.array([[10.0, 20.0]]))
    sample = landsat.replace(points={"p": torch.from_numpy(point)})
    out = rs.RotationPolicy("dihedral").apply(sample, {"k": 1, "flip": False, "degrees": 0.0, "axes": [0, 1]})
    assert out.space.shape == (349, 352)                                 # the grid turns with the scene
    np.testing.assert_allclose(out.space.center_world(), landsat.space.center_world())

    def extent(space):                                                  # world bounding box of pixel centres
        h, w = space.shape
        xy = space.index_to_world(np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float))
        return np.ptp(xy, axis=0)

    np.testing.assert_allclose(extent(out.space), extent(landsat.space)[::-1])   # same footprint, turned
    assert torch.equal(out["image"].flatten().sort().values, landsat["image"].flatten().sort().values)
    i, j = np.round(out.space.world_to_index(out.points["p"].numpy())[0]).astype(int)
    assert torch.equal(out["image"][:, i, j], landsat["image"][:, 10, 20])   # content moved with the world


def test_half_turns_and_mirrors_of_a_non_square_raster_keep_its_grid(landsat):
    for k, flip in ((2, False), (0, True), (2, True)):
        out = rs.RotationPolicy("dihedral").apply(landsat, {"k": k, "flip": flip, "degrees": 0.0, "axes": [0, 1]})
        assert out.space == landsat.space
    out = rs.RotationPolicy("any").apply(landsat, {"k": 0, "flip": False, "degrees": 30.0, "axes": [0, 1]})
    assert out.space == landsat.space and not out["valid"].all()          # fixed grid, corners nodata


def test_clouds_are_cold_in_thermal_bands_and_shadows_leave_them_alone():
    rng = np.random.default_rng(1)
    refl = 0.05 + 0.1 * rng.random((2, 48, 48))
    thermal = 290.0 + 10.0 * rng.random((1, 48, 48))                  # brightness temperature, K
    s = da.Sample.from_numpy(np.concatenate([refl, thermal]).astype(np.float32), channels=["B4", "B5", "B10"],
                             spacing=(30.0, 30.0))
    t = rs.CloudShadow(coverage=0.3, reflectance_scale=1.0, sensor="landsat8")
    out = t.apply(s, _opaque(t, s, seed=2))
    marks = out["occlusion"][0]
    assert out["image"][2][marks == 1].mean() < s["image"][2][marks == 1].mean()      # colder under cloud
    shade = marks == 2                                                 # shadows do not cool (a soft cloud edge may)
    assert (out["image"][2][shade] <= s["image"][2][shade]).all()
    assert (out["image"][2][shade] == s["image"][2][shade]).float().mean() > 0.5
    assert (out["image"][:2][:, shade] < s["image"][:2][:, shade]).float().mean() > 0.9
    assert (out["image"][:2][:, marks == 1].mean(dim=1) > 0.6).all()
