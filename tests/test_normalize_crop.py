"""NormalizeIntensity / RescaleIntensity, CropForeground / CropOrPad, MONAI-style patch sampling, and
label layers of several channels: references against MONAI and TorchIO on the shipped T1, and properties."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import data
from domainaug.errors import NoDataError, ParameterError
from domainaug.testing import make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


@pytest.fixture(scope="module")
def t1() -> da.Sample:
    return dio.load(data.path("KmeansTest_T1UCharRaw.nii.gz"),
                    label=data.path("KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))


# --- NormalizeIntensity / RescaleIntensity -----------------------------------------------------------
def test_zscore_is_mean_0_std_1_over_valid_voxels_and_leaves_invalid_ones():
    sample = make_raster()
    valid = sample["valid"][0]
    out = da.NormalizeIntensity()(sample, G())
    x = out["image"][:, valid].double()
    np.testing.assert_allclose(x.mean(1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(1, unbiased=False).numpy(), 1, atol=1e-5)
    assert torch.equal(out["image"][:, ~valid], sample["image"][:, ~valid])     # nodata stays nodata
    shifted = sample["image"].clone()
    shifted[1][valid] += 500                                # a band on another scale
    sample = sample.with_layers(image=replace(sample.layer_info("image"), data=shifted))
    pooled = da.NormalizeIntensity(channel_wise=False)(sample, G())["image"][:, valid].double()
    assert abs(float(pooled.mean())) < 1e-5 and abs(float(pooled.std(unbiased=False)) - 1) < 1e-5
    assert float(pooled.mean(1).abs().max()) > 0.5            # one mean for all bands: the bands differ


def test_zscore_matches_monai_and_torchio_on_the_shipped_t1(t1):
    monai = pytest.importorskip("monai.transforms")
    tio = pytest.importorskip("torchio")
    image = t1["image"]
    ours = da.NormalizeIntensity()(t1, G())["image"]
    torch.testing.assert_close(ours, torch.as_tensor(monai.NormalizeIntensity()(image.clone())).float(),
                               atol=1e-5, rtol=0)
    ref = tio.ZNormalization()(tio.ScalarImage(tensor=image.clone(), affine=np.eye(4))).data
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)      # TorchIO's std has ddof=1
    nonzero = da.NormalizeIntensity(nonzero=True)(t1, G())["image"]
    torch.testing.assert_close(nonzero, torch.as_tensor(monai.NormalizeIntensity(nonzero=True)(image.clone())).float(),
                               atol=1e-5, rtol=0)
    assert bool((nonzero[image == 0] == 0).all())
    # statistics inside a mask layer (any label > 0), every voxel normalised with them: TorchIO's masking_method
    masked = da.NormalizeIntensity(mask="label")(t1, G())["image"]
    subject = tio.Subject(image=tio.ScalarImage(tensor=image.clone(), affine=np.eye(4)),
                          label=tio.LabelMap(tensor=t1["label"].clone(), affine=np.eye(4)))
    ref = tio.ZNormalization(masking_method="label")(subject)["image"].data
    torch.testing.assert_close(masked, ref, atol=1e-4, rtol=1e-4)
    inside = masked[t1["label"] > 0].double()
    assert abs(float(inside.mean())) < 1e-5 and abs(float(inside.std(unbiased=False)) - 1) < 1e-5


def test_zscore_with_fixed_values_and_a_two_channel_mask():
    sample = make_volume()
    out = da.NormalizeIntensity(subtrahend=200.0, divisor=50.0)(sample, G())["image"]
    torch.testing.assert_close(out, (sample["image"] - 200) / 50)
    lab = sample["label"]
    two = torch.cat([torch.zeros_like(lab), lab])          # the mask is in channel 1 only: it must still count
    masked = sample.with_layers(mask=da.Layer(two, da.Role.LABEL))
    out = da.NormalizeIntensity(mask="mask")(masked, G())["image"]
    inside = out[lab > 0].double()
    assert abs(float(inside.mean())) < 1e-5
    with pytest.raises(ParameterError, match="^subtrahend="):
        da.NormalizeIntensity(subtrahend=[1.0, 2.0])(sample, G())          # 2 values for 1 channel
    empty = sample.with_layers(mask=da.Layer(torch.zeros_like(lab), da.Role.LABEL))
    with pytest.raises(NoDataError, match="mask layer 'mask'"):
        da.NormalizeIntensity(mask="mask")(empty, G())
    with pytest.raises(ParameterError, match="^mask="):
        da.NormalizeIntensity(mask="brain")(sample, G())


def test_rescale_matches_monai_and_torchio_percentiles_on_the_shipped_t1(t1):
    monai = pytest.importorskip("monai.transforms")
    tio = pytest.importorskip("torchio")
    image = t1["image"]
    ours = da.RescaleIntensity(out=(0, 1), percentiles=(0.5, 99.5))(t1, G())["image"]
    ref = monai.ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(image.clone())
    torch.testing.assert_close(ours, torch.as_tensor(ref).float(), atol=1e-5, rtol=0)
    ref = tio.RescaleIntensity(out_min_max=(0, 1), percentiles=(0.5, 99.5))(
        tio.ScalarImage(tensor=image.clone(), affine=np.eye(4))).data
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    window = da.RescaleIntensity(out=(-1, 1), in_range=(20, 120), clip=False)(t1, G())["image"]
    ref = monai.ScaleIntensityRange(20, 120, -1.0, 1.0, clip=False)(image.clone())
    torch.testing.assert_close(window, torch.as_tensor(ref).float(), atol=1e-5, rtol=0)
    assert float(window.max()) > 1                            # not clipped when asked not to


def test_rescale_of_nodata_raster_keeps_nodata_and_reaches_the_range():
    sample = make_raster()
    valid = sample["valid"][0]
    out = da.RescaleIntensity(out=(-1, 1))(sample, G())["image"]
    np.testing.assert_allclose(out[:, valid].amin(1).numpy(), -1, atol=1e-6)
    np.testing.assert_allclose(out[:, valid].amax(1).numpy(), 1, atol=1e-6)
    assert torch.equal(out[:, ~valid], sample["image"][:, ~valid])


def test_normalize_and_rescale_are_kept_by_inference():
    pipeline = da.Compose([da.Affine(degrees=(-10, 10)), da.NormalizeIntensity(), da.RescaleIntensity(),
                           da.Gamma()])
    kept = pipeline.inference()
    assert [type(t).__name__ for t in kept.transforms] == ["NormalizeIntensity", "RescaleIntensity"]


# --- CropForeground / CropOrPad ------------------------------------------------------------------------
def _kept_equals_slicing(sample, out, start):
    """Every layer of ``out`` is ``sample`` sliced at ``start`` (padding where the box leaves the grid) and
    its affine is the input's moved by ``start`` voxels: kept voxels keep their world coordinates."""
    start = np.array(start)
    expected = sample.space.affine.copy()
    expected[:-1, -1] = sample.space.index_to_world(start[None].astype(float))[0]
    np.testing.assert_allclose(out.space.affine, expected, atol=1e-9)
    shape = np.array(out.space.shape)
    src = tuple(slice(max(0, b), min(n, b + s)) for b, s, n in zip(start, shape, sample.space.shape))
    dst = tuple(slice(max(0, -b), max(0, -b) + (x.stop - x.start)) for b, x in zip(start, src))
    for name in sample.layer_names():
        a, b = sample[name].numpy(), out[name].numpy()
        np.testing.assert_array_equal(b[(slice(None),) + dst], a[(slice(None),) + src], err_msg=name)
        world_in = sample.space.index_to_world(np.array([[x.start for x in src]], float))
        world_out = out.space.index_to_world(np.array([[x.start for x in dst]], float))
        np.testing.assert_allclose(world_in, world_out, atol=1e-9)


