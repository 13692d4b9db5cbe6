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
    return dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz", label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")


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
    s = t1.with_layers(image=da.Layer(t1["image"].float(), da.Role.INTENSITY))
    t = md.Spike(0.2)
    params = t.sample_params(s, G(3))
    out = t.apply(s, params)["image"][0].double()
    diff = torch.fft.fftn(out) - torch.fft.fftn(s["image"][0].double())
    f = params["frequencies"][0]
    where = {tuple(int(v) for v in idx) for idx in torch.nonzero(diff.abs() > 1e-3 * diff.abs().max())}
    expected = {tuple(int((sg * fi) % n) for fi, n in zip(f, s.space.shape)) for sg in (1, -1)}
    assert where == expected


def test_ghosting_changes_only_the_drawn_planes(t1):
    s = t1.with_layers(image=da.Layer(t1["image"].float(), da.Role.INTENSITY))
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
    assert kept.dtype == torch.int16 and int(kept.min()) == -500 and int(kept.max()) == 1300


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
