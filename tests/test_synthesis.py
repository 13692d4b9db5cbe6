"""Synthesis for rare classes: LabelsToImage, LesionPaste, GenerativeSynthesis (properties, replay,
refusals). Models are built here; nothing is downloaded."""

import json

import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import medical as md
from domainaug.errors import NoDataError, ParameterError, ShapeError, SpaceMismatchError
from domainaug.testing import assert_samples_equal, make_raster, make_volume

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731


def blocks(shape=(24, 20, 16), spacing=(1.0, 1.5, 2.0), seed=0):
    """Four labels in slabs (0, 2, 5, 9) and a smooth real image."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    label[6:12], label[12:18], label[18:] = 2, 5, 9
    image = rng.normal(100, 10, shape).astype(np.float32)
    return da.Sample.from_numpy(image, label=label, spacing=spacing)


# --- LabelsToImage ---------------------------------------------------------------------------
def test_each_label_gets_its_drawn_mean_within_noise_and_labels_stay():
    s = blocks()
    t = md.LabelsToImage(mean=(50.0, 200.0), std=(2.0, 10.0), units="raw", blur=0.0, bias=0.0)
    out = t(s, G(3))
    p = out.history[-1].params
    image, label = out["image_from_labels"][0].double(), out["label"][0]
    assert torch.equal(out["label"], s["label"]) and torch.equal(out["image"], s["image"])
    assert sorted(p["mean"], key=int) == ["0", "2", "5", "9"]
    for v, (m,) in p["mean"].items():
        values = image[label == int(v)]
        (sd,) = p["std"][v]
        assert abs(values.mean().item() - m) < 4 * sd / np.sqrt(values.numel())
        assert values.std().item() == pytest.approx(sd, rel=0.15)
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert_samples_equal(out, da.replay(s, records))


def test_std_zero_gives_each_label_exactly_its_mean_and_percentile_units_follow_the_image():
    s = blocks()
    out = md.LabelsToImage(image="image", mean=(0.0, 1.0), std=0.0, blur=0.0, bias=0.0)(s, G(1))
    lo, hi = md.robust_range(s["image"], None)
    for v, (m,) in out.history[-1].params["mean"].items():
        values = out["image"][0][s["label"][0] == int(v)]
        torch.testing.assert_close(values, torch.full_like(values, float(lo + m * (hi - lo))), rtol=0, atol=1e-4)


def test_paste_changes_only_the_chosen_labels():
    s = blocks()
    out = md.LabelsToImage(image="image", labels=[5], paste=True, blur=1.5, bias=0.2)(s, G(2))
    changed = out["image"] != s["image"]
    inside = s["label"] == 5
    assert bool(changed[inside].all()) and not bool(changed[~inside].any())
    assert list(out.history[-1].params["mean"]) == ["5"]


def test_blur_resolution_and_bias_change_the_image_but_keep_the_label_means_near():
    s = blocks()
    plain = md.LabelsToImage(mean=(50.0, 200.0), std=1.0, units="raw", blur=0.0, bias=0.0)
    full = md.LabelsToImage(mean=(50.0, 200.0), std=1.0, units="raw", blur=1.0, resolution=3.0, bias=0.1)
    a, b = plain(s, G(4)), full(s, G(4))
    assert a.history[-1].params["mean"] == b.history[-1].params["mean"]
    assert not torch.equal(a["image_from_labels"], b["image_from_labels"])
    assert b.history[-1].params["resolution"] is not None


def test_nodata_stays_untouched_on_a_raster():
    r = make_raster()
    out = md.LabelsToImage(image="image", blur=(0.5, 1.0))(r, G(0))
    invalid = ~r["valid"][0]
    assert torch.equal(out["image"][:, invalid], r["image"][:, invalid])
    assert bool((out["image"][:, ~invalid] != r["image"][:, ~invalid]).all())
    new = md.LabelsToImage()(r, G(0))
    fill = new.layer_info("image_from_labels").fill
    assert bool((new["image_from_labels"][:, invalid] == fill).all())


def test_labels_to_image_refuses_by_name():
    s = blocks()
    two = s.with_layers(label=da.Layer(torch.cat([s["label"], s["label"]]), da.Role.LABEL))
    with pytest.raises(ShapeError, match="2 channels"):
        md.LabelsToImage()(two, G())
    with pytest.raises(ParameterError, match="^label="):
        md.LabelsToImage(label="seg")(s, G())
    with pytest.raises(ParameterError, match="^image="):
        md.LabelsToImage(image="nope", labels=[2], paste=True)(s, G())
    with pytest.raises(ParameterError, match="^labels="):
        md.LabelsToImage(paste=True)


# --- LesionPaste -----------------------------------------------------------------------------
def lesion_volume(centre=(8, 10, 8), radius=3.0, shape=(20, 24, 18), spacing=(1.0, 1.0, 1.0), offset=0.0, seed=0):
    """A brain-ish volume: labels 1 (tissue, the region) inside a border, 0 outside, and a lesion
    (label 4) ball at ``centre`` that is brighter by 80."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    label = np.zeros(shape, np.uint8)
    label[2:-2, 2:-2, 2:-2] = 1
    ball = np.linalg.norm((idx - np.array(centre)) * np.array(spacing), axis=-1) <= radius
    label[ball] = 4
    image = (100 + offset + rng.normal(0, 3, shape) + 80 * ball).astype(np.float32)
    return da.Sample.from_numpy(image, label=label, spacing=spacing)


