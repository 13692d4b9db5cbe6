"""Many layers (contrasts, masks) and many dates (one raster layer per acquisition).

Issue "Many layers, many grids, many dates", items 1 and 4: intensity ops draw once for every
intensity layer (the same gamma for all contrasts) or, with ``per_layer=True``, once per layer,
recorded by layer name; radiometric raster ops draw per date; repeated band names in one layer are
refused with a named error.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import domainaug
from domainaug import Compose, Crop, Flip, Gamma, Layer, ParamRecord, Role, Sample, replay
from domainaug.core.transform import IntensityTransform, Transform
from domainaug.errors import ParameterError
from domainaug.intensity import (
    BrightnessContrast,
    GaussianBlur,
    GaussianNoise,
    NormalizeIntensity,
    RescaleIntensity,
    SaltPepper,
)
from domainaug.medical import (
    BiasField,
    CoarseDropout,
    CTWindow,
    Ghosting,
    GibbsRinging,
    HistogramShift,
    IntensityScale,
    Motion,
    RicianNoise,
    SimulateLowResolution,
    Spike,
    Swap,
    TissueContrast,
)
from domainaug.remote_sensing import BandDropout, CloudShadow, Haze, SpectralJitter
from domainaug.testing import assert_samples_equal, make_volume

FIXTURES = Path(__file__).resolve().parent.parent / "data_fixtures"
CONTRASTS = ("t1", "t2", "flair")
L7 = ("B1", "B2", "B3", "B4", "B5", "B7")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def multi_contrast(shape=(14, 16, 12)) -> Sample:
    """t1, t2, flair (INTENSITY), label and brain_mask (LABEL) on one small anisotropic grid."""
    base = make_volume(shape=shape)
    t1 = base["image"]
    layers = {"t1": Layer(t1, Role.INTENSITY, float(t1.min())),
              "t2": Layer(t1.max() - t1 + 10.0, Role.INTENSITY, 10.0),
              "flair": Layer(t1.sqrt() * 7.0, Role.INTENSITY, float(t1.sqrt().min() * 7.0)),
              "label": base.layer_info("label"),
              "brain_mask": Layer((base["label"] > 0).to(torch.uint8), Role.LABEL, 0)}
    return Sample(base.space, layers, points=base.points)


def json_replay(sample: Sample, out: Sample) -> Sample:
    logged = json.loads(json.dumps([r.to_dict() for r in out.history[len(sample.history):]]))
    return replay(sample, [ParamRecord.from_dict(d) for d in logged])


# --- item 1: many layers -------------------------------------------------------------------------
def test_one_draw_is_shared_by_every_contrast():
    s = multi_contrast()
    out = Gamma((0.5, 2.0))(s, gen(1))
    params = out.history[-1].params
    assert set(params) == {"gamma"}                  # the old record: one gamma for all contrasts
    for name in CONTRASTS:
        alone = Gamma(params["gamma"], layers=[name])(s)
        assert torch.equal(out[name], alone[name]), name
    assert torch.equal(out["label"], s["label"]) and torch.equal(out["brain_mask"], s["brain_mask"])


def test_per_layer_draws_one_gamma_per_contrast_recorded_by_name():
    s = multi_contrast()
    out = Gamma((0.5, 2.0), per_layer=True)(s, gen(1))
    params = out.history[-1].params
    assert list(params["layers"]) == list(CONTRASTS)
    gammas = [params["layers"][n]["gamma"] for n in CONTRASTS]
    assert len(set(gammas)) == 3
    for name in CONTRASTS:
        alone = Gamma(params["layers"][name]["gamma"], layers=[name])(s)
        assert torch.equal(out[name], alone[name]), name
    assert_samples_equal(out, json_replay(s, out))
    # per_layer is the op applied to each layer on its own, in order, drawing from the same stream
    each = Compose([Gamma((0.5, 2.0), layers=[n]) for n in CONTRASTS])(s, gen(1))
    assert_samples_equal(out, each)
    assert out.history[-1].config["per_layer"] is True


def test_per_layer_skips_layers_on_their_own_and_replays():
    s = multi_contrast()
    seen = set()
    for seed in range(12):
        out = Gamma((0.5, 2.0), per_layer=True, p=0.5)(s, gen(seed))
        per = out.history[-1].params["layers"]
        for name in CONTRASTS:
            skipped = per[name] == {"applied": False}
            seen.add(skipped)
            assert torch.equal(out[name], s[name]) == skipped
        assert_samples_equal(out, json_replay(s, out))
    assert seen == {True, False}


def test_layers_restricts_and_per_layer_records_only_those():
    s = multi_contrast()
    out = Gamma((0.5, 2.0), layers=["t2", "flair"], per_layer=True)(s, gen(2))
    assert list(out.history[-1].params["layers"]) == ["t2", "flair"]
    assert torch.equal(out["t1"], s["t1"])
    assert not torch.equal(out["t2"], s["t2"]) and not torch.equal(out["flair"], s["flair"])
    assert_samples_equal(out, json_replay(s, out))


def test_duplicate_layer_names_are_refused():
    with pytest.raises(ParameterError) as err:
        Gamma(layers=["t1", "t1"])
    assert err.value.name == "layers" and "t1" in str(err.value)
    with pytest.raises(ParameterError) as err:
        Gamma(per_layer="yes")
    assert err.value.name == "per_layer"


def test_a_record_for_other_layers_is_refused():
    s = multi_contrast()
    with pytest.raises(ParameterError):
        Gamma(per_layer=True).run(s, {"layers": {"t1": {"gamma": 1.2}}})     # t2 and flair missing


def _intensity_ops():
    return [Gamma((0.5, 2.0)), BrightnessContrast((-0.2, 0.2), (0.7, 1.3)), GaussianNoise((0.05, 0.2)),
            SaltPepper((0.01, 0.05)), GaussianBlur((0.5, 2.0)), IntensityScale((0.8, 1.2), (-0.1, 0.1)),
            TissueContrast((0.7, 1.3)), SimulateLowResolution((4.0, 8.0)), BiasField((-0.5, 0.5)),
            RicianNoise((0.05, 0.2)), CTWindow("brain", level_shift=(100.0, 200.0), rescale=False),
            Spike((0.1, 0.3)), Ghosting((2, 4), intensity=(0.5, 0.9)), Motion((-5.0, 5.0), (-3.0, 3.0)),
            GibbsRinging((0.2, 0.6)), Swap(patch_size=4.0, num_swaps=10), HistogramShift((4, 12)),
            CoarseDropout(size=(3.0, 8.0), num_boxes=(1, 3)),
            NormalizeIntensity(mask="label"), RescaleIntensity(percentiles=(1.0, 99.0))]


def test_every_intensity_transform_takes_per_layer():
    names = {type(t).__name__ for t in _intensity_ops()}
    every = {n for n, cls in Transform.registry.items()          # (test modules register helpers too)
             if issubclass(cls, IntensityTransform) and cls.__module__.startswith("domainaug.")}
    raster = {"SpectralJitter", "Haze", "BandDropout",            # raster ops: tested below
              "ColorJitter", "HueSaturation", "Compression"}      # and in test_color.py (they need RGB names)
    assert every - names <= raster
    for name in every:
        assert "per_layer" in inspect.signature(Transform.registry[name].__init__).parameters, name


@pytest.mark.parametrize("op", _intensity_ops(), ids=lambda t: type(t).__name__)
def test_per_layer_on_every_intensity_op(op):
    s = multi_contrast()
    t = type(op)(**{**op.config(), "per_layer": True})
    out = t(s, gen(4))
    params = out.history[-1].params
    assert list(params["layers"]) == list(CONTRASTS)
    for name in CONTRASTS:     # each layer as the op on that layer alone with that layer's params
        alone = type(op)(**{**op.config(), "layers": [name]}).run(s, params["layers"][name])
        torch.testing.assert_close(out[name], alone[name], atol=1e-5, rtol=0)
    assert_samples_equal(out, json_replay(s, out))
    assert torch.equal(out["label"], s["label"])


def test_per_layer_fuses_into_a_pending_flip():
    s = multi_contrast()
    pipeline = Compose([Flip(axes=(0,)), BrightnessContrast((-0.2, 0.2), (0.7, 1.3), per_layer=True)])
    out = pipeline(s, gen(5))
    flipped = Flip(axes=(0,))(s)
    child = out.history[-1].params["children"][1]
    ref = BrightnessContrast((-0.2, 0.2), (0.7, 1.3), per_layer=True).run(flipped, child)
    for name in CONTRASTS:
        torch.testing.assert_close(out[name], ref[name], atol=1e-4, rtol=1e-6)
    assert_samples_equal(out, json_replay(s, out))


def test_crop_label_mode_names_its_label_layer():
    s = multi_contrast()
    seg = replace(s.layer_info("label"))
    empty = Layer(torch.zeros_like(s["label"]), Role.LABEL, 0)
    s = Sample(s.space, {**{n: s.layer_info(n) for n in s.layer_names() if n != "label"}, "seg": seg, "label": empty})
    for seed in range(5):
        out = Crop(4, mode="label", layer="seg")(s, gen(seed))
        assert bool((out["seg"] > 0).any())                    # centred on a voxel of "seg", not of "label"
    with pytest.raises(ParameterError) as err:
        Crop(4, mode="label", layer="lesion")(s, gen(0))
    assert err.value.name == "layer" and "seg" in err.value.expected
    with pytest.raises(ParameterError):
        Crop(4, mode="label", layer="t1")(s, gen(0))           # an INTENSITY layer is no label


def _fixture_contrasts() -> Sample:
    """t1 from the shipped fixture (cropped to keep the test small), t2/flair made from it, the
    shipped k-means segmentation as ``label`` and its foreground as ``brain_mask``."""
    s = domainaug.io.load(FIXTURES / "KmeansTest_T1UCharRaw.nii.gz",
                          label=FIXTURES / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")
    s = Crop((64, 64, 32), mode="center")(s)
    t1, label = s.layer_info("image"), s.layer_info("label")
    return Sample(s.space, {"t1": t1, "t2": replace(t1, data=255.0 - t1.data, fill=0.0),
                            "flair": replace(t1, data=t1.data.sqrt() * 16.0), "label": label,
                            "brain_mask": Layer((label.data > 0).to(torch.uint8), Role.LABEL, 0)})


def test_brain_preset_on_a_multi_contrast_sample():
    s = _fixture_contrasts()
    pipeline = Compose([domainaug.medical.preset("brain-mri"), Crop(24, mode="label", layer="label")])
    for seed in (0, 1):
        out = pipeline(s, gen(seed))
        assert out.space.shape == (24, 24, 24)
        # one map for every layer: the mask still is the label's foreground, voxel for voxel
        assert torch.equal(out["brain_mask"] > 0, out["label"] > 0)
        assert bool((out["label"] > 0).any())
        for name in CONTRASTS:
            assert out[name].shape == (1, 24, 24, 24) and bool(torch.isfinite(out[name]).all())
        assert_samples_equal(out, json_replay(s, out))


def test_brain_preset_moves_every_contrast_by_the_same_map():
    """Same contrasts twice: copies stay equal voxel for voxel through the whole preset when the
    intensity steps draw once for all of them (the default)."""
    s = _fixture_contrasts()
    s = s.with_layers(t1_copy=s.layer_info("t1"))
    out = domainaug.medical.preset("brain-mri")(s, gen(3))
    torch.testing.assert_close(out["t1"], out["t1_copy"], atol=1e-4, rtol=0)


# --- item 4: many dates --------------------------------------------------------------------------
def _two_dates() -> tuple[Sample, Sample]:
    """A stacked two-date raster (names repeated) and the same as layers ``image_t0``/``image_t1``."""
    r = domainaug.io.load(FIXTURES / "L7_ETMs.tif")
    t0 = r["image"][:, :40, :36] + 1.0
    t1 = (t0 * 0.9 + 5.0).round()
    stacked = Sample.from_numpy(torch.cat([t0, t1]).numpy(), affine=r.space.with_grid((40, 36), r.space.affine).affine,
                                crs=r.space.crs, channels=list(L7) * 2)
    stacked.meta["sensor"] = "landsat7"
    split = domainaug.remote_sensing.dates(stacked)
    return stacked, split


def test_dates_splits_a_stack_into_date_layers():
    stacked, split = _two_dates()
    assert split.layer_names(Role.INTENSITY) == ["image_t0", "image_t1"]
    assert torch.equal(split["image_t0"], stacked["image"][:6]) and torch.equal(split["image_t1"], stacked["image"][6:])
    assert split.layer_info("image_t1").channels == L7
    assert domainaug.remote_sensing.date_layers(split) == ["image_t0", "image_t1"]
    again = domainaug.remote_sensing.dates(stacked["image"].reshape(2, 6, 40, 36).numpy(), affine=stacked.space.affine,
                                           crs=stacked.space.crs, channels=L7)
    assert torch.equal(again["image_t1"], split["image_t1"])
    assert torch.equal(domainaug.remote_sensing.stack_dates(split), stacked["image"].reshape(2, 6, 40, 36))
    with pytest.raises(ParameterError):
        domainaug.remote_sensing.dates(stacked, count=4)          # 12 bands are not 4 dates of equal bands


@pytest.mark.parametrize("op", [SpectralJitter(), BandDropout(max_bands=2), Haze(strength=(0.05, 0.2))],
                         ids=lambda t: type(t).__name__)
def test_repeated_band_names_are_a_named_error(op):
    stacked, _ = _two_dates()
    with pytest.raises(ParameterError) as err:
        op(stacked, gen(0))
    assert "B1" in str(err.value) and "dates" in str(err.value)


def test_spectral_jitter_draws_per_date():
    _, s = _two_dates()
    out = SpectralJitter(gain=(0.8, 1.2), bias=(-0.05, 0.05))(s, gen(6))
    per = out.history[-1].params["layers"]
    assert list(per) == ["image_t0", "image_t1"]
    assert set(per["image_t0"]["gain"]) == set(L7)
    assert per["image_t0"]["gain"] != per["image_t1"]["gain"]      # sensor and atmosphere differ by date
    for name in per:
        assert not torch.equal(out[name], s[name])
    assert_samples_equal(out, json_replay(s, out))
    shared = SpectralJitter(gain=(0.8, 1.2), bias=(-0.05, 0.05), relative=False, per_layer=False)(s, gen(6))
    params = shared.history[-1].params
    assert set(params) == {"gain", "bias"}                         # one draw, keyed by band, for both dates
    for name in ("image_t0", "image_t1"):
        gain = torch.tensor([params["gain"][b] for b in L7]).view(-1, 1, 1)
        bias = torch.tensor([params["bias"][b] for b in L7]).view(-1, 1, 1)
        torch.testing.assert_close(shared[name], s[name] * gain + bias, rtol=1e-5, atol=1e-3)


def test_band_dropout_draws_per_date_and_drops_in_both():
    _, s = _two_dates()
    for seed in range(4):
        out = BandDropout(max_bands=2)(s, gen(seed))
        per = out.history[-1].params["layers"]
        for name in ("image_t0", "image_t1"):
            zero = [b for i, b in enumerate(L7) if bool((out[name][i] == 0).all())]
            assert zero == per[name]["bands"] and zero, name
        assert_samples_equal(out, json_replay(s, out))


def test_haze_draws_per_date():
    _, s = _two_dates()
    out = Haze(strength=(0.05, 0.2))(s, gen(2))
    per = out.history[-1].params["layers"]
    assert per["image_t0"]["strength"] != per["image_t1"]["strength"]
    assert_samples_equal(out, json_replay(s, out))


def test_every_date_follows_the_same_spatial_map():
    _, s = _two_dates()
    s = s.with_layers(image_t1=s.layer_info("image_t0"))          # two identical dates
    out = Compose([domainaug.Affine(degrees=(-30, 30), translation=(-40, 40)),
                   SpectralJitter(gain=1.0, bias=0.0)])(s, gen(1))
    assert torch.equal(out["image_t0"], out["image_t1"])
    assert not torch.equal(out["image_t0"], s["image_t0"])


def test_satellite_preset_on_two_dates():
    _, s = _two_dates()
    out = domainaug.remote_sensing.preset("landsat7")(s, gen(0))
    for name in ("image_t0", "image_t1"):
        assert not torch.equal(out[name], s[name])
    assert_samples_equal(out, json_replay(s, out))


def test_cloud_shadow_per_date():
    _, s = _two_dates()
    out = CloudShadow(coverage=(0.2, 0.4))(s, gen(0))
    assert {"occlusion_t0", "occlusion_t1"} <= set(out.layer_names(Role.LABEL))
    assert not torch.equal(out["occlusion_t0"], out["occlusion_t1"])
    assert_samples_equal(out, json_replay(s, out))


def test_raster_ops_take_dates_named_otherwise():
    _, s = _two_dates()
    s = Sample(s.space, {"before": s.layer_info("image_t0"), "after": s.layer_info("image_t1")}, meta=s.meta)
    out = SpectralJitter(layers=["before", "after"])(s, gen(0))
    assert list(out.history[-1].params["layers"]) == ["before", "after"]
    assert_samples_equal(out, json_replay(s, out))
    with pytest.raises(ParameterError):
        SpectralJitter()(s, gen(0))                        # no "image" and no image_t0...: named


def test_per_date_p_skips_dates_on_their_own():
    _, s = _two_dates()
    kinds = set()
    for seed in range(10):
        out = Haze(strength=(0.05, 0.2), p=0.5)(s, gen(seed))
        per = out.history[-1].params["layers"]
        for name in ("image_t0", "image_t1"):
            skipped = per[name] == {"applied": False}
            kinds.add(skipped)
            assert torch.equal(out[name], s[name]) == skipped
        assert_samples_equal(out, json_replay(s, out))
    assert kinds == {True, False}
