"""Boxes as a target: they follow every spatial op (the enclosing box of the moved object), are
clipped and filtered with their labels in step, and convert to torchvision and MONAI boxes."""

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import Boxes
from domainaug.core.boxes import MONAI_MODES
from domainaug.core.maps import push_forward_points
from domainaug.core.transform import trace
from domainaug.training import BatchAugment, detection_targets
from domainaug.training.dataset import collate


def G(seed=0):
    return torch.Generator().manual_seed(seed)


def _object_sample(shape, spacing, radius, centre=None, block=False):
    """A disc/sphere label (radius in world units), or the block of voxels of its enclosing box, and
    the axis box on the object's outer voxel edges."""
    space = da.Space.from_spacing(shape, spacing)
    idx = np.indices(shape).reshape(len(shape), -1).T
    world = space.index_to_world(idx)
    centre = space.center_world() if centre is None else np.asarray(centre, float)
    inside = (np.linalg.norm(world - centre, axis=1) <= radius).reshape(shape)
    where = np.argwhere(inside)
    if block:
        inside[tuple(slice(lo, hi + 1) for lo, hi in zip(where.min(0), where.max(0)))] = True
    label = torch.from_numpy(inside.astype(np.uint8))[None]
    image = torch.from_numpy(inside.astype(np.float32))[None]
    box = Boxes.from_pixels(np.concatenate([where.min(0), where.max(0) + 1])[None], space, labels=[5])
    layers = {"image": da.Layer(image), "label": da.Layer(label, da.Role.LABEL, 0, interpolation="nearest")}
    return da.Sample(space, layers, boxes={"lesion": box})


def _label_box(out):
    """World enclosing box of the labelled voxels of ``out`` (their outer edges)."""
    where = torch.nonzero(out["label"][0] == 1).double().numpy()
    n = out.space.ndim
    edges = np.stack(np.meshgrid(*[[-0.5, 0.5]] * n, indexing="ij"), -1).reshape(-1, n)
    world = out.space.index_to_world((where[:, None] + edges[None]).reshape(-1, n))
    return np.concatenate([world.min(0), world.max(0)])


# A box around a disc is the enclosing box of the moved disc while the map does not turn it (a turned
# disc keeps its enclosing box, a turned box grows); a box around a block is that of any moved block.
OPS = {
    "Affine": (lambda n: da.Affine(degrees=(-30, 30), scales=(0.8, 1.2), shear=(-0.1, 0.1), translation=(-4, 4)),
               False),
    "Affine scale+shift": (lambda n: da.Affine(scales=(0.8, 1.2), translation=(-4, 4)), True),
    "Elastic": (lambda n: da.Elastic(spacing=12.0, max_displacement=3.0), False),
    "Elastic gentle": (lambda n: da.Elastic(spacing=20.0, max_displacement=1.0), True),
    "Rot90": (lambda n: da.Rot90(), True),
    "Flip": (lambda n: da.Flip(), True),
    "Crop": (lambda n: da.Crop((20,) * n), True),
    "Affine+Elastic+Crop": (lambda n: da.Compose([da.Affine(degrees=(-20, 20)), da.Elastic(
        spacing=12.0, max_displacement=2.0), da.Crop((24,) * n)]), False),
}
CASES = [(op, obj) for op, (_, disc) in sorted(OPS.items()) for obj in (["block", "disc"] if disc else ["block"])]


