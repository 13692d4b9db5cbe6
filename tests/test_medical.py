"""Medical module: physics checks that could fail, orientation, presets on the real T1 and MNI."""

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import medical as md

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


@pytest.fixture
def t1(fixtures):
    return dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz",
                    label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")


def test_bias_field_is_isotropic_in_mm():
    s = da.Sample.from_numpy(np.ones((21, 11, 5), np.float32), spacing=(1.0, 2.0, 5.0))   # 20 mm on every axis
    t = md.BiasField(order=1)
    terms = md.physics._terms(3, 1)
    for axis in range(3):
        coefficients = [1.0 if e == tuple(int(a == axis) for a in range(3)) else 0.0 for e in terms]
        field = t.log_field(s, {"coefficients": coefficients}, "cpu", torch.float64)
        profile = field.movedim(axis, 0)[:, 0, 0]
        torch.testing.assert_close(profile, torch.linspace(-1, 1, s.space.shape[axis], dtype=torch.float64))


def test_rician_mean_at_high_snr_and_rayleigh_background():
    a, sigma = 100.0, 10.0
    image = np.zeros((2, 64, 64, 32), np.float32)
    image[0] = a
    s = da.Sample.from_numpy(image)
    out = md.RicianNoise(sigma, relative=False).apply(s, {"std": sigma, "seed": 5})["image"].double()
    assert out[0].mean().item() == pytest.approx(np.sqrt(a ** 2 + sigma ** 2), rel=2e-3)
    assert out[1].mean().item() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=1e-2)


def test_spike_energy_lands_at_the_drawn_frequency(t1):
    # on a bright background the spiked image stays positive: its magnitude is the (linear) real part
    s = t1.with_layers(image=da.Layer(t1["image"].float() + 1000, da.Role.INTENSITY))
    t = md.Spike(0.2)
    params = t.sample_params(s, G(3))
    out = t.apply(s, params)["image"][0].double()
    diff = torch.fft.fftn(out) - torch.fft.fftn(s["image"][0].double())
    f = params["frequencies"][0]
    where = {tuple(int(v) for v in idx) for idx in torch.nonzero(diff.abs() > 1e-3 * diff.abs().max())}
    expected = {tuple(int((sg * fi) % n) for fi, n in zip(f, s.space.shape)) for sg in (1, -1)}
    assert where == expected


def test_ghosting_changes_only_the_drawn_planes(t1):
    s = t1.with_layers(image=da.Layer(t1["image"].double() + 300, da.Role.INTENSITY))   # stays positive
    params = {"num_ghosts": 4, "axis": 1, "intensity": 0.6}
    out = md.Ghosting().apply(s, params)["image"][0].double()
    diff = (torch.fft.fftn(out) - torch.fft.fftn(s["image"][0].double())).abs().sum(dim=(0, 2))
    freqs = torch.fft.fftfreq(s.space.shape[1], d=1.0 / s.space.shape[1]).round().long()
    changed = diff > 1e-6 * diff.max()
    assert torch.equal(changed, (freqs % 4 == 0) & (freqs != 0))


def test_motion_moves_energy_but_keeps_the_image(t1):
    s = t1.with_layers(image=da.Layer(t1["image"].float(), da.Role.INTENSITY))
    out = md.Motion((-4.0, 4.0), (-4.0, 4.0))(s, G(1))["image"]
    assert not torch.equal(out, s["image"])
    corr = np.corrcoef(out.flatten().numpy(), s["image"].flatten().numpy())[0, 1]
    assert 0.7 < corr < 0.9999


def test_ct_window_clips_exactly():
    hu = np.linspace(-1200, 2000, 64 * 4 * 4).reshape(64, 4, 4).astype(np.int16)
    s = da.Sample.from_numpy(hu)
    out = md.CTWindow("lung")(s, G())["image"]
    assert out.dtype == torch.float32 and float(out.min()) >= 0.0 and float(out.max()) == 1.0
    level, width = md.CT_WINDOWS["lung"]
    expected = (np.clip(hu, level - width / 2, level + width / 2) - (level - width / 2)) / width
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)
    kept = md.CTWindow("bone", rescale=False)(s, G())["image"]
    assert kept.dtype == torch.float32 and int(kept.min()) == -500 and int(kept.max()) == 1300


