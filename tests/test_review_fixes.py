"""Regression tests for problems found in review of the medical and remote-sensing modules."""

import numpy as np
import pytest
import rasterio
import torch

import domainaug as da
from domainaug import medical as md
from domainaug import remote_sensing as rs
from domainaug.core.values import channel_quantiles

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def test_any_angle_rotation_marks_its_corners_as_nodata():
    s = da.Sample.from_numpy(np.full((4, 32, 32), 500, np.uint16), channels=["blue", "green", "red", "nir"],
                             spacing=(5.0, 5.0))
    out = rs.RotationPolicy("any").apply(s, {"k": 0, "flip": False, "degrees": 45.0, "axes": [0, 1]})
    valid = out["valid"][0]
    fill = s.layer_info("image").fill                     # the layer's minimum (no nodata in the source)
    assert (~valid).sum() > 0 and (out["image"][:, ~valid] == fill).all() and (out["image"][:, valid] == 500).all()


def test_prostate_preset_rotates_in_plane_only(fixtures):
    s = da.io.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    out = md.preset("prostate-mri")(s, G(1))
    affine_params = out.history[-1].params["children"][1]
    assert affine_params["degrees"][:2] == [0.0, 0.0] and affine_params["degrees"][2] != 0.0


def test_quantiles_of_more_than_2_to_the_24_values():
    lo, hi = channel_quantiles(torch.arange(2**24 + 5, dtype=torch.float32)[None], None, [1.0, 99.0])
    assert float(lo) == pytest.approx(0.01 * 2**24, rel=1e-3) and float(hi) == pytest.approx(0.99 * 2**24, rel=1e-3)


def test_ct_window_fills_invalid_voxels():
    hu = np.full((8, 8, 8), -1024, np.int16)
    valid = np.ones((8, 8, 8), bool)
    valid[0] = False
    s = da.Sample.from_numpy(hu, valid=valid, fill=-2000)
    out = md.CTWindow("lung")(s, G())["image"]
    assert float(out.min()) >= 0.0 and (out[:, 0] == 0).all()


def test_low_resolution_does_not_mix_nodata_in():
    image = np.full((8, 8, 24), 100.0, np.float32)
    valid = np.ones(image.shape, bool)
    valid[:, :, :6] = False
    s = da.Sample.from_numpy(image, valid=valid, fill=-9999.0)
    out = md.SimulateLowResolution(axes=(2,)).apply(s, {"spacing": {"2": 4.0}})["image"][0]
    torch.testing.assert_close(out[:, :, 6:], torch.full((8, 8, 18), 100.0), atol=1e-3, rtol=0)


def test_bias_field_keeps_overall_brightness():
    s = da.Sample.from_numpy(np.ones((20, 20, 20), np.float32))
    t = md.BiasField()
    for seed in range(5):
        log_field = t.log_field(s, t.sample_params(s, G(seed)), "cpu", torch.float64)
        assert abs(float(log_field.mean())) < 1e-9


def test_all_nan_tiles_are_skipped(tmp_path):
    data = np.ones((1, 64, 64), np.float32)
    data[:, :32] = np.nan
    profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="float32", crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(0, 640, 10, 10))
    with rasterio.open(tmp_path / "nan.tif", "w", **profile) as dst:
        dst.write(data)
    windows = [t.meta["window"][0] for t in rs.tiles(tmp_path / "nan.tif", 32)]
    assert windows == [32, 32]


def test_no_shadow_when_the_shift_is_zero():
    s = da.Sample.from_numpy(np.random.default_rng(0).random((4, 64, 64)).astype(np.float32),
                             channels=["blue", "green", "red", "nir"], spacing=(10.0, 10.0))
    out = rs.CloudShadow(coverage=0.3, shadow_shift=0.0)(s, G(2))
    marks = out["occlusion"][0]
    assert not (marks == 2).any()
    assert abs(float((marks == 1).float().mean()) - 0.3) < 0.03


def test_tile_writer_rounds_and_clips_floats_into_integers(fixtures, tmp_path):
    path = fixtures / "L7_ETMs.tif"
    with rs.TileWriter(tmp_path / "m.tif", like=path) as writer:
        for tile in rs.tiles(path, 200):
            writer.write(tile.with_layers(image=da.Layer(tile["image"].float() * 1.5 + 0.4, da.Role.INTENSITY)))
    with rasterio.open(tmp_path / "m.tif") as dst, rasterio.open(path) as src:
        expected = np.clip(np.round(src.read().astype(np.float32) * 1.5 + 0.4), 0, 255)
        assert np.array_equal(dst.read(), expected.astype(np.uint8))


@pytest.mark.parametrize("call, name", [
    (lambda: md.Ghosting(num_ghosts=(8, 2)), "num_ghosts"),
    (lambda: md.Ghosting(num_ghosts=2.5), "num_ghosts"),
    (lambda: rs.RotationPolicy("small", max_degrees=(5, 20)), "max_degrees"),
    (lambda: rs.CloudShadow(scale=[4, 8]), "scale"),
    (lambda: rs.SpectralJitter(correlation_nm=[100]), "correlation_nm"),
    (lambda: md.FieldStrength(1.5, 9.4, bias=1), "bias"),
    (lambda: md.CTWindow(window=("a", "b")), "window"),
    (lambda: rs.tile_windows(10, 10, (10, 10, 10)), "size"),
    (lambda: md.Motion(axis=5)(da.Sample.from_numpy(np.ones((4, 4, 4), np.float32)), G()), "axis"),
])
def test_bad_arguments_from_the_review_are_named(call, name):
    with pytest.raises(da.ParameterError, match=rf"^{name}="):
        call()