@pytest.mark.parametrize("op, obj", CASES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_box_around_an_object_stays_the_enclosing_box_of_the_moved_object(op, obj, ndim):
    shape, spacing = ((40, 36), (1.0, 1.5)) if ndim == 2 else ((28, 26, 24), (1.0, 1.2, 1.5))
    sample = _object_sample(shape, spacing, radius=7.0, block=obj == "block")
    for seed in range(3):
        out = OPS[op][0](ndim)(sample, G(seed))
        got = out.boxes["lesion"].data[0].numpy()
        want = _label_box(out)
        assert np.abs(got - want).max() <= float(out.space.spacing.max()), (seed, got, want)
        assert out.boxes["lesion"].labels.tolist() == [5]


def test_a_box_cut_by_a_crop_is_clipped_to_the_field_of_view():
    sample = _object_sample((40, 40), (1.0, 1.0), radius=8.0, centre=(10.0, 20.0))
    out = da.Crop((40, 20), mode="center").apply(sample, {"start": [0, 20]})       # keeps y >= 19.5
    box = out.boxes["lesion"].data[0].numpy()
    assert box[1] == pytest.approx(19.5) and np.abs(box - _label_box(out)).max() < 1e-9
    assert 0.4 < float(out.boxes["lesion"].visibility[0]) < 0.6


def _two_boxes(min_visibility=0.0, min_size=0.0):
    space = da.Space.from_spacing((100, 100), 1.0)
    # box 0: x 20..80, y from the edge to 19.5; box 1: the middle
    boxes = Boxes([[20.0, -0.5, 80.0, 19.5], [40.0, 40.0, 60.0, 60.0]], labels=[7, 9],
                  min_visibility=min_visibility, min_size=min_size)
    return da.Sample(space, {"image": da.Layer(torch.zeros(1, 100, 100))}, boxes={"b": boxes})


def test_visibility_filter_drops_a_box_cropped_to_ten_percent_only_when_asked():
    crop = da.Crop(100 - 18)                                 # from index 18: box 0 keeps y 17.5..19.5 = 10%
    for min_visibility, kept in ((0.2, [9]), (0.05, [7, 9]), (0.0, [7, 9])):
        out = crop.apply(_two_boxes(min_visibility), {"start": [18, 18]})
        b = out.boxes["b"]
        assert b.labels.tolist() == kept, min_visibility
        if 7 in kept:
            assert float(b.visibility[0]) == pytest.approx(0.1, rel=1e-9)
            np.testing.assert_allclose(b.data[0].numpy(), [20.0, 17.5, 80.0, 19.5])


def test_visibility_multiplies_over_ops_and_min_size_filters_in_world_units():
    sample = _two_boxes(min_visibility=0.5)
    once = da.Crop((100, 90)).apply(sample, {"start": [0, 10]})          # box 0: y 9.5..19.5 of -0.5..19.5
    assert once.boxes["b"].labels.tolist() == [7, 9]
    assert float(once.boxes["b"].visibility[0]) == pytest.approx(0.5)
    twice = da.Crop((100, 80)).apply(once, {"start": [0, 5]})            # keeps 5 of 10: 25% of the original
    assert twice.boxes["b"].labels.tolist() == [9]
    small = da.Crop((100, 82)).apply(_two_boxes(min_size=4.0), {"start": [0, 17]})   # box 0 is 3 wide now
    assert small.boxes["b"].labels.tolist() == [9]


def test_boxes_that_leave_the_view_are_dropped_and_points_are_flagged():
    sample = _two_boxes().replace(points={"p": torch.tensor([[50.0, 50.0], [5.0, 5.0]], dtype=torch.float64)})
    out = da.Affine(translation=[(60, 60), (0, 0)]).apply(sample, {"degrees": [0.0], "scales": [1.0, 1.0],
                                                                   "shear": [0.0], "translation": [60.0, 0.0]})
    assert out.boxes["b"].labels.tolist() == [7]          # the middle box left; the full-width one is cut
    assert out.points_inside("p").tolist() == [False, True]
    torch.testing.assert_close(out.points["p"], sample.points["p"] + torch.tensor([60.0, 0.0], dtype=torch.float64))
    assert sample.points_inside("p").tolist() == [True, True]


def _oriented_sample(spacing=(1.0, 1.0)):
    space = da.Space.from_spacing((80, 80), spacing)
    c = space.center_world()
    boxes = Boxes([[c[0] + 5, c[1] - 3, 20.0, 6.0, 15.0], [c[0] - 10, c[1] + 10, 8.0, 8.0, -40.0]],
                  labels=[1, 2], kind="oriented")
    return da.Sample(space, {"image": da.Layer(torch.zeros(1, 80, 80))}, boxes={"ships": boxes})


@pytest.mark.parametrize("degrees", [33.0, -71.0, 90.0, 180.0])
def test_oriented_boxes_keep_their_area_and_turn_by_the_rotation(degrees):
    sample = _oriented_sample()
    params = {"degrees": [degrees], "scales": [1.0, 1.0], "shear": [0.0], "translation": [0.0, 0.0]}
    out = da.Affine().apply(sample, params)
    before, after = sample.boxes["ships"], out.boxes["ships"]
    np.testing.assert_allclose(after.data[:, 2] * after.data[:, 3], before.data[:, 2] * before.data[:, 3], rtol=1e-9)
    turned = (before.data[:, 4].numpy() + degrees + 90) % 180 - 90
    np.testing.assert_allclose(after.data[:, 4].numpy(), turned, atol=1e-9)
    # the corners are the rotated corners (as a set: the same rectangle)
    forward = da.Affine.forward(sample.space, params)
    rotated = before.corners() @ forward[:2, :2].T + forward[:2, 2]
    for a, b in zip(after.corners(), rotated):
        d = np.linalg.norm(a[:, None] - b[None], axis=-1)
        assert d.min(1).max() < 1e-9


def test_oriented_boxes_under_elastic_enclose_the_moved_rectangle_tightly():
    sample = _oriented_sample()
    out = da.Elastic(spacing=15.0, max_displacement=3.0)(sample, G(3))
    stages = trace(sample.space, out.history).stages
    for before, after in zip(sample.boxes["ships"].data.numpy(), out.boxes["ships"].data.numpy()):
        unit = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 101), np.linspace(-0.5, 0.5, 101), indexing="ij"),
                        -1).reshape(-1, 2)
        a = np.radians(before[4])                      # a dense fill of the rectangle, moved point by point
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        dense = before[:2] + (unit * before[2:4]) @ rot.T
        moved = push_forward_points(stages, dense)
        b = np.radians(after[4])
        p = (moved - after[:2]) @ np.array([np.cos(b), np.sin(b)])
        q = (moved - after[:2]) @ np.array([-np.sin(b), np.cos(b)])
        assert np.abs(p).max() <= after[2] / 2 + 0.1 and np.abs(q).max() <= after[3] / 2 + 0.1
        assert after[2] <= np.ptp(p) + 0.1 and after[3] <= np.ptp(q) + 0.1