def test_reorient_keeps_every_voxels_world_coordinate(t1):
    ids = torch.arange(t1["image"].numel(), dtype=torch.float64).reshape(t1["image"].shape)
    s = t1.with_layers(image=da.Layer(ids, da.Role.INTENSITY))
    for code in ("RAS", "LPS", "PIR"):
        out = md.Reorient(code)(s, G())
        assert "".join(__import__("nibabel").orientations.aff2axcodes(out.space.affine)) == code
        index = np.argwhere(np.ones(out.space.shape, bool))[::97]
        source = np.unravel_index(out["image"][0].numpy()[tuple(index.T)].astype(np.int64), t1.space.shape)
        np.testing.assert_allclose(out.space.index_to_world(index), t1.space.index_to_world(np.stack(source, 1)))
    with pytest.raises(da.ShapeError, match="3D"):
        md.Reorient()(da.Sample.from_numpy(np.zeros((4, 5), np.float32)), G())


@pytest.mark.parametrize("name", md.presets())
def test_presets_run_on_the_real_t1_and_replay(t1, name):
    pipeline = md.preset(name)
    for seed in range(3):
        out = pipeline(t1, G(seed))
        assert set(out["label"].unique().tolist()) <= set(t1["label"].unique().tolist())
        again = da.replay(t1, [r.to_dict() for r in out.history])
        assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])
    assert da.Compose.from_yaml(pipeline.to_yaml()).to_dict() == pipeline.to_dict()


def test_a_2d_image_to_a_3d_preset_is_refused():
    with pytest.raises(da.ShapeError, match="3D"):
        md.preset("brain-mri")(da.Sample.from_numpy(np.zeros((16, 16), np.float32)), G())


