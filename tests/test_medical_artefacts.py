"""GibbsRinging, Swap, HistogramShift, CoarseDropout; world axes of SimulateLowResolution and of the
prostate preset; mixing patches of other voxel sizes; the MR-only ops on CT."""

import math
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.io as dio
from domainaug import medical as md
from domainaug.testing import make_raster, make_volume
from domainaug.training import CutMix, MixUp

G = lambda seed=0: torch.Generator().manual_seed(seed)  # noqa: E731
REAL = Path(__file__).resolve().parents[2] / "shared" / "data_real" / "medical"


def _step(n=33, low=100.0, high=200.0):
    """An odd cube varying along array axis 0 only: a step edge (the classic Gibbs test)."""
    image = np.full((n, n, n), low, np.float32)
    image[n // 3: 2 * n // 3] = high
    return da.Sample.from_numpy(image)


# --- GibbsRinging --------------------------------------------------------------------------------
def test_gibbs_fraction_one_is_the_identity():
    s = make_volume()
    out = md.GibbsRinging(1.0).apply(s, {"fraction": {"0": 1.0, "1": 1.0, "2": 1.0}})
    assert torch.equal(out["image"], s["image"])


def test_gibbs_rings_more_as_less_k_space_is_kept():
    s = _step()
    energy = [float(((md.GibbsRinging().apply(s, {"fraction": {"0": f}})["image"] - s["image"]) ** 2).sum())
              for f in (1.0, 0.9, 0.7, 0.5, 0.3, 0.1)]
    assert energy[0] == 0.0 and all(a < b for a, b in zip(energy, energy[1:])), energy
    ringed = md.GibbsRinging().apply(s, {"fraction": {"0": 0.5}})["image"][0, :, 16, 16]
    assert float(ringed.max()) > 200.0 + 5 and float(ringed.min()) < 100.0 - 5      # over- and undershoot at the edge


def test_gibbs_matches_monai_gibbs_noise():
    pytest.importorskip("monai")
    from monai.transforms import GibbsNoise
    s = _step()
    alpha = 0.55                                  # MONAI's ball radius 0.45 * sqrt(2) * 33 / 2 = 10.5 bins
    ours = md.GibbsRinging().apply(s, {"fraction": {str(a): math.sqrt(2) * (1 - alpha) for a in range(3)}})["image"]
    theirs = GibbsNoise(alpha)(s["image"].clone())
    torch.testing.assert_close(ours, torch.as_tensor(theirs).float(), atol=1e-3, rtol=0)
    assert float((ours - s["image"]).abs().max()) > 5                          # (it did ring)


# --- world axes ----------------------------------------------------------------------------------
@pytest.fixture
def t1_two_orders(fixtures, tmp_path):
    """The shipped T1 as stored (LSA) and reoriented to RAS with nibabel."""
    path = fixtures / "KmeansTest_T1UCharRaw.nii.gz"
    img = nib.load(path)
    ras = nib.as_closest_canonical(img)
    nib.save(ras, tmp_path / "ras.nii.gz")
    return dio.load(path), dio.load(tmp_path / "ras.nii.gz")


@pytest.mark.parametrize("op, params", [
    (md.SimulateLowResolution(axes="S"), {"spacing": {"2": 8.0}}),
    (md.GibbsRinging(axes="S"), {"fraction": {"2": 0.4}}),
])
def test_a_world_axis_is_degraded_whatever_the_array_order(t1_two_orders, op, params):
    lsa, ras = t1_two_orders
    assert nib.aff2axcodes(lsa.space.affine) == ("L", "S", "A") and lsa.space.array_axis(2) == 1
    assert op.sample_params(lsa, G()).keys() == params.keys()
    a, b = op.apply(lsa, params), op.apply(ras, params)
    back = md.Reorient("LSA")(b)                                   # an exact copy back to the stored order
    assert back.space.same_grid(lsa.space)
    torch.testing.assert_close(back["image"], a["image"], atol=1e-3, rtol=0)
    assert float((a["image"] - lsa["image"]).abs().max()) > 1
    last_array_axis = op.apply(lsa, {k: {"1": v["2"]} for k, v in params.items()})   # world A: the old default
    assert float((last_array_axis["image"] - a["image"]).abs().max()) > 1


def test_world_axes_of_a_raster_and_bad_letters():
    r = make_raster()                                               # rows run along -y, columns along x
    assert r.space.world_axes() == (1, 0)
    h, w = r.space.shape
    t = md.SimulateLowResolution(40.0, axes="x")                     # 4 pixels of 10 m along x: columns
    for vary, along_x in ((np.arange(w)[None, :] % 2, True), (np.arange(h)[:, None] % 2, False)):
        stripes = np.broadcast_to(vary * 100.0, (h, w)).astype(np.float32)
        s = da.Sample.from_numpy(stripes, affine=r.space.affine, crs=r.space.crs)
        out = t.apply(s, {"spacing": {"0": 40.0}})["image"]
        assert bool(torch.allclose(out, s["image"], atol=1e-3)) is not along_x
    with pytest.raises(da.ParameterError, match="^axes="):
        md.SimulateLowResolution(axes="S")(r, G())


def test_prostate_preset_reads_the_slice_axis_from_the_affine():
    shape, spacing = (8, 40, 40), (3.6, 0.5, 0.5)                   # sagittal: thick along R
    s = da.Sample.from_numpy(np.random.default_rng(0).random(shape).astype(np.float32), spacing=spacing)
    pipeline = da.Compose.from_yaml(md.preset("prostate-mri").to_yaml())         # the slice axis survives YAML
    assert pipeline.to_dict() == md.preset("prostate-mri").to_dict()
    for seed in range(3):
        out = pipeline(s, G(seed))
        degrees = out.history[-1].params["children"][1]["degrees"]
        assert degrees[0] != 0.0 and degrees[1] == degrees[2] == 0.0
        again = da.replay(s, [da.ParamRecord.from_dict(r.to_dict()) for r in out.history])
        assert torch.equal(again["image"], out["image"])
    assert da.Affine(degrees={2: (-5, 5), "R": 3}).config()["degrees"] == {"2": [-5.0, 5.0], "R": 3.0}
    with pytest.raises(da.ParameterError, match="^degrees="):
        da.Affine(degrees={"S": 5, "I": 3})                                 # one world axis named twice
    # the in-plane blur leaves a volume that varies only across slices unchanged, in any array order
    across = np.broadcast_to(np.arange(8, dtype=np.float32)[:, None, None] * 10, shape).copy()
    turned = np.zeros((4, 4))
    turned[:3, :3] = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]                 # array axes (A, S, R)
    turned[:3, :3] = turned[:3, :3] @ np.diag([0.5, 0.5, 3.6])
    turned[3, 3] = 1
    stored = da.Sample.from_numpy(np.ascontiguousarray(np.moveaxis(across, 0, -1)), affine=turned)
    blur = da.GaussianBlur(1.0, axis_scale={"slice": 0.0})
    for sample in (da.Sample.from_numpy(across, spacing=spacing), stored):
        out = blur.apply(sample, {"sigma": 1.0})["image"]
        torch.testing.assert_close(out, sample["image"], atol=1e-3, rtol=0)
    assert not torch.allclose(da.GaussianBlur(1.0).apply(stored, {"sigma": 1.0})["image"], stored["image"], atol=1e-2)


