"""Honest values and metadata for the spatial, blur and k-space ops: per-axis Affine arguments on
world axes (RAS and LAS alike), magnitude k-space artefacts, bounded blur kernels, label crops over
the values present, and a bounded elastic control grid."""

import json

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import medical as md
from domainaug.errors import ParameterError

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def _replays_from_json(sample, out):
    records = [json.loads(json.dumps(r.to_dict())) for r in out.history[len(sample.history):]]
    again = da.replay(sample, records)
    for name in out.layer_names():
        assert torch.equal(again[name], out[name]), name
    for name, p in out.points.items():
        assert torch.equal(again.points[name], p), name


# --- Affine: per-axis values on world axes ---------------------------------------------------------
SHAPE = (21, 17, 15)
BLOB = np.array([2.0, 1.0, -1.0])          # world mm


def _scene(orientation):
    """The same world content (a smooth blob at BLOB) stored as RAS or with the first array axis
    flipped (LAS); both grids cover the same voxel centres, centred on the world origin."""
    affine = np.eye(4)
    affine[:3, 3] = -(np.array(SHAPE) - 1) / 2
    if orientation == "LAS":
        affine[0, 0], affine[0, 3] = -1.0, (SHAPE[0] - 1) / 2
    index = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1).astype(np.float64)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    image = np.exp(-0.5 * (np.linalg.norm(world - BLOB, axis=-1) / 3.0) ** 2).astype(np.float32)
    return da.Sample.from_numpy(image, affine=affine, fill=0.0, points={"p": [BLOB.tolist(), [3.0, 2.0, 1.0]]})


def _blob(world):
    return np.exp(-0.5 * (np.linalg.norm(world - BLOB, axis=-1) / 3.0) ** 2)


def _world_grid(space):
    index = np.stack(np.meshgrid(*[np.arange(s) for s in space.shape], indexing="ij"), -1).reshape(-1, space.ndim)
    return space.index_to_world(index.astype(np.float64)).reshape(space.shape + (space.ndim,))


def test_the_two_scenes_hold_the_same_world_content():
    ras, las = _scene("RAS"), _scene("LAS")
    assert np.allclose(ras.space.center_world(), las.space.center_world())
    torch.testing.assert_close(las["image"], ras["image"].flip(1))
    for s in (ras, las):
        np.testing.assert_allclose(s["image"][0].numpy(), _blob(_world_grid(s.space)), atol=1e-6)


C30, S30 = np.cos(np.pi / 6), np.sin(np.pi / 6)