def test_crop_foreground_contains_every_foreground_voxel_and_keeps_world_positions(t1):
    for margin in (0.0, 5.0, [0.0, 4.0, 7.0]):
        out = da.CropForeground("label", margin=margin)(t1, G())
        start = out.history[-1].params["start"]
        _kept_equals_slicing(t1, out, start)
        assert int((out["label"] > 0).sum()) == int((t1["label"] > 0).sum())     # every foreground voxel kept
    # a box of only the foreground: its faces each touch a foreground voxel
    tight = da.CropForeground("label")(t1, G())["label"][0] > 0
    for axis in range(3):
        assert bool(tight.movedim(axis, 0)[0].any()) and bool(tight.movedim(axis, 0)[-1].any())


def test_crop_foreground_box_matches_monai_on_the_shipped_labels(t1):
    monai = pytest.importorskip("monai.transforms")
    spacing = t1.space.spacing                                     # (2, 2, 3) mm
    for margin_vox, k in [((0, 0, 0), 1), ((3, 3, 2), 1), ((20, 2, 30), 1), ((1, 1, 1), 16)]:
        cropper = monai.CropForeground(select_fn=lambda x: x > 0, margin=margin_vox, k_divisible=k)
        start, end = cropper.compute_bounding_box(t1["label"])
        ours = da.CropForeground("label", margin=[m * s for m, s in zip(margin_vox, spacing)], k_divisible=k)
        out = ours(t1, G())
        assert out.history[-1].params["start"] == [int(v) for v in start]
        assert out.space.shape == tuple(int(e - s) for s, e in zip(start, end))
        monai_crop = cropper.crop_pad(t1["image"].clone(), start, end)
        np.testing.assert_array_equal(out["image"].numpy(), np.asarray(monai_crop))       # MONAI pads with 0


