"""Invert: the inverse of recorded spatial maps, for a sample, a prediction tensor and points."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

import domainaug as da
import domainaug.io
from domainaug.core.sample import Layer, Role
from domainaug.data import path
from domainaug.errors import ParameterError, ShapeError, SpaceMismatchError
from domainaug.testing import make_raster, make_volume


@pytest.fixture(scope="module")
def t1():
    return da.io.load(path("KmeansTest_T1UCharRaw.nii.gz"), label=path("KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))


def with_coordinates(sample):
    """The sample plus an intensity layer holding each voxel's world coordinates (a linear function,
    which linear interpolation reproduces exactly: what is left after warp and inverse is the error
    of the map's inverse, in world units)."""
    index = np.indices(sample.space.shape).reshape(sample.space.ndim, -1).T
    world = sample.space.index_to_world(index).T.reshape((sample.space.ndim,) + sample.space.shape)
    return sample.with_layers(coords=Layer(torch.from_numpy(world), Role.INTENSITY, 0.0))


def coordinate_error_voxels(sample, back):
    """Per covered voxel (eroded by two voxels: border voxels are clamped), the distance between where
    the inverse put content and where it was, in voxels of the finest axis."""
    covered = back["valid"][0].numpy() if "valid" in back.layer_names() else np.ones(sample.space.shape, bool)
    keep = ndimage.binary_erosion(covered, iterations=2)
    err = np.linalg.norm((back["coords"] - sample["coords"]).numpy(), axis=0)[keep]
    return err / float(sample.space.spacing.min()), keep


def run(pipeline, sample, seed=0):
    out = pipeline(sample, da.generator_for(seed))
    return out, da.Invert(out.history[len(sample.history):], sample)


def test_affine_then_invert_is_the_identity_voxelwise_on_the_t1(t1):
    sample = with_coordinates(t1)
    out, invert = run(da.Affine(degrees=(8, 12), translation=(2, 4), scales=(1.05, 1.1)), sample)
    back = invert(out)
    assert back.space == t1.space
    err, keep = coordinate_error_voxels(sample, back)
    assert keep.mean() > 0.5
    assert err.max() < 1e-3                     # documented: affine maps to interpolation error (none here)
    # the T1 itself: twice through linear interpolation, so blurred a little, never displaced
    image, orig = back["image"][0].numpy()[keep], t1["image"][0].numpy()[keep]
    assert np.corrcoef(image, orig)[0, 1] > 0.98
    assert np.abs(image - orig).mean() < 0.05 * np.ptp(orig)


def test_elastic_then_invert_is_within_half_a_voxel_on_the_t1(t1):
    sample = with_coordinates(t1)
    out, invert = run(da.Compose([da.Elastic(max_displacement=6.0), da.Affine(degrees=5)]), sample)
    err, keep = coordinate_error_voxels(sample, invert(out))
    assert keep.mean() > 0.5
    # documented: below half a voxel everywhere (measured here: mean 0.008, max 0.06 voxel)
    assert err.mean() <= 0.1 and err.max() <= 0.5
    labels = invert(out)["label"][0][torch.from_numpy(keep)]
    assert (labels == t1["label"][0][torch.from_numpy(keep)]).float().mean() > 0.9


def test_permutations_invert_labels_exactly_and_mark_what_the_crop_lost(t1):
    pipeline = da.Compose([da.Flip(axes=0), da.Rot90(axes=(0, 1), k=1), da.Crop((64, 70, 40), mode="center"),
                           da.Pad((80, 80, 48))])
    out, invert = run(pipeline, t1)
    back = invert(out)
    assert back.space == t1.space
    covered = back["valid"][0]
    assert 0.2 < covered.float().mean() < 0.6        # the crop's block, and only it
    assert torch.equal(back["label"][0][covered], t1["label"][0][covered])
    assert torch.equal(back["image"][0][covered], t1["image"][0][covered])
    assert (back["label"][0][~covered] == 0).all()
    # a one-hot prediction of the view goes back exactly too, argmax = the labels
    onehot = torch.nn.functional.one_hot(out["label"][0].long(), 7).movedim(-1, 0).float()
    probs, seen = invert.with_coverage(onehot)
    assert torch.equal(seen, covered[None])
    assert torch.equal(probs.argmax(0)[covered], t1["label"][0][covered].long())
    assert probs.dtype == torch.float32 and (probs[:, ~covered] == 0).all()
    # an integer label map, by nearest and by argmax: the labels, in their dtype
    for mode in ("nearest", "argmax"):
        lab = invert(out["label"], mode=mode)
        assert lab.dtype == torch.uint8 and torch.equal(lab[0][covered], t1["label"][0][covered])