def test_clipping_on_a_rotated_grid_matches_a_dense_count():
    """A 2D grid turned by 30 degrees: the visible fraction of a world box is the polygon clip."""
    a = np.radians(30.0)
    affine = np.eye(3)
    affine[:2, :2] = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * 2.0
    space = da.Space((30, 30), affine)
    box = np.array([20.0, 10.0, 60.0, 40.0])
    sample = da.Sample(space, {"image": da.Layer(torch.zeros(1, 30, 30))}, boxes={"b": Boxes(box[None])})
    out = da.Crop(30).apply(sample, {"start": [0, 0]})
    xs, ys = np.meshgrid(np.linspace(20, 60, 401), np.linspace(10, 40, 301), indexing="ij")
    pts = np.stack([xs.ravel(), ys.ravel()], 1)
    idx = space.world_to_index(pts)
    inside = np.all((idx >= -0.5) & (idx <= 29.5), axis=1)
    assert float(out.boxes["b"].visibility[0]) == pytest.approx(inside.mean(), abs=0.01)
    kept = pts[inside]
    np.testing.assert_allclose(out.boxes["b"].data[0].numpy(), np.concatenate([kept.min(0), kept.max(0)]), atol=0.15)


def test_torchvision_pixel_boxes_match_the_mask_and_round_trip():
    space = da.Space((30, 40), np.array([[0.0, 10.0, 500000.0], [-10.0, 0.0, 4200000.0], [0, 0, 1]]))
    mask = np.zeros((30, 40), bool)
    mask[5:12, 20:31] = True                                      # rows 5..11, cols 20..30
    box = Boxes.from_pixels(np.array([[5, 20, 12, 31]]), space, labels=[3])
    target = box.to_torchvision(space)
    assert target["boxes"].tolist() == [[20.0, 5.0, 31.0, 12.0]] and target["labels"].tolist() == [3]
    assert target["boxes"].dtype == torch.float32
    again = Boxes.from_torchvision(target["boxes"], space, labels=target["labels"])
    torch.testing.assert_close(again.data, box.data)
    # world: x east along the columns, y north up the rows (voxel edges)
    np.testing.assert_allclose(box.data[0].numpy(), [500195.0, 4199885.0, 500305.0, 4199955.0])
    oriented = Boxes([[500250.0, 4199900.0, 40.0, 20.0, 30.0]], kind="oriented")
    eight = oriented.to_torchvision(space)["boxes"]
    assert eight.shape == (1, 8)
    back = Boxes.from_torchvision(eight.double(), space)
    np.testing.assert_allclose(back.corners(), oriented.corners(), atol=1e-3)
    with pytest.raises(da.ShapeError, match="2D"):
        Boxes([[0, 0, 0, 1, 1, 1.0]]).to_torchvision(da.Space.from_spacing((4, 4, 4)))


