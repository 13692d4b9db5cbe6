"""Remote sensing: band tables, spectral ops, rotation policies, presets, on real rasters."""

import numpy as np
import pytest
import rasterio
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import remote_sensing as rs

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731
L7 = ["B1", "B2", "B3", "B4", "B5", "B7"]


@pytest.fixture
def landsat(fixtures):
    return rs.set_bands(dio.load(fixtures / "L7_ETMs.tif"), L7, sensor="landsat7")


@pytest.fixture
def rgbn(fixtures):
    return rs.set_bands(dio.load(fixtures / "rgbn_suba.tif"), ["blue", "green", "red", "nir"], sensor="aerial-rgbn")


def test_band_tables():
    s2 = rs.sensor("sentinel2")
    assert len(s2.bands) == 13 and "B8A" in s2.names
    assert s2.band("B8A").center_nm == pytest.approx(864.7) and s2.band("red").name == "B04"
    assert rs.sensor("landsat9").band("B10").common == "lwir11"
    assert rs.sensor("landsat7").band("B4").common == "nir"          # L7 B4 is NIR, L8 B4 is red
    assert rs.sensor("landsat8").band("B4").common == "red"
    with pytest.raises(da.ParameterError, match="^band='B13'"):
        s2.band("B13")
    with pytest.raises(da.ParameterError, match="^sensor='spot9'"):
        rs.sensor("spot9")


def test_jitter_computes_in_float_without_clipping_and_leaves_nodata(rgbn):
    valid = rgbn["valid"][0]
    out = rs.SpectralJitter(gain=3.0, bias=0.0).apply(rgbn,
                                                      {"gain": {b: 3.0 for b in ["blue", "green", "red", "nir"]},
                                                       "bias": {b: 0.0 for b in ["blue", "green", "red", "nir"]}})
    assert out["image"].dtype == torch.float32 and float(out["image"].max()) == 3 * 255   # no clip to uint8
    assert torch.equal(out["image"][:, ~valid], rgbn["image"][:, ~valid])
    assert torch.equal(out["image"][:, valid], rgbn["image"][:, valid] * 3)


def test_correlated_jitter_is_smooth_over_wavelength():
    image = np.random.default_rng(0).random((13, 8, 8)).astype(np.float32)
    s = da.Sample.from_numpy(image, channels=rs.sensor("sentinel2").names, spacing=(10.0, 10.0))
    t = rs.SpectralJitter(gain=(0.5, 1.5), bias=0.0, correlation_nm=400.0, sensor="sentinel2")
    near, far = [], []
    for seed in range(40):
        g = t.sample_params(s, G(seed))["gain"]
        near.append(abs(g["B02"] - g["B03"]))
        far.append(abs(g["B02"] - g["B12"]))
    assert np.mean(near) < 0.5 * np.mean(far)


def test_haze_is_stronger_at_short_wavelengths(landsat):
    out = rs.Haze().apply(landsat.replace(layers={**landsat.layers, "image": da.Layer(
        landsat["image"].float(), da.Role.INTENSITY, 0.0, tuple(L7))}), {"strength": 0.1, "exponent": 2.0})
    added = (out["image"] - landsat["image"].float()).mean(dim=(1, 2))
    assert (added[:-1] > added[1:]).all()                              # B1 (483 nm) ... B7 (2206 nm)
    assert added[0] > 2 * added[4]


def test_clouds_and_shadows_are_marked_and_nodata_untouched(rgbn):
    t = rs.CloudShadow(coverage=0.3)
    out = t(rgbn, G(1))
    marks, valid = out["occlusion"][0], rgbn["valid"][0]
    assert set(marks.unique().tolist()) <= {0, 1, 2} and (marks[~valid] == 0).all()
    coverage = float((marks == 1).sum()) / float(valid.sum())
    assert 0.15 < coverage < 0.35
    assert out["image"][:, marks == 1].float().mean() > rgbn["image"][:, marks == 1].float().mean()
    assert out["image"][:, marks == 2].float().mean() < rgbn["image"][:, marks == 2].float().mean()
    assert torch.equal(out["image"][:, ~valid], rgbn["image"][:, ~valid])


def test_ndvi_matches_a_hand_computation_and_is_nan_on_nodata(landsat, rgbn):
    ndvi = rs.spectral_index(landsat, "NDVI")[0].double()
    nir, red = landsat["image"][3].double(), landsat["image"][2].double()
    expected = (nir - red) / (nir + red)
    ok = (nir + red) != 0
    torch.testing.assert_close(ndvi[ok], expected[ok], atol=1e-6, rtol=0)
    assert torch.isnan(rs.spectral_index(rgbn, "NDVI")[0][~rgbn["valid"][0]]).all()
    with pytest.raises(da.ParameterError, match="swir16"):
        rs.spectral_index(rgbn, "NDBI")