def test_crop_foreground_by_threshold_pads_with_the_fill_and_marks_it_invalid():
    sample = make_raster()
    sample = sample.with_layers(label=replace(sample.layer_info("label"),
                                              data=torch.zeros_like(sample["label"])))
    lab = sample["label"].clone()
    lab[0, 4:6, 0:3] = 2                                          # foreground at the grid's edge
    sample = sample.with_layers(label=replace(sample.layer_info("label"), data=lab))
    out = da.CropForeground("label", margin=30.0)(sample, G())     # 3 pixels of 10 m: reaches past the edge
    assert out.space.shape == (8, 9) and out.history[-1].params["start"] == [1, -3]
    assert not bool(out["valid"][0, :, :3].any()) and bool((out["image"][:, :, :3] == -9999.0).all())
    bright = da.CropForeground("image", threshold=1250.0)(sample, G())
    assert bright.space.shape < sample.space.shape and bool((bright["image"] > 1250).any())
    none = da.CropForeground("label", threshold=5)(sample, G())
    assert none.space == sample.space                               # no foreground: the whole grid
    with pytest.raises(ParameterError, match="^layer="):
        da.CropForeground("brain")(sample, G())


def test_crop_foreground_after_a_warp_in_compose_replays(t1):
    pipeline = da.Compose([da.Affine(degrees=(-10, 10)), da.CropForeground("label", margin=4.0)])
    out = pipeline(t1, G(3))
    again = da.replay(t1, out.history)
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["label"], again["label"])
    lab = out["label"][0] > 0
    for axis in range(3):                                           # the box is found after the warp
        assert not bool(lab.movedim(axis, 0)[0].any())


def test_crop_or_pad_matches_torchio_centred_and_at_the_mask(t1):
    tio = pytest.importorskip("torchio")
    subject = tio.Subject(image=tio.ScalarImage(tensor=t1["image"].clone(), affine=t1.space.affine),
                          label=tio.LabelMap(tensor=t1["label"].clone(), affine=t1.space.affine))
    for size in [(100, 140, 63), (96, 96, 48), (129, 127, 62), (100, 140, 64)]:
        odd = any((a - b) % 2 for a, b in zip(size, t1.space.shape))
        for mask in ("label",) if odd else (None, "label"):     # (centred: an odd extra voxel goes to the end)
            ref = tio.CropOrPad(size, mask_name=mask)(subject)
            out = da.CropOrPad(size, mask=mask)(t1, G())
            assert out.space.shape == size
            np.testing.assert_array_equal(out["image"].numpy(), ref["image"].data.numpy(), err_msg=f"{size} {mask}")
            np.testing.assert_allclose(out.space.affine, ref["image"].affine, atol=1e-6)
            _kept_equals_slicing(t1, out, out.history[-1].params["start"])


def test_crop_or_pad_at_the_centre_of_mass():
    sample = make_volume(shape=(20, 20, 20), spacing=(1, 1, 1))
    lab = torch.zeros_like(sample["label"])
    lab[0, 2:4, 2:4, 2:4] = 1
    lab[0, 2, 2, 15] = 1                                            # one far voxel: moves the box, not the mass
    sample = sample.with_layers(label=replace(sample.layer_info("label"), data=lab))
    mass = da.CropOrPad(5, mask="label", center="mass")(sample, G()).history[-1].params["start"]
    box = da.CropOrPad(5, mask="label", center="bbox")(sample, G()).history[-1].params["start"]
    centre = torch.nonzero(lab[0]).double().mean(0).numpy()
    np.testing.assert_array_equal(mass, np.round(centre - 2).astype(int))
    assert box[2] == 6 and mass[2] < box[2]                         # bbox centre 8.5: the tie goes down
    for size in [(21, 19, 25), (19, 21, 20)]:
        a = da.CropOrPad(size)(sample, G())
        b = da.Compose([da.Pad(size), da.Crop(size, mode="center")])(sample, G())
        assert a.space == b.space and torch.equal(a["image"], b["image"])


