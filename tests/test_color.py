"""ColorJitter, HueSaturation, Compression (remote_sensing.color): references (kornia, Albumentations,
torchvision's formulas) on real 8-bit RGB, properties on the shipped raster."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import domainaug as da
import domainaug.data as dd
import domainaug.io as dio
from domainaug import remote_sensing as rs
from domainaug.errors import ParameterError, ShapeError
from domainaug.testing import make_volume

ORDER = ["brightness", "contrast", "saturation", "hue"]


def G(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def rgbn() -> da.Sample:
    return rs.set_bands(dio.load(dd.path("rgbn_suba.tif")), ["blue", "green", "red", "nir"], sensor="aerial-rgbn")


@pytest.fixture(scope="module")
def full_rgb(rgbn: da.Sample) -> da.Sample:
    """A fully valid block of the fixture, as a float sample without nodata (references see every pixel)."""
    assert bool(rgbn["valid"][0, 20:200, 20:250].all())
    image = rgbn["image"][:, 20:200, 20:250].numpy()
    return da.Sample.from_numpy(image, spacing=5.0, channels=["blue", "green", "red", "nir"])


def _rgb_u8(sample: da.Sample) -> np.ndarray:
    return np.ascontiguousarray(sample["image"][[2, 1, 0]].permute(1, 2, 0).numpy().astype(np.uint8))


def _ours_rgb(sample: da.Sample) -> torch.Tensor:
    return sample["image"][[2, 1, 0]] / 255


# --- ColorJitter ---------------------------------------------------------------------------------
@pytest.mark.parametrize("step, factor", [("brightness", 1.3), ("hue", 40.0), ("hue", -130.0)])
def test_jitter_matches_kornia_on_float_rgb(full_rgb, step, factor):
    import kornia.enhance as ke
    params = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "order": ORDER, step: factor}
    ours = _ours_rgb(rs.ColorJitter(value_range=(0, 255)).apply(full_rgb, params))
    x = full_rgb["image"][[2, 1, 0]][None] / 255
    ref = (ke.adjust_brightness_accumulative(x, factor) if step == "brightness"
           else ke.adjust_hue(x, factor / 180 * np.pi))[0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("step, factor", [("brightness", 0.7), ("contrast", 0.6), ("contrast", 1.4),
                                          ("saturation", 1.7), ("saturation", 0.3), ("hue", 40.0)])
def test_jitter_matches_albumentations_on_uint8_rgb(full_rgb, step, factor):
    """Albumentations rounds to 8 bits in each step (and its 8-bit hue is OpenCV's, in 2-degree
    units): agreement within 3 levels per pixel and 0.6 level on average."""
    import albumentations as A
    params = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0, "order": ORDER, step: factor}
    ours = _ours_rgb(rs.ColorJitter(value_range=(0, 255)).apply(full_rgb, params))
    kw = {"brightness": (1, 1), "contrast": (1, 1), "saturation": (1, 1), "hue": (0, 0)}
    kw[step] = (factor / 360,) * 2 if step == "hue" else (factor, factor)
    ref = A.ColorJitter(**kw, p=1.0)(image=_rgb_u8(full_rgb))["image"]
    diff = (ours * 255 - torch.from_numpy(ref).permute(2, 0, 1).float()).abs()
    assert float(diff.max()) <= 3.0 + 1e-4 and float(diff.mean()) <= 0.6
    assert float((ours * 255 - full_rgb["image"][[2, 1, 0]]).abs().mean()) > 1.0       # it did change


def test_jitter_keeps_nir_and_nodata_and_is_offset_free(rgbn):
    t = rs.ColorJitter((0.5, 1.5), (0.5, 1.5), (0.5, 1.5), (-90, 90))
    out = t(rgbn, G(3))
    valid = rgbn["valid"][0]
    assert torch.equal(out["image"][3], rgbn["image"][3])                       # NIR untouched by default
    assert torch.equal(out["image"][:, ~valid], rgbn["image"][:, ~valid])       # nodata untouched
    assert not torch.equal(out["image"][:3, valid], rgbn["image"][:3, valid])
    # the same jitter on data shifted by 1000 (value range shifted with it) is the same result shifted
    shifted = rgbn.with_layers(image=rgbn.layer_info("image").__class__(
        rgbn["image"] + 1000, da.Role.INTENSITY, fill=0.0, channels=rgbn.layer_info("image").channels))
    params = out.history[-1].params
    a = rs.ColorJitter(value_range=(0, 255)).apply(rgbn, params)["image"]
    b = rs.ColorJitter(value_range=(1000, 1255)).apply(shifted, params)["image"]
    torch.testing.assert_close(b[:, valid] - 1000, a[:, valid], atol=2e-3, rtol=0)
    with_nir = rs.ColorJitter(brightness=1.5, contrast=1.0, saturation=1.0, hue=0.0, other_bands=True,
                              value_range=(0, 255))(rgbn, G(0))
    assert torch.allclose(with_nir["image"][3, valid], (rgbn["image"][3, valid] * 1.5).clamp(max=255))


def test_color_ops_without_rgb_are_named_errors(rgbn):
    no_sensor = rgbn.replace(meta={k: v for k, v in rgbn.meta.items() if k != "sensor"})
    nir_only = rs.set_bands(no_sensor, ["nir", "swir16", "swir22", "pan"])
    for t in (rs.ColorJitter(), rs.HueSaturation()):
        with pytest.raises(ParameterError, match=r"red, green and blue.*'image'.*" + type(t).__name__):
            t(nir_only, G(0))
    unnamed = dio.load(dd.path("rgbn_suba.tif"))            # band1..band4: how to name them
    with pytest.raises(ParameterError, match="set_bands"):
        rs.ColorJitter()(unnamed, G(0))
    with pytest.raises(ParameterError, match="band names on layer 'image'"):
        rs.ColorJitter()(make_volume(), G(0))


def test_jitter_replays_exactly(rgbn):
    out = rs.ColorJitter((0.5, 1.5), (0.5, 1.5), (0.5, 1.5), (-90, 90))(rgbn, G(5))
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert torch.equal(da.replay(rgbn, records)["image"], out["image"])
    assert sorted(out.history[-1].params["order"]) == sorted(ORDER)


# --- HueSaturation -------------------------------------------------------------------------------
@pytest.mark.parametrize("hue, sat, val", [(10, 0, 0), (-45, 0, 0), (0, 30, 0), (0, -40, 0), (0, 0, 25),
                                           (15, 20, -20)])
def test_hue_saturation_matches_albumentations_hsv(full_rgb, hue, sat, val):
    """Albumentations' 8-bit HSV (OpenCV: hue in 2-degree units, S and V in 0..255, rounded): within
    3 levels per pixel except at under 0.5% of the pixels (hue wraps, OpenCV's 2-degree hue), and 0.6
    on average."""
    import albumentations as A
    ref = A.HueSaturationValue((hue, hue), (sat, sat), (val, val), p=1.0)(image=_rgb_u8(full_rgb))["image"]
    ours = rs.HueSaturation(2.0 * hue, sat / 255, val / 255, value_range=(0, 255))(full_rgb, G(0))
    diff = (_ours_rgb(ours) * 255 - torch.from_numpy(ref).permute(2, 0, 1).float()).abs()
    assert float(diff.mean()) <= 0.6
    assert float((diff > 3).float().mean()) < 5e-3


def test_hue_saturation_keeps_nodata_and_nir(rgbn):
    out = rs.HueSaturation((-60, 60), (-0.3, 0.3), (-0.2, 0.2))(rgbn, G(2))
    valid = rgbn["valid"][0]
    assert torch.equal(out["image"][:, ~valid], rgbn["image"][:, ~valid])
    assert torch.equal(out["image"][3], rgbn["image"][3])
    assert float(out["image"][:3, valid].min()) >= 0 and float(out["image"][:3, valid].max()) <= 255


# --- Compression ---------------------------------------------------------------------------------
def _error(out: da.Sample, sample: da.Sample) -> float:
    valid = sample["valid"][0]
    return float((out["image"][:, valid] - sample["image"][:, valid]).abs().mean())


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_compression_error_grows_as_quality_falls(rgbn, fmt):
    errors = [_error(rs.Compression(q, format=fmt)(rgbn, G(0)), rgbn) for q in (100, 80, 50, 20, 5)]
    assert errors == sorted(errors) and errors[-1] > 3 * errors[0], errors


def test_compression_at_100_is_near_identity_and_keeps_values_honest(rgbn):
    out = rs.Compression(100)(rgbn, G(0))
    valid = rgbn["valid"][0]
    d = (out["image"][:, valid] - rgbn["image"][:, valid]).abs()
    # in 8-bit levels: the grey NIR image is nearly lossless; RGB carries the 4:2:0 chroma subsampling
    assert float(d[3].mean()) < 0.6 and float(d[:3].mean()) < 2.0, d.mean(dim=1)
    assert float(torch.quantile(d[:3].flatten()[::7], 0.99)) <= 12
    assert out["image"].dtype == torch.float32
    assert torch.equal(out["image"], out["image"].round())                # uint8 data: whole levels
    assert torch.equal(out["image"][:, ~valid], rgbn["image"][:, ~valid])   # nodata untouched


def test_compression_float_data_scaled_from_its_range_and_back(rgbn):
    scaled = rgbn.with_layers(image=rgbn.layer_info("image").__class__(
        rgbn["image"] / 255 * 0.4 + 0.05, da.Role.INTENSITY, fill=-1.0, channels=rgbn.layer_info("image").channels))
    scaled.meta["layers"] = {}
    out = rs.Compression(95)(scaled, G(0))
    valid = rgbn["valid"][0]
    d = (out["image"][:, valid] - scaled["image"][:, valid]).abs()
    assert float(d.mean()) < 3 * 0.4 / 255                        # a few levels of the 8-bit scale of its range
    assert float(out["image"][:, valid].min()) >= 0.05 - 1e-6 and float(out["image"][:, valid].max()) <= 0.45 + 1e-6
    assert torch.equal(out["image"][:, ~valid], scaled["image"][:, ~valid])


def test_compression_replays_exactly(rgbn):
    out = rs.Compression((10, 90), format="webp")(rgbn, G(4))
    records = json.loads(json.dumps([r.to_dict() for r in out.history]))
    assert torch.equal(da.replay(rgbn, records)["image"], out["image"])


def test_compression_codes_rgb_as_colour_and_other_bands_alone(rgbn):
    params = {"quality": 30}
    out = rs.Compression().apply(rgbn, params)["image"]
    nir_alone = rs.Compression(bands=["nir"]).apply(rgbn, params)["image"]
    assert torch.equal(out[3], nir_alone[3])                      # NIR is its own grey image
    assert torch.equal(nir_alone[:3], rgbn["image"][:3])          # bands= limits what is coded
    grey = rs.Compression(bands=["red"]).apply(rgbn, params)["image"]
    assert not torch.equal(grey[2], out[2])                       # red alone differs from red in colour
    with pytest.raises(ShapeError, match="2D"):
        rs.Compression()(make_volume(), G(0))


def test_kernels_agree_with_the_torch_path(rgbn):
    """The float32 CPU kernels (core.kernels.color) and the torch passes (float64 here) agree."""
    wide = rgbn.with_layers(image=rgbn.layer_info("image").__class__(
        rgbn["image"].double(), da.Role.INTENSITY, fill=0.0, channels=rgbn.layer_info("image").channels))
    for seed in range(4):
        t = rs.ColorJitter((0.5, 1.5), (0.5, 1.5), (0.3, 1.7), (-180, 180), other_bands=seed % 2 == 1,
                           clip=seed < 2)
        params = t(rgbn, G(seed)).history[-1].params
        a, b = t.apply(rgbn, params)["image"], t.apply(wide, params)["image"]
        assert a.dtype == torch.float32 and b.dtype == torch.float64
        torch.testing.assert_close(a.double(), b, atol=2e-3, rtol=1e-5)
    for fmt in ("jpeg", "webp"):
        t = rs.Compression(40, format=fmt)
        a, b = t.apply(rgbn, {"quality": 40})["image"], t.apply(wide, {"quality": 40})["image"]
        assert torch.equal(a.double(), b)