@pytest.mark.parametrize("orientation", ["RAS", "LAS"])
@pytest.mark.parametrize("kwargs, linear, shift", [
    (dict(translation=(5, 0, 0)), np.eye(3), [5.0, 0.0, 0.0]),
    (dict(translation=[(5, 5), 0, (-2, -2)]), np.eye(3), [5.0, 0.0, -2.0]),
    (dict(scales=(2.0, 1.0, 1.0)), np.diag([2.0, 1.0, 1.0]), [0.0] * 3),
    (dict(degrees=[0, 0, 30]), np.array([[C30, -S30, 0], [S30, C30, 0], [0, 0, 1]]), [0.0] * 3),
    (dict(shear=[0.5, 0, 0]), np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1]]), [0.0] * 3),
], ids=["translation", "translation-pairs", "scales", "degrees", "shear"])
def test_affine_moves_content_along_world_axes_whatever_the_orientation(orientation, kwargs, linear, shift):
    """Fixed per-axis values act on world (RAS) axes about the grid centre (the world origin here):
    points go to ``linear @ x + shift`` and the image is the blob moved there, on a RAS and an LAS grid."""
    sample = _scene(orientation)
    out = da.Affine(**kwargs)(sample, G())
    points = np.array([BLOB, [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(out.points["p"].numpy(), points @ linear.T + shift, atol=1e-9)
    source = (_world_grid(out.space) - shift) @ np.linalg.inv(linear).T
    np.testing.assert_allclose(out["image"][0].numpy(), _blob(source), atol=0.03)
    _replays_from_json(sample, out)


def test_affine_translation_on_a_raster_is_along_crs_x_and_y():
    """A north-up raster: array axis 0 runs south, axis 1 east; world is (x, y) of the CRS."""
    image = np.zeros((1, 40, 50), np.float32)
    image[0, 20, 10] = 1.0
    affine = np.array([[0.0, 10.0, 500_000.0], [-10.0, 0.0, 4_000_000.0], [0.0, 0.0, 1.0]])
    tile = da.Sample.from_numpy(image, affine=affine, crs=32633, fill=0.0)
    # 2D: a plain (a, b) pair of numbers is a range for both axes; per-axis fixed values are pairs
    out = da.Affine(translation=[(50, 50), (20, 20)])(tile, G())
    row, col = np.unravel_index(int(out["image"][0].argmax()), (40, 50))
    assert (row, col) == (18, 15)                         # 20 m north = 2 rows up, 50 m east = 5 columns
    assert out.history[-1].params["translation"] == [50.0, 20.0]
    _replays_from_json(tile, out)


@pytest.mark.parametrize("kwargs, ndim, name", [
    (dict(translation=(5, 0, 0)), 2, "translation"),
    (dict(scales=[(1, 1), (2, 2)]), 3, "scales"),
    (dict(shear=[(0.1, 0.1), 0.2]), 3, "shear"),
    (dict(degrees=[0, 0, 5]), 2, "degrees"),
])
def test_affine_per_axis_count_is_checked_against_the_sample(kwargs, ndim, name):
    sample = da.Sample.from_numpy(np.zeros((6,) * ndim, np.float32), spacing=(1.0,) * ndim)
    t = da.Affine(**kwargs)
    with pytest.raises(ParameterError) as err:
        t(sample, G())
    assert err.value.name == name and f"{ndim}D" in str(err.value)


@pytest.mark.parametrize("kwargs, name", [
    (dict(translation=[(1, 0), 0, 0]), "translation"),
    (dict(scales=[1, 0, 1]), "scales"),
    (dict(scales=[1, 1, 1], isotropic=True), "isotropic"),
    (dict(shear=[0, 0, 11]), "shear"),
    (dict(translation=[]), "translation"),
    (dict(translation=[[1, 2, 3]]), "translation"),
    (dict(translation=[5, 0]), "translation"),          # a pair is a range; the message shows the per-axis form
])
def test_affine_bad_per_axis_values_are_named(kwargs, name):
    with pytest.raises(ParameterError) as err:
        da.Affine(**kwargs)
    assert err.value.name == name


def test_affine_per_axis_config_survives_json():
    t = da.Affine(degrees=[(-15, 15)], scales=[(0.9, 1.1), 1], translation=[(5, 5), (0, 0)])
    config = json.loads(json.dumps(t.config()))
    assert config["translation"] == [[5.0, 5.0], [0.0, 0.0]]
    assert da.Affine(**config).config() == config
    sample = da.Sample.from_numpy(np.zeros((6, 7), np.float32))
    assert da.Affine(**config).sample_params(sample, G())["translation"] == [5.0, 0.0]


# --- k-space artefacts are magnitude images --------------------------------------------------------
@pytest.fixture
def t1(fixtures):
    s = dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    return s.with_layers(image=da.Layer(s["image"].float(), da.Role.INTENSITY, 0.0))


def _spiked(x, params):
    k = np.fft.fftn(x)
    peak = np.abs(k).max()
    for f in params["frequencies"]:
        for sign in (1, -1):
            k[tuple(int((sign * fi) % n) for fi, n in zip(f, x.shape))] += \
                params["intensity"] * peak / (1 if any(f) else 2)
    return np.fft.ifftn(k)


def test_spike_is_the_magnitude_of_the_spiked_kspace(t1):
    t = md.Spike(0.3, num_spikes=2)
    params = t.sample_params(t1, G(3))
    out = t.apply(t1, params)["image"][0].double().numpy()
    reference = np.abs(_spiked(t1["image"][0].double().numpy(), params))
    assert out.min() >= 0.0
    np.testing.assert_allclose(out, reference, atol=1e-4 * reference.max())
    assert np.real(_spiked(t1["image"][0].double().numpy(), params)).min() < -1.0   # the real part would go negative
    _replays_from_json(t1, t(t1, G(3)))


def test_ghosting_is_the_magnitude_of_the_attenuated_kspace(t1):
    params = {"num_ghosts": 4, "axis": 1, "intensity": 0.8}
    out = md.Ghosting().apply(t1, params)["image"][0].double().numpy()
    x = t1["image"][0].double().numpy()
    f = np.round(np.fft.fftfreq(x.shape[1], d=1.0 / x.shape[1])).astype(int)
    scale = np.where((f % 4 == 0) & (f != 0), 0.2, 1.0).reshape(1, -1, 1)
    ghosted = np.fft.ifftn(np.fft.fftn(x) * scale)
    assert np.real(ghosted).min() < -1.0 and out.min() >= 0.0
    np.testing.assert_allclose(out, np.abs(ghosted), atol=1e-4 * out.max())
    _replays_from_json(t1, md.Ghosting()(t1, G(2)))


def test_motion_is_the_magnitude_of_the_mixed_kspace(t1):
    t = md.Motion((-4.0, 4.0), (-4.0, 4.0), num_movements=2, axis=1)
    params = t.sample_params(t1, G(1))
    out = t.apply(t1, params)["image"][0].double().numpy()
    k = np.fft.fftn(t1["image"][0].double().numpy())
    n = t1.space.shape[1]
    ring = np.abs(np.round(np.fft.fftfreq(n, d=1.0 / n))).astype(int)
    bounds = [0] + [int(round(c * (n // 2 + 1))) for c in params["cuts"]] + [n // 2 + 1]
    for segment, move in enumerate(params["movements"]):
        moved = da.Affine().apply(t1, move)["image"][0].double().numpy()
        lines = (ring >= bounds[segment + 1]) & (ring < bounds[segment + 2])
        k[:, lines] = np.fft.fftn(moved)[:, lines]
    mixed = np.fft.ifftn(k)
    assert np.real(mixed).min() < -1.0 and out.min() >= 0.0
    np.testing.assert_allclose(out, np.abs(mixed), atol=1e-4 * out.max())
    _replays_from_json(t1, t(t1, G(1)))


@pytest.mark.parametrize("op, params", [
    (md.Spike(), {"frequencies": [[3, -5, 2]], "intensity": 0.3}),
    (md.Ghosting(), {"num_ghosts": 3, "axis": 0, "intensity": 0.9}),
])
def test_signed_input_is_a_shifted_magnitude_image(t1, op, params):
    """A z-scored or offset image is treated as magnitude plus its (negative) minimum: the artefact is
    the magnitude of ``x - min`` shifted back, so the output never drops below the input's minimum."""
    x = t1["image"]
    shifted = t1.with_layers(image=da.Layer(x - 100.0, da.Role.INTENSITY, -100.0))
    out = op.apply(shifted, params)["image"]
    torch.testing.assert_close(out, op.apply(t1, params)["image"] - 100.0, atol=2e-3, rtol=0)
    assert float(out.min()) >= -100.0 - 1e-3


# --- GaussianBlur: the kernel never outgrows the grid ----------------------------------------------
def _dense_reference(x, valid, sigmas):
    """Normalised convolution with untruncated Gaussians: a weighted mean over the valid voxels."""
    mats = [np.exp(-0.5 * ((np.arange(n)[:, None] - np.arange(n)[None]) / s) ** 2) for n, s in zip(x.shape, sigmas)]
    num = mats[0] @ (x * valid) @ mats[1].T
    den = mats[0] @ valid @ mats[1].T
    return num / den


def test_blur_wider_than_the_grid_equals_the_untruncated_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 9))
    valid = rng.random((6, 9)) > 0.3
    sample = da.Sample.from_numpy(x, valid=valid, spacing=(0.5, 0.2), fill=0.0)      # float64
    out = da.GaussianBlur(2.0).apply(sample, {"sigma": 2.0})["image"][0].numpy()      # 4 and 10 voxels
    reference = _dense_reference(x, valid.astype(float), [4.0, 10.0])
    np.testing.assert_allclose(out[valid], reference[valid], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(out[~valid], sample["image"][0].numpy()[~valid])     # nodata kept


def test_blur_on_a_degree_tile_stays_in_range_and_kernels_stay_on_the_grid(monkeypatch):
    """3x128x128 EPSG:4326 tile with 1e-5 deg pixels: sigma up to 1 deg is 1e5 pixels."""
    widths = []
    conv1d = torch.nn.functional.conv1d

    def spy(x, kernel, *args, **kwargs):
        widths.append((kernel.shape[-1], x.shape[-1]))
        return conv1d(x, kernel, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv1d", spy)
    rng = np.random.default_rng(1)
    image = rng.uniform(10, 20, (3, 128, 128)).astype(np.float32)
    affine = np.array([[0.0, 1e-5, 12.0], [-1e-5, 0.0, 45.0], [0.0, 0.0, 1.0]])
    tile = da.Sample.from_numpy(image, affine=affine, crs=4326, channels=["B02", "B03", "B04"])
    out = da.GaussianBlur()(tile, G(0))["image"]
    lo, hi = image.reshape(3, -1).min(1), image.reshape(3, -1).max(1)
    assert np.all(out.numpy().reshape(3, -1).min(1) >= lo - 1e-4)
    assert np.all(out.numpy().reshape(3, -1).max(1) <= hi + 1e-4)
    assert widths and all(k <= 2 * n - 1 for k, n in widths)
    flat = da.GaussianBlur(1.0).apply(tile, {"sigma": 1.0})["image"].double()      # sigma >> grid: the mean
    torch.testing.assert_close(flat, torch.from_numpy(image).double().mean((1, 2), keepdim=True).expand_as(flat),
                               atol=1e-4, rtol=0)


# --- Crop(mode="label", ratios=...) counts the values present, and refuses values it cannot weigh -----
def test_label_crop_with_huge_label_values_counts_only_present_values():
    label = np.zeros((6, 7, 5), np.int64)
    label[4, 2, 3] = 3
    label[1, 1, 1] = 1
    sample = da.Sample.from_numpy(np.zeros(label.shape, np.float32), label=label)
    crop = da.Crop(1, mode="label", ratios=[0, 0, 0, 1])
    for seed in range(5):
        out = crop(sample, G(seed))
        assert int(out["label"].item()) == 3
    assert da.Crop(1, mode="label", ratios=[0, 1, 0, 0])(sample, G())["label"].item() == 1
    none_present = da.Crop(1, mode="label", ratios=[0, 0, 1, 0])(sample, G())     # label 2 absent: uniform
    assert none_present.space.shape == (1, 1, 1)
    # a value beyond the list (here 2**31 - 5) would never be a centre: a named error, found without a bin per value
    label[0, 0, 0] = 2**31 - 5
    huge = da.Sample.from_numpy(np.zeros(label.shape, np.float32), label=label)
    with pytest.raises(ParameterError, match=r"^ratios=.*4 label values up to 2147483643.*pos_neg"):
        crop(huge, G())


# --- Elastic: the control grid is bounded ----------------------------------------------------------
def test_elastic_refuses_a_control_grid_beyond_the_limit():
    sample = da.Sample.from_numpy(np.zeros((200, 200), np.float32), spacing=(1.0, 1.0))
    with pytest.raises(ParameterError) as err:
        da.Elastic(spacing=0.5)(sample, G())
    assert err.value.name == "spacing" and "160801" in str(err.value)
    assert str(da.Elastic.MAX_CONTROL_POINTS) in str(err.value)
    ok = da.Elastic(spacing=[0.5, 50.0])(sample, G())                                   # 401 x 7 points
    assert len(json.dumps(ok.history[-1].to_dict())) < 200_000
    _replays_from_json(sample, ok)


def test_elastic_default_spacing_stays_small_on_a_large_grid():
    sample = da.Sample.from_numpy(np.zeros((1, 2000, 3), np.float32), spacing=(1.0, 1.0, 1.0))
    t = da.Elastic()
    params = t.sample_params(sample, G())
    assert np.asarray(params["displacement"]).size <= 3 * da.Elastic.MAX_CONTROL_POINTS
