"""The resampler against independent references, and its properties."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.ndimage as ndi
import SimpleITK as sitk
import torch

import domainaug as da
from domainaug.core import maps
from domainaug.core.kernels import exact as ex
from domainaug.core.kernels import resample as rs
from domainaug.core.kernels import warp_cpu, warp_torch
from domainaug.errors import SampleError, ShapeError
from domainaug.testing import make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def _pending(t, sample, seed=3):
    return t.step(sample, G(seed), lazy=True)[0].pending


@pytest.mark.parametrize("make", [lambda: make_volume(with_valid=True), lambda: make_raster(),
                                  # wider than the CPU kernel's output tile (warp_cpu.TILE_W), not a multiple of it
                                  lambda: make_raster(shape=(30, 2 * warp_cpu.TILE_W + 37)),
                                  lambda: make_raster(shape=(30, 2 * warp_cpu.TILE_W + 37), nodata_border=0),
                                  lambda: make_volume(shape=(5, 7, warp_cpu.TILE_W + 19), with_valid=True)])
def test_numba_and_torch_paths_agree(make):
    sample = make()
    t = da.Compose([da.Affine(degrees=(-20, 20), scales=(0.9, 1.1), shear=(-0.1, 0.1)), da.Elastic(),
                    da.Elastic(max_displacement=2.0)])
    pending = _pending(t, sample)
    assert pending.n_fields == 2
    specs = [sample.layer_info(n).spec() for n in sample.layer_names()]
    specs += [replace(specs[0], mode="cubic"), replace(specs[0], mode="nearest"), replace(specs[1], mode="argmax")]
    a = rs.resample_layers(specs, pending, backend="numba")
    b = rs.resample_layers(specs, pending, backend="torch")
    for spec, x, y in zip(specs, a, b):
        assert x.dtype == y.dtype
        # the torch path samples at float32 coordinates: a few ulps of an index near 500 (~6e-5 voxel)
        # times the raster's gradient (~100 per pixel) is ~1e-5 of its range
        data = spec.data.double()[spec.data != spec.fill]
        span = float(data.max() - data.min()) if spec.kind == "intensity" else 0.0
        torch.testing.assert_close(x.double(), y.double(), atol=max(1e-4, 2e-5 * span), rtol=1e-6)


def test_affine_matches_scipy_for_a_fixed_rotation():
    sample = make_volume(spacing=(1.0, 1.0, 1.0))
    params = {"degrees": [0.0, 0.0, 17.0], "scales": [1.0, 1.0, 1.0], "shear": [0.0] * 3, "translation": [0.0] * 3}
    ours = da.Affine().apply(sample, params)["image"].numpy()
    forward = da.Affine.forward(sample.space, params)
    index_map = sample.space.inverse @ np.linalg.inv(forward) @ sample.space.affine   # output idx -> source idx
    image = sample["image"].numpy()
    reference = np.stack([ndi.affine_transform(c.astype(np.float64), index_map[:3, :3], offset=index_map[:3, 3],
                                               order=1) for c in image])
    index = np.stack(np.meshgrid(*[np.arange(s) for s in sample.space.shape], indexing="ij"), -1)
    source = index @ index_map[:3, :3].T + index_map[:3, 3]
    inside = np.all((source >= 0) & (source <= np.array(sample.space.shape) - 1), axis=-1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ours[:, inside], reference[:, inside], atol=1e-3)


def test_affine_matches_simpleitk_on_anisotropic_oblique_volume():
    theta = np.radians(30)
    direction = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]) @ \
        np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    sample = make_volume(shape=(18, 20, 14), spacing=(1.0, 1.5, 2.5), direction=direction)
    params = {"degrees": [8.0, -12.0, 20.0], "scales": [1.1, 0.9, 1.05], "shear": [0.05, 0.0, -0.05],
              "translation": [2.0, -1.0, 3.0]}
    out = da.Affine().apply(sample, params)
    forward = da.Affine.forward(sample.space, params)
    inverse = np.linalg.inv(forward)

    def itk(array, interpolator):
        img = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))   # ITK index = our index
        img.SetSpacing(sample.space.spacing.tolist())
        img.SetDirection(sample.space.direction.ravel().tolist())
        img.SetOrigin(sample.space.affine[:3, 3].tolist())
        tx = sitk.AffineTransform(3)
        tx.SetMatrix(inverse[:3, :3].ravel().tolist())
        tx.SetTranslation(inverse[:3, 3].tolist())
        res = sitk.Resample(img, img, tx, interpolator, 0.0)
        return sitk.GetArrayFromImage(res).transpose(2, 1, 0)

    ref_img = itk(sample["image"][0].numpy().astype(np.float64), sitk.sitkLinear)
    np.testing.assert_allclose(out["image"][0].numpy(), ref_img, atol=2e-3)
    ref_lab = itk(sample["label"][0].numpy(), sitk.sitkNearestNeighbor)
    nearest = da.Affine().apply(sample.with_layers(label=replace(sample.layer_info("label"), interpolation="nearest")),
                                params)
    assert (nearest["label"][0].numpy() == ref_lab).mean() > 0.999


def test_two_rotations_fuse_into_their_sum():
    sample = make_raster(nodata_border=0)
    one = da.Compose([da.Affine(degrees=10.0), da.Affine(degrees=25.0)])(sample, G())
    both = da.Affine(degrees=35.0)(sample, G())
    torch.testing.assert_close(one["image"], both["image"], atol=1e-2, rtol=0)
    assert torch.equal(one["valid"], both["valid"])


def test_spatial_ops_in_a_compose_resample_once():
    sample = make_volume()
    before = rs.passes()
    da.Compose([da.Affine(degrees=(-10, 10)), da.Elastic(), da.Flip(axes=(1,)), da.Crop(8), da.Pad(14)])(sample, G())
    assert rs.passes() - before == 1
    before = rs.passes()
    da.Compose([da.Affine(degrees=(-10, 10)), da.Gamma(), da.Elastic(), da.Rot90(axes=(0, 1))])(sample, G())
    assert rs.passes() - before == 2          # the intensity op needs the data in between


def test_label_crop_flushes_the_same_way_in_call_and_replay():
    sample = make_volume()
    t = da.Compose([da.Affine(degrees=(-15, 15)), da.Crop(8, mode="label"), da.Elastic()])
    out = t(sample, G(4))
    again = da.replay(sample, [r.to_dict() for r in out.history])
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])
    assert (out["label"] != 0).any()


def test_flip_and_rot90_are_exact_copies():
    sample = make_volume(shape=(12, 16, 16), spacing=(2.0, 1.0, 1.0))
    flipped = da.Flip(axes=(0, 2))(sample, G())
    assert torch.equal(flipped["image"], torch.flip(sample["image"], [1, 3]))
    rotated = da.Rot90(axes=(1, 2), k=1)(sample, G())
    assert rotated.space == sample.space
    assert torch.equal(rotated["label"], torch.rot90(sample["label"], 1, [2, 3]))


def test_rot90_on_a_non_square_grid_rotates_the_grid():
    sample = make_volume(shape=(12, 16, 10), spacing=(1.0, 1.5, 2.0))
    out = da.Rot90(axes=(1, 2), k=1)(sample, G())
    assert out.space.shape == (12, 10, 16)
    assert np.allclose(out.space.spacing, [1.0, 2.0, 1.5])
    assert torch.equal(out["image"], torch.rot90(sample["image"], 1, [2, 3]))
    np.testing.assert_allclose(out.space.center_world(), sample.space.center_world(), atol=1e-9)


def test_exact_path_equals_interpolating_kernel():
    sample = make_raster()
    pending = _pending(da.Compose([da.Flip(axes=(0,)), da.Rot90(k=1), da.Pad((30, 30))]), sample)
    specs = [sample.layer_info(n).spec() for n in sample.layer_names()]
    exact = rs.resample_layers(specs, pending, backend="exact")
    kernel = rs.resample_layers(specs, pending, backend="numba")
    for a, b in zip(exact, kernel):
        assert torch.equal(a, b)


def test_labels_are_never_invented_with_many_labels():
    rng = np.random.default_rng(0)
    labels = ndi.zoom(rng.integers(0, 120, (6, 6, 6)), 4, order=0).astype(np.int64)
    sample = da.Sample.from_numpy(rng.random((24, 24, 24)).astype(np.float32), label=labels)
    sample = sample.with_layers(label=replace(sample.layer_info("label"), interpolation="argmax"))
    out = da.Compose([da.Affine(degrees=(-30, 30), scales=(0.8, 1.2)), da.Elastic(max_displacement=3.0)])(sample, G())
    assert set(out["label"].unique().tolist()) <= set(labels.ravel().tolist()) | {0}
    assert out["label"].dtype == torch.int64


def test_nodata_never_leaks_and_fill_only_where_invalid():
    sample = make_raster(shape=(40, 36), nodata_border=6)
    image, valid = sample["image"], sample["valid"][0]
    lo, hi = image[:, valid].amin(1), image[:, valid].amax(1)
    for seed in range(4):
        out = da.Compose([da.Affine(degrees=(-45, 45)), da.Elastic()])(sample, G(seed))
        img, val = out["image"], out["valid"][0]
        assert torch.equal(img[0] == -9999.0, ~val)
        inside = img[:, val]
        assert (inside >= lo[:, None] - 1e-3).all() and (inside <= hi[:, None] + 1e-3).all()


def test_cubic_reproduces_a_quadratic():
    idx = np.stack(np.meshgrid(np.arange(20), np.arange(22), indexing="ij"), -1).astype(np.float64)
    quad = 0.05 * idx[..., 0] ** 2 + 0.3 * idx[..., 1] + 1.0
    sample = da.Sample.from_numpy(quad.astype(np.float64), spacing=(1.0, 1.0))
    sample = sample.with_layers(image=replace(sample.layer_info("image"), interpolation="cubic"))
    params = {"degrees": [0.0], "scales": [1.0, 1.0], "shear": [0.0], "translation": [0.37, -0.61]}
    out = da.Affine().apply(sample, params)["image"][0].numpy()
    src = idx - np.array([0.37, -0.61])
    expected = 0.05 * src[..., 0] ** 2 + 0.3 * src[..., 1] + 1.0
    np.testing.assert_allclose(out[3:-3, 3:-3], expected[3:-3, 3:-3], atol=1e-9)


def test_elastic_field_is_bounded_and_points_invert_within_half_a_voxel():
    sample = make_volume(shape=(20, 22, 18), spacing=(1.0, 1.0, 1.0))
    t = da.Elastic(spacing=6.0, max_displacement=2.0)
    params = t.sample_params(sample, G(1))
    space, stages = t.spatial_map(sample.space, params)
    field = stages[0]
    assert np.abs(field.lattice).max() <= 2.0 + 1e-6
    world = sample.space.index_to_world(np.random.default_rng(0).uniform(3, 14, (50, 3)))
    pushed = maps.push_forward_points(stages, world)
    back = maps.pull_back_points(stages, pushed)
    assert np.abs(back - world).max() < 0.5 * sample.space.spacing.min()


def test_crop_pad_resample_keep_world_coordinates():
    sample = make_volume(shape=(14, 16, 12), spacing=(1.0, 1.5, 2.0))
    out = da.Crop((6, 7, 5), mode="random")(sample, G(2))
    start = out.history[-1].params["start"]
    np.testing.assert_allclose(out.space.index_to_world([0, 0, 0]), sample.space.index_to_world(start))
    region = sample["image"][:, start[0]:start[0] + 6, start[1]:start[1] + 7, start[2]:start[2] + 5]
    assert torch.equal(out["image"], region)
    padded = da.Pad((18, 16, 15))(sample, G())
    assert padded.space.shape == (18, 16, 15)
    w = sample.space.index_to_world([0, 0, 0])
    np.testing.assert_allclose(padded.space.world_to_index(w), [2, 0, 1], atol=1e-9)
    # resample a world-linear ramp: values follow world positions
    ramp = sample.space.index_to_world(np.stack(np.meshgrid(*[np.arange(s) for s in sample.space.shape],
                                                            indexing="ij"), -1)) @ np.array([0.3, -0.2, 0.5])
    ramped = da.Sample.from_numpy(ramp, affine=sample.space.affine)
    res = da.Resample(1.0)(ramped, G())
    assert np.allclose(res.space.spacing, 1.0)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in res.space.shape], indexing="ij"), -1)
    expected = res.space.index_to_world(idx) @ np.array([0.3, -0.2, 0.5])
    src = sample.space.world_to_index(res.space.index_to_world(idx))
    inside = np.all((src >= 0) & (src <= np.array(sample.space.shape) - 1), -1)
    np.testing.assert_allclose(res["image"][0].numpy()[inside], expected[inside], atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    sample = make_volume(with_valid=True)
    t = da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic(), da.Gamma(), da.GaussianBlur(1.0), da.GaussianNoise()])
    cpu = t(sample, G(5))
    gpu = da.replay(sample.to("cuda"), cpu.history)
    for name in sample.layer_names():
        torch.testing.assert_close(gpu[name].cpu().double(), cpu[name].double(), atol=1e-3, rtol=1e-4)


def test_subvoxel_shift_after_a_far_crop_is_not_taken_for_an_exact_copy():
    sample = da.Sample.from_numpy(np.random.default_rng(0).random((4, 40000)).astype(np.float32), spacing=(10.0, 10.0))
    crop = da.Crop((4, 50))
    start = {"start": [0, 30000]}
    shifted = da.Compose([crop, da.Affine(translation=0.5)])
    params = {"children": [start, {"degrees": [0.0], "scales": [1.0, 1.0], "shear": [0.0], "translation": [0.0, 0.5]}]}
    out = shifted.apply(sample, params)["image"]
    plain = crop.apply(sample, start)["image"]
    assert not torch.equal(out, plain)
    torch.testing.assert_close(out[..., 1:-1], 0.95 * plain[..., 1:-1] + 0.05 * plain[..., :-2], atol=1e-6, rtol=0)


def test_float64_images_keep_their_precision():
    rng = np.random.default_rng(0)
    image = 1e6 + rng.random((10, 12, 9))
    sample = da.Sample.from_numpy(image, spacing=(1.0, 1.0, 1.0))
    pending = _pending(da.Affine(degrees=(-20, 20)), sample)
    spec = [sample.layer_info("image").spec()]
    a, b = rs.resample_layers(spec, pending, backend="numba")[0], rs.resample_layers(spec, pending, backend="torch")[0]
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_coordinate_lattice_tracks_the_exact_map_after_a_zoom_out(scale):
    sample = make_volume(shape=(40, 48, 44), spacing=(1.0, 1.0, 1.0))
    t = da.Compose([da.Elastic(spacing=12.0, max_displacement=1.2), da.Affine(degrees=20.0, scales=scale)])
    pending = _pending(t, sample)
    lin = torch.arange(0, 40 * 48 * 44, 97)
    index = torch.stack([lin // (48 * 44), (lin // 44) % 48, lin % 44], 1).numpy().astype(np.float64)
    exact = pending.source.world_to_index(maps.pull_back_points(pending.stages, pending.space.index_to_world(index)))
    # the torch path's coordinates (the lattice pulled back on the device, in float32), and the numba path's
    device = warp_torch.BatchMap.build([pending], torch.device("cpu"), torch.float32).coordinates(0, 40)
    approx = torch.stack([c[0].reshape(-1)[lin] for c in device], 1).double().numpy()
    assert np.abs(approx - exact).max() < 0.1
    coords, steps = maps.coordinate_lattice(pending)          # the same nodes as the CPU path, to float32
    nodes = warp_torch.BatchMap.build([pending], torch.device("cpu"), torch.float32).nodes
    assert nodes is not None
    np.testing.assert_allclose(torch.stack([c[0] for c in nodes]).double().numpy(), coords, atol=1e-4, rtol=0)


def test_tiny_pixels_are_a_valid_grid():
    space = da.Space.from_spacing((100, 100), 5e-7, crs="EPSG:4326")
    assert np.allclose(space.spacing, 5e-7)


def test_noise_replay_does_not_depend_on_the_default_dtype():
    sample = make_volume()
    out = da.GaussianNoise(0.1)(sample, G(3))
    torch.set_default_dtype(torch.float64)
    try:
        again = da.replay(sample, out.history)
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.equal(out["image"], again["image"])


def test_salt_fraction_range_is_drawn():
    sample = make_volume()
    salts = {da.SaltPepper(0.05, salt=(0.2, 0.9))(sample, G(k)).history[-1].params["salt"] for k in range(5)}
    assert len(salts) == 5 and all(0.2 <= v <= 0.9 for v in salts)


@pytest.mark.parametrize("make", [lambda: make_raster(), lambda: make_volume(shape=(10, 12, 12))])
def test_exact_copy_paths_agree(make):
    """The CPU exact path (a compiled strided copy) equals the torch one that other devices use."""
    sample = make()
    t = da.Compose([da.Flip(axes=(0,)), da.Rot90(axes=(-2, -1), k=1), da.Pad(tuple(s + 3 for s in sample.space.shape)),
                    da.Crop(tuple(s for s in sample.space.shape), mode="center")])
    pending = _pending(t, sample)
    plan = ex.exact_plan(pending)
    assert plan is not None
    specs = [sample.layer_info(n).spec() for n in sample.layer_names()]
    cpu = rs.resample_layers(specs, pending, backend="exact")
    perm, sign, offset = plan
    for spec, got in zip(specs, cpu):
        lo, hi, src_lo, flips = [], [], [], []
        for i, (p, s, o) in enumerate(zip(perm, sign, offset)):
            n_src, n_out = pending.source.shape[p], pending.space.shape[i]
            j_lo, j_hi = (max(0, -o), min(n_out, n_src - o)) if s == 1 else (max(0, o - n_src + 1), min(n_out, o + 1))
            lo.append(j_lo), hi.append(max(j_lo, j_hi)), src_lo.append(min(s * j_lo + o, s * (max(j_lo, j_hi) - 1) + o))
            if s == -1:
                flips.append(i + 1)
        ref = ex._exact_torch(spec, perm, lo, hi, src_lo, flips, pending.space.shape)
        if spec.kind == "intensity" and "valid" in sample.layer_names():
            ref = torch.where(cpu[sample.layer_names().index("valid")], ref, torch.full_like(ref, spec.fill))
        assert torch.equal(got, ref) and got.is_contiguous()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("axes", [0, 1, [0, 1]])
def test_exact_flips_of_half_precision_layers(dtype, axes):
    x = torch.arange(20.0).view(1, 4, 5)
    sample = da.Sample.from_numpy(x.numpy(), spacing=(1.0, 1.0))
    sample = sample.with_layers(image=replace(sample.layer_info("image"), data=x.to(dtype)))
    out = da.Flip(axes=axes).apply(sample, {"axes": [axes] if isinstance(axes, int) else axes})["image"]
    dims = [1 + a for a in ([axes] if isinstance(axes, int) else axes)]
    assert out.dtype == dtype and torch.equal(out, torch.flip(x.to(dtype), dims))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.uint8, torch.bool, torch.int64])
@pytest.mark.parametrize("shape", [(3, 32, 48), (2, 37, 50), (1, 17, 16)])
def test_all_eight_dihedral_elements_equal_torch_rot90_and_flip(dtype, shape):
    # transposes move full 16 x 16 tiles in registers and the ragged edge element by element
    x = (torch.arange(math.prod(shape)) * 7919 % 251).view(shape).to(dtype)
    role = da.Role.INTENSITY if dtype.is_floating_point else da.Role.LABEL   # (intensity is float in memory)
    if dtype == torch.bool:                                  # (a VALID layer: one channel)
        x, role = x[:1] > 100, da.Role.VALID
    sample = da.Sample(da.Space.from_spacing(shape[1:], 1.0), {"image": da.Layer(x, role)})
    for k in range(4):
        for flip in (False, True):
            t = da.Compose([da.Flip(axes=(1,))] * flip + [da.Rot90(axes=(0, 1), k=k)])
            ref = torch.rot90(torch.flip(x, [2]) if flip else x, k, [1, 2])
            out = t(sample, G())["image"]
            assert out.dtype == dtype and torch.equal(out, ref), (k, flip)


@pytest.mark.parametrize("axes", [(1, 2), (0, 1), (0, 2)])
def test_rot90_of_volumes_on_every_plane_equals_torch(axes):
    x = torch.rand(2, 33, 18, 40)
    sample = da.Sample(da.Space.from_spacing((33, 18, 40), 1.0), {"image": da.Layer(x, da.Role.INTENSITY)})
    for k in (1, 3):
        out = da.Rot90(axes=axes, k=k)(sample, G())["image"]
        assert torch.equal(out, torch.rot90(x, k, [1 + a for a in axes]))


# --- RandomResizedCrop ---------------------------------------------------------------------------
def test_resized_crop_georeference_and_points_follow():
    sample = make_raster((60, 48), bands=3)
    t = da.RandomResizedCrop((20, 30), scale=(0.2, 0.6), ratio=(0.5, 2.0))
    for seed in range(5):
        out = t(sample, G(seed))
        params = out.history[-1].params
        (i, j), (h, w) = params["start"], params["window"]
        assert out.space.shape == (20, 30)
        # the output's outer pixel corners are the window's outer corners, in world units
        for corner_out, corner_in in [((-0.5, -0.5), (i - 0.5, j - 0.5)), ((19.5, 29.5), (i + h - 0.5, j + w - 0.5))]:
            np.testing.assert_allclose(out.space.index_to_world(np.array([corner_out])),
                                       sample.space.index_to_world(np.array([corner_in])), atol=1e-6)
        np.testing.assert_allclose(out.points["p"], sample.points["p"])          # points keep their world position
        # a pixel's value is the input interpolated at the same world point
        world = out.space.index_to_world(np.array([[7.0, 11.0]]))
        src = sample.space.world_to_index(world)[0]
        ref = ndi.map_coordinates(sample["image"][0].double().numpy(), src[:, None], order=1)[0]
        if out["valid"][0, 7, 11]:
            assert abs(float(out["image"][0, 7, 11]) - ref) < 1e-3


def test_resized_crop_draws_within_area_and_ratio_and_fuses():
    sample = make_raster((80, 80), bands=2)
    t = da.RandomResizedCrop(16, scale=(0.25, 0.5), ratio=(0.75, 1.333))
    for seed in range(20):
        h, w = t.sample_params(sample, G(seed))["window"]
        assert 0.25 * 6400 * 0.8 <= h * w <= 0.5 * 6400 * 1.2 and 0.7 <= w / h <= 1.42
    pipeline = da.Compose([da.Affine(degrees=(-20, 20)), t])
    out = pipeline(sample, G(1))
    again = da.replay(sample, json.loads(json.dumps([r.to_dict() for r in out.history])))
    assert torch.equal(out["image"], again["image"]) and out.space.shape == (16, 16)
    pending = pipeline.lazy(sample, out.history[-1].params).pending    # rotation and crop: one map, one pass
    assert pending is not None and pending.source is sample.space and pending.space.shape == (16, 16)
    assert len(pending.stages) == 1 and out.space.same_grid(pending.space)


def test_resized_crop_refuses_3d_and_many_grids():
    with pytest.raises(ShapeError, match="2D"):
        da.RandomResizedCrop(8)(make_volume(), G(0))
    sample = make_raster((24, 20))
    affine = sample.space.affine @ np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
    coarse = sample.space.with_grid((12, 10), affine)
    many = da.Sample(sample.space, {"image": sample.layer_info("image"),
                                    "b20": da.Layer(torch.zeros(1, 12, 10), da.Role.INTENSITY)}, grids={"b20": coarse})
    with pytest.raises(SampleError, match="RandomResizedCrop"):
        da.RandomResizedCrop(8)(many, G(0))