def test_predictions_through_an_affine_keep_dtype_and_labels():
    sample = make_volume(shape=(20, 22, 18))
    out, invert = run(da.Affine(degrees=(-15, 15)), sample)
    labels = invert(out["label"].to(torch.int64))
    assert labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= {0, 3, 7}
    probs = invert(out["image"].to(torch.float16).numpy())          # numpy in, numpy out; half kept
    assert isinstance(probs, np.ndarray) and probs.dtype == np.float16
    two = invert(torch.cat([out["label"], out["label"]]))           # every channel of a label map
    assert torch.equal(two[0], two[1])


def test_points_round_trip_through_affine_and_elastic(t1):
    centre = t1.space.center_world()
    points = centre + np.random.default_rng(0).uniform(-40, 40, (50, 3))
    sample = t1.replace(points={"lm": points})
    out, invert = run(da.Affine(degrees=(-20, 20), translation=(-5, 5), scales=(0.9, 1.1)), sample)
    assert np.abs(invert.points(out.points["lm"].numpy()) - points).max() < 1e-3
    assert np.abs(invert(out).points["lm"].numpy() - points).max() < 1e-3
    out, invert = run(da.Compose([da.Elastic(max_displacement=6.0), da.Flip(axes=1)]), sample)
    back = invert.points(out.points["lm"])                          # tensor in, tensor out
    assert isinstance(back, torch.Tensor)
    # documented: the forward push is a 30-step fixed point; the pull-back is exact
    assert (back.numpy() - points).__abs__().max() < 1e-3 * float(t1.space.spacing.min())


def test_regrid_to_another_spacing_inverts_onto_the_input_grid():
    sample = with_coordinates(make_volume(shape=(20, 22, 18)))
    out, invert = run(da.Resample(spacing=(2.0, 2.0, 2.0)), sample)
    assert out.space.shape != sample.space.shape
    back = invert(out)
    assert back.space == sample.space
    err, keep = coordinate_error_voxels(sample, back)
    assert keep.mean() > 0.4 and err.max() < 1e-3


def test_raster_keeps_its_crs_and_transform():
    sample = make_raster()
    out, invert = run(da.Compose([da.Rot90(k=1), da.Affine(degrees=10)]), sample)
    back = invert(out)
    assert back.space == sample.space and back.space.crs == sample.space.crs
    assert back["valid"].dtype == torch.bool and back["valid"].sum() < sample["valid"].sum()


def test_non_spatial_records_are_skipped_and_stay_in_the_data():
    sample = make_volume()
    out, invert = run(da.Compose([da.Gamma((1.5, 2.0)), da.Flip(axes=0)]), sample)
    back = invert(out)
    gamma = da.Gamma((1.5, 2.0))(sample, da.generator_for(0))     # the same draw: Gamma is first
    torch.testing.assert_close(back["image"], gamma["image"])
    assert [r.transform for r in back.history] == ["Compose"]       # the history says what the data went through
    only, invert = run(da.GaussianNoise(1.0), sample)
    assert invert.inverse.stages == [] and invert.space == sample.space
    assert torch.equal(invert(only)["image"], only["image"])


def test_records_from_json_invert_alike():
    sample = make_volume()
    out = da.Compose([da.Affine(degrees=10), da.Elastic(max_displacement=1.0)])(sample, da.generator_for(3))
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    a, b = da.Invert(out.history, sample.space)(out["image"]), da.Invert(records, sample.space)(out["image"])
    assert torch.equal(a, b)