# --- Swap ----------------------------------------------------------------------------------------
def _two_layers(with_valid=True):
    s = make_volume(shape=(20, 18, 16), with_valid=with_valid)
    t2 = da.Layer(torch.flip(s["image"], (1,)) * 2 + 7, da.Role.INTENSITY)
    return s.with_layers(t2=t2)


def test_swap_permutes_each_layer_and_leaves_labels_and_nodata_alone():
    s = _two_layers()
    t = md.Swap(patch_size=5.0, num_swaps=40)
    out = t(s, G(2))
    valid = s["valid"]
    assert torch.equal(out["label"], s["label"]) and torch.equal(out["valid"], valid)
    for name in ("image", "t2"):
        before, after = s[name], out[name]
        assert not torch.equal(before, after)
        assert torch.equal(torch.sort(before.flatten()).values, torch.sort(after.flatten()).values)   # a permutation
        assert torch.equal(after[~valid.expand_as(after)], before[~valid.expand_as(before)])            # nodata kept
        v = valid.expand_as(before)
        assert torch.equal(torch.sort(before[v]).values, torch.sort(after[v]).values)   # valid values stay valid
    size = out.history[-1].params["size"]
    assert size == [round(5.0 / d) for d in s.space.spacing]                     # 5 mm: 5, 3, 2 voxels