def test_paste_keeps_labels_outside_and_adds_the_lesion_only_inside_the_region():
    donor = lesion_volume()
    recipient = lesion_volume(centre=(-50, -50, -50))              # no lesion of its own
    paste = md.LesionPaste(lesion=4, region="label", region_values=[1], blend=2.0)
    for seed in range(5):
        out = paste([recipient], G(seed), donors=[donor])[0]
        changed = out["label"] != recipient["label"]
        region = recipient["label"] == 1
        assert not bool(changed[~region].any())                    # outside the region: untouched
        assert set(out["label"][changed].unique().tolist()) == {4}   # only the lesion label is added
        assert int(changed.sum()) == int((donor["label"] == 4).sum())  # the whole lesion fits: all of it
        image_changed = out["image"] != recipient["image"]
        assert not bool(image_changed[~region].any())


def test_same_grid_no_jitter_is_an_exact_copy_of_the_lesion():
    donor = lesion_volume()
    recipient = lesion_volume(centre=(-50, -50, -50), seed=1)
    out = md.LesionPaste(lesion=4, region="label", region_values=[1], match="none", blend=0.0)(
        [recipient], G(0), donors=[donor])[0]
    c = out.history[-1].params["centre"]
    shift = np.array(c) - np.round(np.argwhere(donor["label"][0].numpy() == 4).mean(0)).astype(int)
    where = np.argwhere(donor["label"][0].numpy() == 4)
    moved = where + shift
    np.testing.assert_array_equal(out["image"][0].numpy()[tuple(moved.T)], donor["image"][0].numpy()[tuple(where.T)])
    assert int((out["image"] != recipient["image"]).sum()) == len(where)        # hard paste: lesion voxels only


def test_intensity_is_matched_to_the_recipients_surrounding_tissue():
    donor = lesion_volume(offset=300.0)                      # a scanner 300 units brighter
    recipient = lesion_volume(centre=(-50, -50, -50), seed=1)
    out = md.LesionPaste(lesion=4, region="label", region_values=[1], match="mean", blend=0.0)(
        [recipient], G(0), donors=[donor])[0]
    pasted = (out["label"] == 4)
    # donor lesion 100 + 300 + 80; matched to a recipient ring of ~100: about 180
    assert out["image"][pasted].mean().item() == pytest.approx(180.0, abs=3.0)
    raw = md.LesionPaste(lesion=4, region="label", region_values=[1], match="none", blend=0.0)(
        [recipient], G(0), donors=[donor])[0]
    assert raw["image"][raw["label"] == 4].mean().item() == pytest.approx(480.0, abs=3.0)