def test_monai_boxes_match_monai_modes_and_masks():
    box_utils = pytest.importorskip("monai.data.box_utils")
    from monai.apps.detection.transforms.box_ops import convert_box_to_mask
    space = da.Space.from_spacing((20, 24, 16), (1.0, 1.5, 2.0))
    mask = np.zeros((20, 24, 16), np.uint8)
    mask[3:9, 10:20, 4:7] = 4
    where = np.argwhere(mask)
    ours = Boxes.from_pixels(np.concatenate([where.min(0), where.max(0) + 1])[None], space, labels=[4])
    standard, labels = ours.to_monai(space)
    assert standard.tolist() == [[3.0, 10.0, 4.0, 9.0, 20.0, 7.0]]
    rebuilt = convert_box_to_mask(standard, labels, (20, 24, 16), bg_label=0)
    assert np.array_equal(np.asarray(rebuilt)[0], mask)
    for mode in MONAI_MODES[3]:
        got, _ = ours.to_monai(space, mode)
        ref = box_utils.convert_box_mode(standard, src_mode="xyzxyz", dst_mode=mode)
        torch.testing.assert_close(got, torch.as_tensor(ref, dtype=torch.float64))
        back = Boxes.from_monai(got, space, labels, mode=mode)
        torch.testing.assert_close(back.data, ours.data)
    with pytest.raises(da.ParameterError, match="^mode="):
        ours.to_monai(space, "xyxy")


def test_collate_and_batch_augment_give_boxes_per_sample():
    a = _oriented_sample()
    b = a.replace(boxes={"ships": a.boxes["ships"].select([1])})
    batch = collate([a, b])
    assert [len(x["ships"]) for x in batch["boxes"]] == [2, 1]
    assert batch["boxes"][1]["ships"].labels.tolist() == [2]
    augment = BatchAugment(da.Affine(degrees=(-20, 20)), seed=1)
    images = torch.zeros(2, 1, 80, 80)
    out = augment(images, space=a.space, boxes=[a.boxes, b.boxes], points=[{}, {"p": [[1.0, 2.0]]}])
    assert [len(x["ships"]) for x in out["boxes"]] == [2, 1]
    assert out["points_inside"][1]["p"].tolist() == [True]
    alone = da.Affine(degrees=(-20, 20))(b, da.generator_for(1, 0, 1))
    torch.testing.assert_close(out["boxes"][1]["ships"].data, alone.boxes["ships"].data)
    targets = detection_targets(out, "ships")
    assert [t["boxes"].shape for t in targets] == [(2, 8), (1, 8)]
    torch.testing.assert_close(targets[1]["boxes"], alone.boxes["ships"].to_torchvision(alone.space)["boxes"])
    scan = _object_sample((20, 20, 20), 1.0, 4.0)
    monai = detection_targets(collate([scan, scan.replace(boxes={})]), "lesion", style="monai")
    assert monai[0]["boxes"].shape == (1, 6) and monai[1]["boxes"].shape == (0, 6)
    assert monai[0]["labels"].tolist() == [5]


def test_bad_boxes_name_the_problem():
    with pytest.raises(da.ParameterError, match="^boxes="):
        Boxes([[5.0, 0.0, 1.0, 1.0]])
    with pytest.raises(da.ParameterError, match="^labels="):
        Boxes([[0.0, 0.0, 1.0, 1.0]], labels=[1, 2])
    with pytest.raises(da.ParameterError, match="^min_visibility="):
        Boxes([[0.0, 0.0, 1.0, 1.0]], min_visibility=1.5)
    with pytest.raises(da.ParameterError, match="^kind="):
        Boxes([[0.0, 0.0, 1.0, 1.0]], kind="rotated")
    with pytest.raises(da.ShapeError, match="3D"):
        da.Sample(da.Space.from_spacing((4, 4, 4)), {"image": da.Layer(torch.zeros(1, 4, 4, 4))},
                  boxes={"b": Boxes([[0.0, 0.0, 1.0, 1.0]])})
    with pytest.raises(da.ParameterError, match="boxes"):
        da.Sample(da.Space.from_spacing((4, 4)), {"image": da.Layer(torch.zeros(1, 4, 4))}, boxes={"b": [[0, 0, 1, 1]]})