def test_swap_of_patches_too_large_is_named():
    s = make_volume(shape=(6, 6, 6), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(da.ParameterError, match="^patch_size="):
        md.Swap(patch_size=4.0)(s, G())


# --- HistogramShift ------------------------------------------------------------------------------
def test_histogram_shift_is_monotone_and_keeps_the_ends():
    s = _two_layers()
    valid = s["valid"][0]
    for seed in range(5):
        out = md.HistogramShift((4, 12))(s, G(seed))
        for name in ("image", "t2"):
            x, y = s[name][0][valid].double(), out[name][0][valid].double()
            order = torch.argsort(x)
            assert bool((torch.diff(y[order]) >= -1e-4).all())                      # non-decreasing
            assert float(y.min()) == pytest.approx(float(x.min()), abs=1e-3)
            assert float(y.max()) == pytest.approx(float(x.max()), abs=1e-3)
            assert torch.equal(out[name][0][~valid], s[name][0][~valid])


def test_histogram_shift_matches_monai_with_the_same_control_points():
    pytest.importorskip("monai")
    from monai.transforms import RandHistogramShift
    s = make_volume()
    t = md.HistogramShift(8)
    params = t.sample_params(s, G(3))
    ours = t.apply(s, params)["image"]
    monai = RandHistogramShift(num_control_points=8, prob=1.0)
    monai._do_transform = True
    monai.reference_control_points = np.linspace(0, 1, 8)
    monai.floating_control_points = np.array(params["points"])
    theirs = monai(s["image"].clone(), randomize=False)
    torch.testing.assert_close(ours, torch.as_tensor(theirs).float(), atol=1e-3, rtol=0)
    assert float((ours - s["image"]).abs().max()) > 1


# --- CoarseDropout -------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", [None, np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)])
def test_dropout_boxes_have_the_drawn_mm_sizes(direction):
    s = make_volume(shape=(40, 36, 30), spacing=(0.7, 1.5, 2.5), direction=direction)
    t = md.CoarseDropout(size=[(4.0, 12.0), (6.0, 18.0), (8.0, 20.0)], num_boxes=1, fill=-1000.0)
    for seed in range(6):
        out = t(s, G(seed))
        box = out.history[-1].params["boxes"][0]
        where = torch.nonzero(out["image"][0] == -1000.0)
        extent = (where.max(0).values - where.min(0).values + 1).tolist()
        assert extent == box["size"]
        for array_axis, world in enumerate(s.space.world_axes()):        # each side in mm along its world axis
            side = extent[array_axis] * float(s.space.spacing[array_axis])
            assert abs(side - box["size_mm"][world]) <= s.space.spacing[array_axis] / 2 + 1e-9


def test_dropout_fills_and_validity():
    s = _two_layers()
    valid = s["valid"]
    t = md.CoarseDropout(size=6.0, num_boxes=3)                          # fill "min": valid data
    out = t(s, G(1))
    assert torch.equal(out["valid"], valid) and torch.equal(out["label"], s["label"])
    lowest = s["image"][valid.expand_as(s["image"])].min()
    changed = out["image"] != s["image"]
    assert changed.any() and bool((out["image"][changed] == lowest).all())
    assert torch.equal(changed, out["t2"] != s["t2"])                      # the same boxes in every layer
    gone = md.CoarseDropout(size=6.0, num_boxes=3, fill="nodata")(make_volume(shape=(20, 18, 16)), G(1))
    assert gone.valid_name == "valid" and not bool(gone["valid"].all())
    hidden = ~gone["valid"].expand_as(gone["image"])
    assert bool((gone["image"][hidden] == gone.layer_info("image").fill).all())
    assert gone.layer_names().count("valid") == 1


# --- mixing patches of other voxel sizes ---------------------------------------------------------
@pytest.mark.parametrize("mix", [MixUp(num_classes=8), CutMix(num_classes=8)], ids=["MixUp", "CutMix"])
def test_mix_patches_of_other_voxel_sizes(mix):
    a, b = make_volume(), make_volume(spacing=(0.8, 0.8, 3.0), seed=1)
    out = mix([a, b], G(4))
    for o, s in zip(out, (a, b)):
        assert o.space == s.space                                       # each keeps its own sample's space
    with pytest.raises(da.SpaceMismatchError, match="one grid shape"):
        mix([a, make_volume(shape=(10, 16, 12))])


# --- MR-only ops on CT ---------------------------------------------------------------------------
def _ct():
    hu = np.full((16, 16, 16), -1000.0, np.float32)
    hu[4:12, 4:12, 4:12] = 40.0
    return da.Sample.from_numpy(hu)


MR_ONLY = [md.RicianNoise(0.1), md.Spike(0.2), md.Ghosting(intensity=0.5), md.Motion(5.0, 3.0),
           md.GibbsRinging(0.5)]


@pytest.mark.parametrize("op", MR_ONLY, ids=lambda t: type(t).__name__)
def test_mr_only_ops_refuse_a_declared_ct_and_warn_on_hu(op):
    ct = _ct()
    ct.meta["modality"] = "CT"
    with pytest.raises(da.errors.SampleError, match=rf"{type(op).__name__} models a magnitude MR image.*'CT'"):
        op(ct, G())
    with pytest.warns(UserWarning, match="looks like CT in Hounsfield units"):
        op(_ct(), G())
    mr = make_volume()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        op(mr, G())                                                     # MR intensities: no warning
        declared = _ct()
        declared.meta["modality"] = "MR"
        op(declared, G())                                               # declared MR: believed


def test_ct_window_refuses_a_declared_mr():
    mr = make_volume()
    mr.meta["modality"] = "MR"
    with pytest.raises(da.errors.SampleError, match="CTWindow windows Hounsfield units"):
        md.CTWindow("brain")(mr, G())
    md.CTWindow("brain")(_ct(), G())


def test_a_dicom_ct_series_declares_its_modality(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(np.full((4, 8, 8), -1000, np.int16))
    image.SetSpacing((0.7, 0.7, 2.5))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(4):
        sl = image[:, :, k]
        for tag, value in {"0008|0060": "CT", "0020|000d": "1.2.3", "0020|000e": "1.2.3.4", "0020|0013": str(k),
                           "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": "0.7\\0.7"}.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    ct = dio.load(tmp_path)
    assert ct.meta["modality"] == "CT"
    with pytest.raises(da.errors.SampleError, match="RicianNoise models a magnitude MR image"):
        md.RicianNoise(0.1)(ct, G())


def test_real_ct_if_present():
    ct_files = sorted(REAL.glob("**/*ct*.nii*")) if REAL.exists() else []
    if not ct_files:
        pytest.skip("no real CT in ../shared/data_real (its README lists MR volumes only)")
    with pytest.warns(UserWarning, match="looks like CT"):
        md.RicianNoise(0.1)(dio.load(ct_files[0]), G())