def test_replay_with_the_same_donors_is_bit_exact_and_other_donors_are_refused():
    donors = [lesion_volume(), lesion_volume(centre=(12, 12, 10), radius=4.0, seed=3)]
    recipients = [lesion_volume(centre=(-50, -50, -50), seed=s) for s in (5, 6, 7)]
    paste = md.LesionPaste(mode="carve", lesion=4, region="label", region_values=[1], degrees=(-30, 30),
                           scales=(0.8, 1.2), blend=2.0, margin=(-1.0, 3.0))
    outs = paste(recipients, G(9), donors=donors)
    again = paste(recipients, G(9), donors=donors)
    records = json.loads(json.dumps([o.history[-1].to_dict() for o in outs]))
    rebuilt = md.LesionPaste(**records[0]["config"])
    replayed = rebuilt.replay(recipients, [r["params"] for r in records], donors=donors)
    for a, b, c in zip(outs, again, replayed):
        assert_samples_equal(a, b)
        assert_samples_equal(a, c)
    with pytest.raises(ParameterError, match="same donors"):
        rebuilt.replay(recipients, [r["params"] for r in records], donors=donors[::-1])


def test_carve_pastes_a_zone_around_the_lesion():
    donor = lesion_volume()
    recipient = lesion_volume(centre=(-50, -50, -50), seed=1)
    out = md.LesionPaste(mode="carve", lesion=4, region="label", region_values=[1], margin=2.0, match="none",
                         blend=0.0)([recipient], G(0), donors=[donor])[0]
    lesion = int((out["label"] == 4).sum())
    changed = int((out["image"] != recipient["image"]).sum())
    assert lesion == int((donor["label"] == 4).sum())
    assert changed > 1.5 * lesion              # the carved zone: the lesion and 2 mm of the donor around it


def test_a_donor_of_another_voxel_size_is_resampled_and_keeps_its_size_in_mm():
    donor = lesion_volume(centre=(16, 20, 16), radius=4.0, shape=(40, 48, 36), spacing=(0.5, 0.5, 0.5))
    recipient = lesion_volume(centre=(-50, -50, -50), seed=1)           # 1 mm voxels
    out = md.LesionPaste(lesion=4, region="label", region_values=[1])([recipient], G(0), donors=[donor])[0]
    donor_mm3 = int((donor["label"] == 4).sum()) * 0.125
    pasted_mm3 = int((out["label"] == 4).sum()) * 1.0
    assert pasted_mm3 == pytest.approx(donor_mm3, rel=0.2)


def test_lesion_paste_refusals_are_named():
    donor, recipient = lesion_volume(), lesion_volume(centre=(-50, -50, -50))
    with pytest.raises(NoDataError, match="no donor has a lesion"):
        md.LesionPaste(lesion=9)([recipient], G(), donors=[donor])
    with pytest.raises(SpaceMismatchError, match="2D"):
        flat = make_raster()
        flat = flat.with_layers(label=da.Layer(torch.where(flat["label"] == 1, 4, 0).to(torch.uint8), da.Role.LABEL))
        md.LesionPaste(lesion=4).replay([recipient], [{"donor": 0, "component": 1, "lesion_voxels": int(
            (flat["label"] == 4).sum()), "centre": [5, 5, 5], "degrees": [0.0], "scale": 1.0, "margin": 0.0}],
            donors=[flat])
    for name, call in [("mode", lambda: md.LesionPaste(mode="cut")), ("lesion", lambda: md.LesionPaste(lesion=0)),
                       ("match", lambda: md.LesionPaste(match="hist")), ("ring", lambda: md.LesionPaste(ring=0)),
                       ("blend", lambda: md.LesionPaste(blend=-1)), ("p", lambda: md.LesionPaste(p=2)),
                       ("region_values", lambda: md.LesionPaste(region_values=[2]))]:
        with pytest.raises(ParameterError, match=f"^{name}="):
            call()


def test_skipped_pastes_are_recorded_and_pass_through():
    donor, recipient = lesion_volume(), lesion_volume(centre=(-50, -50, -50))
    out = md.LesionPaste(lesion=4, p=0.0)([recipient], G(), donors=[donor])[0]
    assert out.history[-1].params == {"applied": False}
    assert_samples_equal(out, recipient)


def test_without_donors_the_batch_is_its_own_pool():
    a, b = lesion_volume(), lesion_volume(centre=(-50, -50, -50), seed=2)
    outs = md.LesionPaste(lesion=4, region="label", region_values=[1])([a, b], G(0))
    assert outs[1].history[-1].params["donor"] == 0           # b has no lesion: a is its only donor
    assert int((outs[1]["label"] == 4).sum()) > 0