def test_the_docs_detection_examples_run(doc_blocks):
    blocks = doc_blocks("detection.md", "# Detection targets")
    assert len(blocks) == 2
    oriented, lesion = ({} for _ in blocks)
    exec(blocks[0], oriented)                                 # noqa: S102 - the page's own code
    exec(blocks[1], lesion)                                   # noqa: S102
    assert oriented["target"]["boxes"].shape[1] == 8 and len(oriented["target"]["labels"]) >= 1
    assert lesion["boxes"].shape == (1, 6) and lesion["labels"].tolist() == [1]
    out = lesion["out"]
    where = torch.nonzero(out["label"][0] == 1).double()
    centre = where.mean(0) + 0.5                                  # voxel i spans [i, i + 1)
    assert torch.allclose(lesion["boxes"][0, :3], centre, atol=1.0)


def test_mixup_keeps_both_box_sets_and_cutmix_cuts_and_pastes_them():
    a = _two_boxes()                                              # box 0: x 20..80, y -0.5..19.5 (label 7)
    b = a.replace(boxes={"b": Boxes([[10.0, 60.0, 30.0, 90.0]], labels=[4])})
    mixed = da.MixUp().replay([a, b], [{"partner": 1, "lam": 0.6}, {"partner": 0, "lam": 0.6}])
    assert mixed[0].boxes["b"].labels.tolist() == [7, 9, 4] and mixed[1].boxes["b"].labels.tolist() == [4, 7, 9]
    # CutMix: rows 0..49 (x < 49.5) of the partner pasted into a
    cut = da.CutMix().replay([a, b], [{"partner": 1, "start": [0, 0], "size": [50, 100], "lam": None},
                                      {"partner": 0, "start": [0, 0], "size": [50, 100], "lam": None}])
    first = cut[0].boxes["b"]
    assert first.labels.tolist() == [7, 9, 4]                   # a's two boxes cut, b's inside the block
    np.testing.assert_allclose(first.data[0].numpy(), [49.5, -0.5, 80.0, 19.5])   # x 20..49.5 went: cut off
    assert float(first.visibility[0]) == pytest.approx(30.5 / 60)
    np.testing.assert_allclose(first.data[1].numpy(), [49.5, 40.0, 60.0, 60.0])
    np.testing.assert_allclose(first.data[2].numpy(), [10.0, 60.0, 30.0, 90.0])
    second = cut[1].boxes["b"]                                   # b keeps nothing under a's block but gets a's
    assert second.labels.tolist() == [7, 9]
    np.testing.assert_allclose(second.data[0].numpy(), [20.0, -0.5, 49.5, 19.5])


def test_clipping_on_an_oblique_3d_grid_matches_a_dense_count():
    a = np.radians(30.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) * 1.5
    space = da.Space((20, 20, 10), affine)
    box = np.array([10.0, 5.0, 2.0, 36.0, 30.0, 20.0])
    sample = da.Sample(space, {"image": da.Layer(torch.zeros(1, 20, 20, 10))}, boxes={"b": Boxes(box[None])})
    out = da.Crop((20, 20, 10)).apply(sample, {"start": [0, 0, 0]})
    grid = np.stack(np.meshgrid(*[np.linspace(lo, hi, 41) for lo, hi in zip(box[:3], box[3:])], indexing="ij"), -1)
    pts = grid.reshape(-1, 3)
    idx = space.world_to_index(pts)
    inside = np.all((idx >= -0.5) & (idx <= np.array(space.shape) - 0.5), axis=1)
    assert float(out.boxes["b"].visibility[0]) == pytest.approx(inside.mean(), abs=0.02)
    from scipy.optimize import linprog  # the extent of box ∩ view along each axis, by linear programming
    inv = space.inverse
    a_ub = np.concatenate([inv[:3, :3], -inv[:3, :3]])
    b_ub = np.concatenate([np.array(space.shape) - 0.5 - inv[:3, 3], 0.5 + inv[:3, 3]])
    bounds = list(zip(box[:3], box[3:]))
    want = [linprog(sign * np.eye(3)[k], A_ub=a_ub, b_ub=b_ub, bounds=bounds).x[k]
            for sign in (1, -1) for k in range(3)]
    np.testing.assert_allclose(out.boxes["b"].data[0].numpy(), want, atol=1e-6)