def test_dihedral_is_an_exact_permutation_and_any_angle_fills_nodata(landsat, rgbn):
    square = da.Crop((300, 300))(landsat, G())
    for seed in range(6):
        out = rs.RotationPolicy("dihedral")(square, G(seed))
        assert out.space == square.space
        assert torch.equal(out["image"].flatten().sort().values, square["image"].flatten().sort().values)
    out = rs.RotationPolicy("any")(rgbn, G(2))
    assert out.space == rgbn.space and out.space.crs == "EPSG:32618"
    img, val = out["image"], out["valid"][0]
    assert (~val).sum() > (~rgbn["valid"][0]).sum()
    assert (img[:, ~val] == 0).all()


@pytest.mark.parametrize("name, make", [
    ("landsat7", "landsat"), ("aerial-rgbn", "rgbn"), ("landsat8", None), ("sentinel2", None)])
def test_presets_run_replay_and_print_as_yaml(name, make, request):
    if make is None:
        sensor = rs.sensor(name)
        image = np.random.default_rng(0).integers(0, 10000, (len(sensor.bands), 64, 64)).astype(np.uint16)
        sample = da.Sample.from_numpy(image, channels=sensor.names, spacing=(10.0, 10.0), crs="EPSG:32633")
    else:
        sample = request.getfixturevalue(make)
    pipeline = rs.preset(name)
    for seed in range(3):
        out = pipeline(sample, G(seed))
        assert out["image"].dtype == sample["image"].dtype
        again = da.replay(sample, [r.to_dict() for r in out.history])
        assert torch.equal(out["image"], again["image"])
    assert da.Compose.from_yaml(pipeline.to_yaml()).to_dict() == pipeline.to_dict()
    assert set(rs.presets()) >= {"sentinel2", "landsat8", "aerial-rgbn"}


def test_one_band_input_to_a_multispectral_preset_is_refused(fixtures):
    single = da.Sample.from_numpy(np.ones((1, 16, 16), np.float32), channels=["B04"], spacing=(10.0, 10.0))
    with pytest.raises(da.ShapeError, match="needs at least 4 bands, got 1.*multispectral"):
        rs.preset("sentinel2")(single, G())
    unnamed = dio.load(fixtures / "L7_ETMs.tif")
    with pytest.raises(da.ParameterError, match="band1.*set_bands"):
        rs.preset("landsat7")(unnamed, G())


def test_georeference_is_kept_through_a_preset_and_a_write(rgbn, tmp_path):
    out = rs.preset("aerial-rgbn")(rgbn, G(4))
    dio.save(out, tmp_path / "aug.tif")
    with rasterio.open(tmp_path / "aug.tif") as dst, rasterio.open(rgbn.meta["path"]) as src:
        assert dst.crs == src.crs and dst.transform.almost_equals(src.transform)
        assert dst.descriptions == ("blue", "green", "red", "nir") and dst.dtypes == src.dtypes


def test_nc_scene_with_its_land_cover_map(shared_data):
    nc = dio.load(shared_data / "derived/nc_landsat7_6band.tif",
                  label=shared_data / "derived/nc_landsat7_strata_dense.tif")
    nc = rs.set_bands(nc, L7, sensor="landsat7")
    classes = set(nc["label"].unique().tolist())
    for seed in range(3):
        out = da.Compose([rs.RotationPolicy("any"), rs.preset("landsat7")])(nc, G(seed))
        assert set(out["label"].unique().tolist()) <= classes
        v = out["valid"][0]
        assert out.space.crs == nc.space.crs                          # a quarter turn of this 443x489 scene
        np.testing.assert_allclose(out.space.center_world(), nc.space.center_world())   # rotates its grid
        assert (out["image"][:, ~v] == 0).all()                      # nodata 0 only where invalid


def test_any_angle_rotation_marks_its_corners_as_nodata():
    s = da.Sample.from_numpy(np.full((4, 32, 32), 500, np.uint16), channels=["blue", "green", "red", "nir"],
                             spacing=(5.0, 5.0))
    out = rs.RotationPolicy("any").apply(s, {"k": 0, "flip": False, "degrees": 45.0, "axes": [0, 1]})
    valid = out["valid"][0]
    fill = s.layer_info("image").fill                     # the layer's minimum (no nodata in the source)
    assert (~valid).sum() > 0 and (out["image"][:, ~valid] == fill).all() and (out["image"][:, valid] == 500).all()


def test_no_shadow_when_the_shift_is_zero():
    s = da.Sample.from_numpy(np.random.default_rng(0).random((4, 64, 64)).astype(np.float32),
                             channels=["blue", "green", "red", "nir"], spacing=(10.0, 10.0))
    out = rs.CloudShadow(coverage=0.3, shadow_shift=0.0)(s, G(2))
    marks = out["occlusion"][0]
    assert not (marks == 2).any()
    assert abs(float((marks == 1).float().mean()) - 0.3) < 0.03


@pytest.mark.parametrize("call, name", [
    (lambda: rs.RotationPolicy("small", max_degrees=(5, 20)), "max_degrees"),
    (lambda: rs.CloudShadow(scale=[4, 8]), "scale"),
    (lambda: rs.SpectralJitter(correlation_nm=[100]), "correlation_nm"),
    (lambda: rs.tile_windows(10, 10, (10, 10, 10)), "size"),
])
def test_bad_remote_sensing_arguments_are_named(call, name):
    with pytest.raises(da.ParameterError, match=rf"^{name}="):
        call()