# --- GenerativeSynthesis ---------------------------------------------------------------------
class Conv1x1(torch.nn.Module):
    """A 1x1x1 convolution of (condition, noise): the tiny generator of these tests."""

    def __init__(self, out=1):
        super().__init__()
        self.conv = torch.nn.Conv3d(2, out, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([10.0, 5.0]).view(1, 2, 1, 1, 1).expand(out, 2, 1, 1, 1))
            self.conv.bias.fill_(50.0)

    def forward(self, condition, noise):
        return self.conv(torch.cat([condition, noise], 1))


def test_generator_fills_the_region_only_and_replays_from_a_torchscript_file(tmp_path):
    s = make_volume()
    path = tmp_path / "generator.pt"
    torch.jit.save(torch.jit.script(Conv1x1().eval()), str(path))
    t = md.GenerativeSynthesis(str(path), region_values=[7], context=2.0)
    out = t(s, G(1))
    region = s["label"] == 7
    changed = out["image"] != s["image"]
    assert bool(changed[region].all()) and not bool(changed[~region].any())
    assert torch.equal(out["label"], s["label"])
    values = out["image"][region]
    assert abs(values.mean().item() - (50 + 10 * 7)) < 5 * 5 / np.sqrt(values.numel()) + 1e-3   # noise is N(0, 1)
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert_samples_equal(out, da.replay(s, records))
    other = t(s, G(2))
    assert not torch.equal(other["image"], out["image"])     # the noise follows the sample's generator


def test_a_live_module_runs_and_its_record_refuses_to_rebuild_by_name():
    s = make_volume()
    net = Conv1x1().eval()
    t = md.GenerativeSynthesis(net, region_values=[3], blend=1.5)
    out = t(s, G(0))
    record = out.history[-1]
    assert record.config["model"] == "live:Conv1x1"
    with pytest.raises(ParameterError, match="^model=.*live module"):
        da.replay(s, [record.to_dict()])
    again = md.GenerativeSynthesis(net, region_values=[3], blend=1.5).apply(s, record.params)
    assert torch.equal(again["image"], out["image"])


def test_generator_output_of_the_wrong_shape_is_refused():
    s = make_volume()
    with pytest.raises(ShapeError, match="expected"):
        md.GenerativeSynthesis(Conv1x1(out=2).eval(), region_values=[7])(s, G(0))
    with pytest.raises(ParameterError, match="^model="):
        md.GenerativeSynthesis("/no/such/file.pt")


def test_labels_to_image_matches_torchio_per_label_statistics():
    tio = pytest.importorskip("torchio")
    s = blocks(shape=(32, 24, 20))
    ours = md.LabelsToImage(mean=0.4, std=0.05, units="raw", blur=0.0, bias=0.0)(s, G(0))["image_from_labels"][0]
    ranks = torch.bucketize(s["label"].long(), torch.tensor([0, 2, 5, 9]))       # TorchIO wants labels 0..K-1
    subject = tio.Subject(label=tio.LabelMap(tensor=ranks, affine=np.diag([1.0, 1.5, 2.0, 1.0])))
    torch.manual_seed(0)
    theirs = tio.RandomLabelsToImage(label_key="label", mean=[0.4] * 4, std=[0.05] * 4)(subject)
    theirs = theirs["image_from_labels"].data[0]
    for v in (0, 2, 5, 9):
        a, b = ours[s["label"][0] == v].double(), theirs[s["label"][0] == v].double()
        assert a.mean().item() == pytest.approx(b.mean().item(), abs=4 * 0.05 / np.sqrt(a.numel()) * 2)
        assert a.std().item() == pytest.approx(b.std().item(), rel=0.1)


def test_lesion_paste_is_a_mixing_collate_over_the_batch():
    from domainaug.training import mixing_collate
    batch = [lesion_volume(), lesion_volume(centre=(-50, -50, -50), seed=2)]
    collate = mixing_collate(md.LesionPaste(lesion=4, region="label", region_values=[1]), seed=3)
    out = collate(batch)
    assert out["label"].shape[0] == 2
    assert int((out["label"][1] == 4).sum()) > 0                   # the lesion-free sample got one
    assert [r["transform"] for r in out["records"][1]] == ["LesionPaste"]