def test_a_record_that_cannot_be_inverted_raises_naming_it():
    sample = make_volume(shape=(20, 22, 18))
    folding = da.Elastic(spacing=4.0, max_displacement=12.0)(sample, da.generator_for(0))
    with pytest.raises(ParameterError, match=r"records\[0\].*Elastic.*folds"):
        da.Invert(folding.history, sample)
    record = da.ParamRecord("NoSuchOp", {}, {})
    with pytest.raises(ParameterError, match=r"records\[1\]='NoSuchOp'"):
        da.Invert([da.Flip(axes=0)(sample).history[0], record], sample)


def test_wrong_inputs_are_named():
    sample = make_volume()
    out, invert = run(da.Crop((8, 8, 8)), sample)
    with pytest.raises(SpaceMismatchError, match="records make"):
        invert(sample)
    with pytest.raises(ShapeError, match=r"\(C, 8, 8, 8\)"):
        invert(sample["image"])
    with pytest.raises(ParameterError, match="mode='argmax'"):
        invert(out["image"], mode="argmax")
    with pytest.raises(ParameterError, match="source="):
        da.Invert(out.history, sample.space.shape)
    with pytest.raises(ParameterError, match="fill="):
        invert(out["label"], fill=0.5)


def test_tta_goes_through_invert():
    from domainaug.training import TestTimeAugmentation
    sample = make_volume(shape=(20, 22, 18))
    tta = TestTimeAugmentation(da.Compose([da.Flip(axes=0, p=0.5), da.Affine(degrees=(-10, 10))]), n=2)
    view = tta.view(sample, 1)
    records = view.history[len(sample.history):]
    back, covered = tta.back(view["image"], sample, records)
    ref, ref_cov = da.Invert(records, sample).with_coverage(view["image"])
    assert torch.equal(back, ref) and torch.equal(covered, ref_cov)


def test_layers_on_grids_of_their_own_go_back_onto_their_own_grid():
    from domainaug.core.space import Space
    t1_space = Space.from_spacing((30, 32, 28), 1.0)
    flair_space = Space((16, 17, 15), np.diag([2.0, 2.0, 2.0, 1.0]) + np.array(
        [[0, 0, 0, 0.3], [0, 0, 0, -0.2], [0, 0, 0, 0.1], [0, 0, 0, 0]]))
    flair_label = torch.zeros((1,) + flair_space.shape, dtype=torch.uint8)
    flair_label[:, 4:12, 5:11, 3:10] = 2
    sample = da.Sample(t1_space, {"t1": Layer(torch.rand((1,) + t1_space.shape)),
                                  "flair_label": Layer(flair_label, Role.LABEL)}, grids={"flair_label": flair_space})
    out, invert = run(da.Compose([da.Flip(axes=0), da.Crop((20, 20, 20), mode="center")]), sample)
    back = invert(out)
    assert back.space == t1_space and back.space_of("flair_label") == flair_space
    kept = back["flair_label"] > 0
    assert kept.any() and set(back["flair_label"].unique().tolist()) <= {0, 2}
    assert (flair_label[kept] == 2).all()            # exact where the crop kept it
    with pytest.raises(ParameterError, match="grids of their own"):
        da.Invert(out.history, t1_space)(out)


def test_boxes_come_back_with_the_sample(t1):
    """Inverting a Sample moves its boxes back too: exactly for affine maps and permutations (the
    corners of the box around the content are where they were)."""
    centre = t1.space.center_world()
    corners = np.concatenate([centre - 15.0, centre + 10.0])[None]
    sample = t1.replace(boxes={"lesion": da.Boxes(corners, labels=[3])})
    for pipeline in (da.Compose([da.Flip(axes=0), da.Rot90(axes=(0, 1), k=1)]),
                     da.Affine(degrees=(0.0, 0.0), translation=(-5, 5), scales=(0.9, 1.1))):
        out, invert = run(pipeline, sample)
        back = invert(out).boxes["lesion"]
        assert back.labels.tolist() == [3]
        np.testing.assert_allclose(back.data.numpy(), corners, atol=1e-6)