def test_brain_preset_on_the_mni_template(shared_data):
    mni = dio.load(shared_data / "medical/nilearn_mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    out = md.preset("brain-mri")(mni, G(2))
    assert out.space.shape == mni.space.shape and out["image"].dtype == mni["image"].dtype
    assert out["image"].float().std() > 0.5 * mni["image"].float().std()


def test_intensity_scale_offset_is_in_percentile_units(t1):
    s = t1.with_layers(image=da.Layer(t1["image"].float(), da.Role.INTENSITY))
    lo, hi = md.robust_range(s["image"], None)
    out = md.IntensityScale().apply(s, {"gain": {"image": [1.0]}, "offset": {"image": [0.1]}})["image"]
    torch.testing.assert_close(out - s["image"], (0.1 * (hi - lo)).expand_as(out), atol=1e-3, rtol=0)


def test_tissue_contrast_scales_each_region_by_its_gain():
    label = np.zeros((20, 20, 20), np.uint8)
    label[:, :, 10:] = 1
    s = da.Sample.from_numpy(np.full((20, 20, 20), 100.0, np.float32), label=label)
    params = {"gain": {"0": 0.8, "1": 1.2}}
    sharp = md.TissueContrast(smoothing=0.0).apply(s, params)["image"][0]
    assert torch.allclose(sharp[:, :, :10], torch.tensor(80.0))
    assert torch.allclose(sharp[:, :, 10:], torch.tensor(120.0))
    smooth = md.TissueContrast(smoothing=2.0).apply(s, params)["image"][0]
    assert 80 < float(smooth[10, 10, 9]) < 100 < float(smooth[10, 10, 10]) < 120      # blended at the border
    assert float(smooth[10, 10, 0]) == pytest.approx(80.0, abs=1e-3)


def test_low_resolution_averages_slabs_along_the_slice_axis():
    stripes = np.tile(np.array([0.0, 100.0], np.float32), 16)                      # 1 mm stripes along axis 2
    image = np.broadcast_to(stripes, (8, 8, 32)).copy()
    s = da.Sample.from_numpy(image, spacing=(1.0, 1.0, 1.0))
    out = md.SimulateLowResolution(axes=(2,)).apply(s, {"spacing": {"2": 4.0}})["image"][0]
    assert float(out[:, :, 4:-4].std()) < 1e-3 and float(out.mean()) == pytest.approx(50.0, abs=0.5)
    across = md.SimulateLowResolution(axes=(0,)).apply(s, {"spacing": {"0": 4.0}})["image"][0]
    assert torch.equal(across, s["image"][0])                                         # other axes untouched


def test_field_strength_down_adds_noise_and_equal_fields_are_the_identity(t1):
    s = t1.with_layers(image=da.Layer(t1["image"].float(), da.Role.INTENSITY))
    down = md.FieldStrength(3.0, 1.5)
    out = down(s, G(4))
    assert float((out["image"] - s["image"]).std()) > 0
    assert [t.__class__.__name__ for t in down.transforms] == ["BiasField", "Gamma", "RicianNoise"]
    same = md.FieldStrength(1.5, 1.5)(s, G(4))
    torch.testing.assert_close(same["image"], s["image"], atol=1e-2, rtol=0)
    assert da.transform_from_dict(down.to_dict()).to_dict() == down.to_dict()


def _round_trip(sample, degrees=15.0, scale=1.1):
    forward = {"degrees": [0.0, 0.0, degrees], "scales": [scale] * 3, "shear": [0.0] * 3, "translation": [0.0] * 3}
    back = {"degrees": [0.0, 0.0, -degrees], "scales": [1 / scale] * 3, "shear": [0.0] * 3, "translation": [0.0] * 3}
    return da.Affine().apply(da.Affine().apply(sample, forward), back)


def test_default_label_mode_keeps_thin_structures():
    label = np.zeros((48, 48, 48), np.uint8)
    label[20, 8:40, 8:40] = 1                                          # a 1-voxel plate
    label[8:40, 30, 24] = 2                                            # a 1-voxel line
    s = da.Sample.from_numpy(np.zeros(label.shape, np.float32), label=label)
    assert da.DEFAULT_LABEL_INTERPOLATION == "nearest"
    back = _round_trip(s)["label"][0].numpy()
    for v in (1, 2):
        assert 2 * ((back == v) & (label == v)).sum() / ((back == v).sum() + (label == v).sum()) > 0.7


@pytest.mark.parametrize("mode", ["nearest", "argmax"])
def test_atlas_with_116_labels_loses_none(mode):
    rng = np.random.default_rng(1)
    values = rng.permutation(np.arange(1, 126))[:116].reshape(4, 29, 1)
    atlas = np.kron(values, np.ones((8, 2, 32), int))                  # 116 regions of 8x2x32 voxels
    atlas = np.pad(atlas, 6).astype(np.int16)
    s = da.Sample.from_numpy(np.zeros(atlas.shape, np.float32), label=atlas)
    s = s.with_layers(label=da.Layer(s["label"], da.Role.LABEL, interpolation=mode))
    out = da.Affine(degrees=(-10, 10), scales=(0.95, 1.05))(s, G(3))["label"]
    before, after = set(np.unique(atlas).tolist()), set(out.unique().tolist())
    assert after <= before and after == before                         # none invented, none lost


def test_affine_is_rigid_in_mm_on_thick_slices():
    """A 20 mm ball on a 0.78 x 0.78 x 6.5 mm grid stays a 20 mm ball after rotating slices into plane."""
    spacing = np.array([0.78, 0.78, 6.5])
    shape = (96, 96, 16)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1) * spacing
    centre = (np.array(shape) - 1) / 2 * spacing
    ball = (np.linalg.norm(idx - centre, axis=-1) < 20).astype(np.uint8)
    s = da.Sample.from_numpy(np.zeros(shape, np.float32), label=ball, spacing=tuple(spacing))
    out = da.Affine().apply(s, {"degrees": [90.0, 0.0, 0.0], "scales": [1.0] * 3, "shear": [0.0] * 3,
                                "translation": [0.0] * 3})["label"][0].numpy()
    where = np.argwhere(out == 1) * spacing
    extent = where.max(0) - where.min(0)
    assert np.all(np.abs(extent[1:] - 40) < 2 * spacing[1:] + 1.0)      # in-plane axis keeps ~40 mm
    assert abs(extent[2] - 40) <= 13.0                                  # slice axis: within its 6.5 mm voxels


def test_truncated_nifti_is_named(fixtures, tmp_path):
    data = (fixtures / "KmeansTest_T1UCharRaw.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(da.errors.DomainaugError, match="cut.nii.gz"):
        dio.load(tmp_path / "cut.nii.gz")["image"]


def test_prostate_preset_rotates_in_plane_only(fixtures):
    s = da.io.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")       # coronal: 3 mm along A (world y)
    out = md.preset("prostate-mri")(s, G(1))
    affine_params = out.history[-1].params["children"][1]
    degrees = affine_params["degrees"]
    assert degrees[0] == degrees[2] == 0.0 and degrees[1] != 0.0


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


@pytest.mark.parametrize("call, name", [
    (lambda: md.Ghosting(num_ghosts=(8, 2)), "num_ghosts"),
    (lambda: md.Ghosting(num_ghosts=2.5), "num_ghosts"),
    (lambda: md.FieldStrength(1.5, 9.4, bias=1), "bias"),
    (lambda: md.CTWindow(window=("a", "b")), "window"),
    (lambda: md.Motion(axis=5)(da.Sample.from_numpy(np.ones((4, 4, 4), np.float32)), G()), "axis"),
])
def test_bad_medical_arguments_are_named(call, name):
    with pytest.raises(da.ParameterError, match=rf"^{name}="):
        call()