def test_lesion_paste_keeps_dtypes_and_odd_samples_end_in_a_named_error():
    donor = lesion_volume()
    recipient = lesion_volume(centre=(-50, -50, -50), seed=1)
    recipient = recipient.with_layers(image=da.Layer(recipient["image"].double(), da.Role.INTENSITY))
    out = md.LesionPaste(lesion=4, region="label", region_values=[1])([recipient], G(0), donors=[donor])[0]
    assert out["image"].dtype == torch.float64 and out["label"].dtype == torch.uint8
    assert set(out["label"].unique().tolist()) <= {0, 1, 4}
    empty = recipient.with_layers(label=da.Layer(torch.zeros_like(recipient["label"]), da.Role.LABEL))
    with pytest.raises(NoDataError, match="region"):
        md.LesionPaste(lesion=4, region="label", region_values=[1])([empty], G(0), donors=[donor])


def test_labels_to_image_on_the_real_t1_replaces_white_matter_only(fixtures):
    import domainaug.io as dio
    t1 = dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz",
                  label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")
    t = md.LabelsToImage(image="image", labels=[6], paste=True, mean=(1.2, 1.4), std=0.02, blur=0.0, bias=0.0)
    out = t(t1, G(0))
    wm = t1["label"] == 6
    assert not bool((out["image"] != t1["image"])[~wm].any())
    lo, hi = md.robust_range(t1["image"], None)
    (m,) = out.history[-1].params["mean"]["6"]
    assert out["image"][wm].double().mean().item() == pytest.approx(float(lo + m * (hi - lo)), rel=1e-3)


def test_generator_blend_reaches_only_blend_mm_beyond_the_region():
    from scipy import ndimage
    s = make_volume()
    out = md.GenerativeSynthesis(Conv1x1().eval(), region_values=[7], blend=3.0, context=6.0)(s, G(0))
    region = (s["label"][0] == 7).numpy()
    distance = ndimage.distance_transform_edt(~region, sampling=list(s.space.spacing))
    changed = (out["image"] != s["image"])[0].numpy()
    assert changed[region].all()
    assert distance[changed].max() < 3.0 and changed[(distance > 0) & (distance < 1.5)].any()


def test_the_rare_lesion_experiment_inserts_its_lesions_in_tissue_and_its_paste_replays(fixtures):
    import importlib.util
    from pathlib import Path

    import domainaug.io as dio
    path = Path(__file__).resolve().parents[1] / "experiments" / "rare_lesion.py"
    spec = importlib.util.spec_from_file_location("rare_lesion", path)
    rl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rl)
    t1 = dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz",
                  label=fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")
    t1 = md.Reorient("RAS")(t1)
    head = da.Crop([72, 62, 128]).apply(t1, {"start": [32, 0, 0]})
    out = rl.with_lesions(head, 4, per_slab=2)
    lesion = out["label"][0] == rl.LESION
    assert 0 < float(lesion.double().mean()) < 0.005
    under = head["label"][0][lesion]
    assert float(torch.isin(under, torch.tensor([5, 6], dtype=under.dtype)).double().mean()) > 0.8   # mostly in GM/WM
    slabs = [da.Crop([18, 62, 128]).apply(out, {"start": [18 * i, 0, 0]}) for i in range(4)]
    step = rl.PasteFromPool(md.LesionPaste(lesion=rl.LESION, region="label", region_values=[5, 6]), donors=slabs)
    a = step(slabs[0], G(1))
    b = step.apply(slabs[0], a.history[-1].params)
    assert_samples_equal(a.replace(history=[]), b.replace(history=[]))
    assert int((a["label"] == rl.LESION).sum()) > int((slabs[0]["label"] == rl.LESION).sum())


def test_per_label_ranges_as_torchio_users_give_them():
    s = blocks()
    t = md.LabelsToImage(mean={0: 10.0, 2: (20.0, 30.0), 5: 50.0, 9: 90.0}, std=0.0, units="raw", blur=0.0, bias=0.0)
    again = da.transform_from_dict(json.loads(json.dumps(t.to_dict())))    # keys come back as strings
    assert again.to_dict() == t.to_dict()
    out = again(s, G(0))
    image, label = out["image_from_labels"][0], s["label"][0]
    for v, expected in ((0, 10.0), (5, 50.0), (9, 90.0)):
        assert bool((image[label == v] == expected).all())
    assert 20.0 <= float(image[label == 2][0]) <= 30.0
    with pytest.raises(ParameterError, match="^mean=.*label 9"):
        md.LabelsToImage(mean={0: 1.0, 2: 1.0, 5: 1.0})(s, G(0))