# --- patch sampling: pos/neg and weights (MONAI semantics), and ratios that cannot weigh every label ----
def _blob_sample(shape=(40, 40, 40)):
    label = torch.zeros((1,) + shape, dtype=torch.uint8)
    label[0, 16:24, 16:24, 16:24] = 1                   # interior: a centre on it is never clamped
    label[0, 18:20, 18:20, 18:20] = 5
    image = torch.randn((1,) + shape)
    return da.Sample(da.Space.from_spacing(shape, 1.0),
                     {"image": da.Layer(image), "label": da.Layer(label, da.Role.LABEL)})


def _centres(crop, sample, draws):
    half = np.array(per_axis_size(crop, sample)) // 2
    return [np.array(crop.sample_params(sample, G(seed))["start"]) + half for seed in range(draws)]


def per_axis_size(crop, sample):
    return crop.size * sample.space.ndim if len(crop.size) == 1 else crop.size


def test_pos_neg_ratio_is_within_binomial_tolerance_over_400_draws():
    sample = _blob_sample()
    fg = sample["label"][0] > 0
    for pos, neg in [(1, 3), (1, 1), (3, 1)]:
        crop = da.Crop(6, mode="pos_neg", pos=pos, neg=neg)
        hits = sum(bool(fg[tuple(c)]) for c in _centres(crop, sample, 400))
        p = pos / (pos + neg)
        assert abs(hits - 400 * p) <= 3 * np.sqrt(400 * p * (1 - p)), (pos, neg, hits)
    only_fg = da.Crop(6, mode="pos_neg", pos=1, neg=0)
    assert all(bool(fg[tuple(c)]) for c in _centres(only_fg, sample, 50))


def test_pos_neg_background_is_valid_voxels_only_and_foreground_is_any_channel():
    sample = _blob_sample()
    valid = torch.zeros((1,) + sample.space.shape, dtype=torch.bool)
    valid[0, 10:30, 10:30, 10:30] = True
    lab = sample["label"]
    two = torch.cat([torch.zeros_like(lab), lab])           # the foreground lives in channel 1 only
    sample = sample.with_layers(label=da.Layer(two, da.Role.LABEL), valid=da.Layer(valid, da.Role.VALID))
    crop = da.Crop(4, mode="pos_neg", pos=1, neg=1)
    centres = _centres(crop, sample, 200)
    assert all(bool(valid[(0,) + tuple(c)]) for c in centres)
    assert sum(bool(lab[(0,) + tuple(c)] > 0) for c in centres) > 60        # channel 1 is read


def test_weighted_crop_centres_only_where_weight_is_positive_in_proportion():
    shape = (30, 30, 30)
    sample = _blob_sample(shape)
    weights = torch.zeros((1,) + shape)
    spots = [(8, 8, 8), (15, 15, 15), (22, 10, 20)]
    for spot, w in zip(spots, (1.0, 2.0, 5.0)):
        weights[(0,) + spot] = w
    sample = sample.with_layers(weight=da.Layer(weights))
    crop = da.Crop(5, mode="weights", layer="weight")
    centres = [tuple(c) for c in _centres(crop, sample, 400)]
    assert set(centres) <= set(spots)
    counts = np.array([centres.count(s) for s in spots])
    expected = 400 * np.array([1, 2, 5]) / 8
    assert np.all(np.abs(counts - expected) <= 3 * np.sqrt(expected * (1 - expected / 400))), counts
    with pytest.raises(ParameterError, match="^layer=.*one channel"):
        two = sample.with_layers(weight=da.Layer(torch.cat([weights, weights])))
        crop(two, G())
    with pytest.raises(ParameterError, match="^layer=.*>= 0"):
        crop(sample.with_layers(weight=da.Layer(-weights)), G())


def test_label_ratios_shorter_than_an_atlas_are_a_named_error():
    shape = (24, 24, 24)
    atlas = torch.from_numpy(np.random.default_rng(0).integers(0, 116, (1,) + shape).astype(np.uint8))
    sample = da.Sample(da.Space.from_spacing(shape, 1.0), {"image": da.Layer(torch.zeros((1,) + shape)),
                                                           "label": da.Layer(atlas, da.Role.LABEL)})
    with pytest.raises(ParameterError, match=r"^ratios=.*116 label values up to 115.*give 116 weights.*pos_neg"):
        da.Crop(8, mode="label", ratios=[1, 1])(sample, G())
    picks = [int(atlas[(0,) + tuple(c)]) for c in _centres(da.Crop(1, mode="label", ratios=[1.0] * 116), sample, 100)]
    assert len(set(picks)) > 50                              # every label can be a centre


# --- a label map of two channels: every label-reading op reads both, or refuses naming the layer --------
def _two_channel(sample):
    lab = sample["label"]
    second = torch.zeros_like(lab)
    second[0, 1:3, 1:3, 1:3] = 4                      # a structure only channel 1 has, at a corner
    return sample.with_layers(label=da.Layer(torch.cat([lab, second]), da.Role.LABEL)), second


def test_two_channel_labels_are_read_whole_by_the_crop_modes_and_the_new_ops():
    sample, second = _two_channel(make_volume(shape=(20, 22, 18)))
    corner = second[0] > 0
    # CropForeground: the box holds channel 1's corner structure too
    out = da.CropForeground("label")(sample, G())
    assert out.history[-1].params["start"] == [1, 1, 1]
    # CropOrPad centred on the mask: the box of both channels, not channel 0's
    one = da.CropOrPad(6, mask="label")(sample.with_layers(label=da.Layer(sample["label"][:1], da.Role.LABEL)), G())
    both = da.CropOrPad(6, mask="label")(sample, G())
    assert one.history[-1].params != both.history[-1].params
    # Crop(mode="label"): label 4 exists only in channel 1, and is a centre
    crop = da.Crop(1, mode="label", ratios=[0, 0, 0, 0, 1, 0, 0, 0])
    assert all(bool(corner[tuple(crop.sample_params(sample, G(s))["start"])]) for s in range(10))
    # ... and ratios must weigh channel 1's values too
    with pytest.raises(ParameterError, match="^ratios="):
        da.Crop(1, mode="label", ratios=[1, 1, 1, 1])(sample, G())
    # NormalizeIntensity(mask=...): the statistics include channel 1's voxels
    out = da.NormalizeIntensity(mask="label")(sample, G())["image"]
    inside = (sample["label"] > 0).any(0, keepdim=True)
    assert abs(float(out[inside].double().mean())) < 1e-5


def test_two_channel_labels_are_refused_by_name_where_one_value_per_voxel_is_needed(tmp_path):
    from domainaug import medical as md
    sample, _ = _two_channel(make_volume())
    with pytest.raises(ParameterError, match="^label='label'.*one channel.*has 2"):
        md.TissueContrast((0.7, 1.3))(sample, G())
    with pytest.raises(ParameterError, match="^label='label'.*one channel.*has 2"):
        md.TissueContrast().apply(sample, {"gain": {"0": 1.0, "3": 1.1}})
    with pytest.raises(ParameterError, match="^label='label'.*one channel"):
        da.MixUp(num_classes=8)([sample, sample], G())
    cut = da.CutMix(num_classes=8)([sample, sample], G())              # CutMix pastes every channel
    assert cut[0]["label"].shape[0] == 2
    weights = sample.with_layers(weight=da.Layer(sample["label"].float()))
    with pytest.raises(ParameterError, match="^layer='weight'.*one channel"):
        da.Crop(4, mode="weights", layer="weight")(weights, G())


def test_classification_patches_refuse_a_two_band_class_raster(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from domainaug.remote_sensing import classification_patches
    profile = dict(driver="GTiff", height=16, width=16, crs="EPSG:32633",
                   transform=from_origin(500000, 4200000, 10, 10))
    with rasterio.open(tmp_path / "image.tif", "w", count=3, dtype="float32", **profile) as f:
        f.write(np.ones((3, 16, 16), np.float32))
    with rasterio.open(tmp_path / "label.tif", "w", count=2, dtype="uint8", **profile) as f:
        f.write(np.ones((2, 16, 16), np.uint8))
    with pytest.raises(ParameterError, match="^label=.*one band"):
        classification_patches(tmp_path / "image.tif", tmp_path / "label.tif", 8)


def test_crop_foreground_and_crop_or_pad_read_a_mask_on_a_grid_of_its_own():
    s10 = da.Space((64, 64), np.array([[0.0, 10.0, 500005.0], [-10.0, 0.0, 4199995.0], [0, 0, 1]]), "EPSG:32633")
    s20 = da.Space((32, 32), np.array([[0.0, 20.0, 500010.0], [-20.0, 0.0, 4199990.0], [0, 0, 1]]), "EPSG:32633")
    mask = torch.zeros((1, 32, 32), dtype=torch.uint8)
    mask[0, 10:13, 5:9] = 1                              # 20 m pixels: rows 20..25, cols 10..17 at 10 m
    sample = da.Sample(s10, {"b10": da.Layer(torch.rand(2, 64, 64)), "b20": da.Layer(torch.rand(1, 32, 32)),
                             "mask": da.Layer(mask, da.Role.LABEL)}, grids={"b20": s20, "mask": s20})
    out = da.CropForeground("mask")(sample, G())
    assert out.history[-1].params == {"start": [20, 10], "size": [6, 8]}
    assert int(out["mask"].sum()) == int(mask.sum())     # every foreground pixel of the mask's grid kept
    centred = da.CropOrPad(16, mask="mask")(sample, G())
    world = centred.space.center_world()
    box_centre = s20.index_to_world(np.array([[11.0, 6.5]]))[0]
    assert np.abs(world - box_centre).max() <= 5.0 + 1e-6              # within half a 10 m pixel


def _numpy_box(data, threshold, valid):
    mask = (data.numpy() > threshold).any(0)
    if valid is not None:
        mask &= valid.numpy()[0]
    if not mask.any():
        return None
    where = np.argwhere(mask)
    return where.min(0), where.max(0)


def test_one_pass_kernels_match_numpy():
    from domainaug.core.kernels.reduce import channel_moments, foreground_box
    rng = np.random.default_rng(0)
    data = torch.from_numpy((rng.normal(1000, 30, (3, 40, 50, 30))).astype(np.float32))
    region = torch.from_numpy(rng.random((3, 40, 50, 30)) < 0.3)
    x = data.double().numpy()
    for r in (None, region[:1], region):
        n, mean, std = channel_moments(data, r)
        mask = np.ones_like(x, bool) if r is None else np.broadcast_to(r.numpy(), x.shape)
        np.testing.assert_array_equal(n, mask.reshape(3, -1).sum(1))
        np.testing.assert_allclose(mean, [x[c][mask[c]].mean() for c in range(3)], rtol=1e-12)
        np.testing.assert_allclose(std, [x[c][mask[c]].std() for c in range(3)], rtol=1e-9)
    label = torch.zeros((2, 20, 21, 22), dtype=torch.uint8)
    label[1, 3:5, 7, 2:9] = 4
    label[0, 15, 1, 20] = 1
    valid = torch.ones((1, 20, 21, 22), dtype=torch.bool)
    valid[0, 15] = False
    for args in [(label, 0.0, None), (label, 0.0, valid), (label, 3.0, None), (label[:, 0], 0.0, valid[:, 0]),
                 (label.float() - 10, -9.5, None), (label, 4.0, None)]:
        ours, ref = foreground_box(*args), _numpy_box(*args)
        assert (ours is None) == (ref is None), args[1:]
        if ours is not None:
            np.testing.assert_array_equal(ours[0], ref[0])
            np.testing.assert_array_equal(ours[1], ref[1])
    np.testing.assert_array_equal(foreground_box(label, 0.0, valid)[0], [3, 7, 2])


def test_exact_channel_quantiles_are_numpy_percentiles_over_valid_voxels():
    from domainaug.core.values import channel_quantiles
    rng = np.random.default_rng(1)
    data = torch.from_numpy(rng.gamma(2.0, 50.0, (2, 3_000_001)).astype(np.float32))    # > 2**20 voxels
    valid = torch.from_numpy(rng.random((1, 3_000_001)) < 0.7)
    for pct in [(0.0, 100.0), (0.5, 99.5), (13.7, 50.0)]:
        ours = channel_quantiles(data, valid, pct, exact=True)
        x = data.numpy()[:, valid.numpy()[0]].astype(np.float64)
        for q, got in zip(pct, ours):
            np.testing.assert_allclose(got.reshape(-1).numpy(), np.percentile(x, q, axis=1), rtol=1e-6)


def test_normalize_fused_into_a_flip_equals_normalising_after_it():
    sample = make_volume(with_valid=True)
    for op in (da.NormalizeIntensity(mask="label"), da.NormalizeIntensity(channel_wise=False),
               da.RescaleIntensity(percentiles=(2, 98), clip=False)):
        fused = da.Compose([da.Flip(axes=(0,)), op])(sample, G())
        flipped = da.Flip(axes=(0,))(sample, G())
        torch.testing.assert_close(fused["image"], op(flipped, G())["image"], atol=1e-5, rtol=0)
