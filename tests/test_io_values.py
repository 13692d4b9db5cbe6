"""Honest values and metadata at I/O: each test reproduces one reported failure ("Seen:") of the
issue and checks the fix. Files are made small in ``tmp_path``; the shipped fixtures are read."""

import gzip
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.enums import ColorInterp

import domainaug as da
import domainaug.io as dio
from domainaug import cli, medical, offline
from domainaug import remote_sensing as rs
from domainaug.core.space import crs_equal
from domainaug.training import AugmentedDataset

T1 = "KmeansTest_T1UCharRaw.nii.gz"
SEG = "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"
UTM18 = rasterio.transform.from_origin(792928.0, 2050112.0, 5.0, 5.0)
# USA Contiguous Albers written as PROJ text: GDAL calls it "ESRI:102003" (a guess), PROJ equal to it
AEA = "+proj=aea +lat_0=37.5 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 +datum=NAD83 +units=m +no_defs"


def _tif(path, data, crs="EPSG:32618", transform=UTM18, colorinterp=None, **profile):
    data = np.asarray(data)
    kw = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
              crs=crs, transform=transform)
    kw.update(profile)
    with rasterio.open(path, "w", **kw) as dst:
        if colorinterp is not None:
            dst.colorinterp = colorinterp
        dst.write(data)
    return path


FIXTURES = Path(__file__).resolve().parents[1] / "data_fixtures"


def _rgbn_without_nodata(tmp_path):
    """A 4-band uint8 RGBN raster, no nodata, NIR 0 on some pixels (as water can be)."""
    with rasterio.open(FIXTURES / "rgbn_suba.tif") as src:
        data = src.read()
    data = np.maximum(data, 1)
    data[3, 5:9, 5:9] = 0
    return _tif(tmp_path / "rgbn.tif", data, compress="lzw", tiled=True, blockxsize=64, blockysize=64,
                colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined])


# --- 1. values: float in memory, the on-disk type at save -------------------------------------------
def test_brain_mri_preset_gives_float_batches(fixtures):
    s = dio.load(fixtures / T1, label=fixtures / SEG)
    out = medical.preset("brain-mri")(s, torch.Generator().manual_seed(0))
    assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.uint8
    assert s.meta["layers"]["image"]["on_disk_dtype"] == "int16"


def test_scaled_nifti_loads_as_float32_and_saves_with_its_scaling(tmp_path):
    raw = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(raw, np.diag([1.5, 1.5, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, -3.0)
    img.set_data_dtype(np.int16)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    s = dio.load(tmp_path / "scaled.nii.gz")
    assert s["image"].dtype == torch.float32                                # was float64
    np.testing.assert_array_equal(s["image"][0].numpy(), raw * 0.5 - 3.0)
    assert dio.load(tmp_path / "scaled.nii.gz", dtype="float64")["image"].dtype == torch.float64
    dio.save(s, tmp_path / "again.nii.gz")
    back = nib.load(str(tmp_path / "again.nii.gz"))
    assert back.get_data_dtype() == np.int16 and back.dataobj.slope == 0.5 and back.dataobj.inter == -3.0
    np.testing.assert_array_equal(np.asanyarray(back.dataobj.get_unscaled()), raw)   # exactly the raw values


def test_float64_files_stay_float64_and_labels_integer(tmp_path):
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4)), np.eye(4)), str(tmp_path / "f64.nii.gz"))
    assert dio.load(tmp_path / "f64.nii.gz")["image"].dtype == torch.float64
    with pytest.raises(da.ParameterError, match="^dtype="):
        dio.load(tmp_path / "f64.nii.gz", dtype="int16")


def test_save_rounds_and_clips_once_and_dtype_chooses_another(fixtures, tmp_path):
    s = dio.load(fixtures / "L7_ETMs.tif")
    bright = s.with_layers(image=da.Layer(s["image"] * 1.5 + 0.4, da.Role.INTENSITY, 0.0,
                                          s.layer_info("image").channels))
    dio.save(bright, tmp_path / "u8.tif")
    dio.save(bright, tmp_path / "f32.tif", dtype="float32")
    with rasterio.open(tmp_path / "u8.tif") as u8, rasterio.open(tmp_path / "f32.tif") as f32:
        assert u8.dtypes[0] == "uint8" and f32.dtypes[0] == "float32"
        expected = np.clip(np.round(bright["image"].numpy()), 0, 255)
        assert np.array_equal(u8.read(), expected.astype(np.uint8))
        assert np.array_equal(f32.read(), bright["image"].numpy())        # > 255 kept: no clipping for floats


def test_offline_outputs_keep_their_source_dtype(fixtures, tmp_path):
    jobs = offline.plan([str(fixtures / T1), str(fixtures / "L7_ETMs.tif")], tmp_path / "out")
    pipelines = [medical.preset("brain-mri"),
                 da.Compose([da.Flip(axes=(1,)), da.BrightnessContrast(brightness=0.01, contrast=1.0)])]
    for job, pipeline in zip(jobs, pipelines):
        result = offline.run_job(job, pipeline.to_dict(), seed=0)
        assert result["status"] == "done", result
    assert nib.load(jobs[0].out_image).get_data_dtype() == np.int16
    with rasterio.open(jobs[1].out_image) as dst:
        assert dst.dtypes[0] == "uint8"


# --- 2. fill ------------------------------------------------------------------------------------
def test_fill_is_a_number_minimum_or_mean_and_a_raster_keeps_its_nodata(fixtures, tmp_path):
    ct = np.full((8, 8, 8), -1024, np.int16)
    ct[2:6, 2:6, 2:6] = 40
    nib.save(nib.Nifti1Image(ct, np.eye(4)), str(tmp_path / "ct.nii.gz"))
    assert dio.load(tmp_path / "ct.nii.gz").layer_info("image").fill == -1024.0        # air, not water
    assert dio.load(tmp_path / "ct.nii.gz", fill=-1000).layer_info("image").fill == -1000.0
    assert dio.load(tmp_path / "ct.nii.gz", fill="mean").layer_info("image").fill == pytest.approx(ct.mean())
    with pytest.raises(da.ParameterError, match="^fill="):
        dio.load(tmp_path / "ct.nii.gz", fill="median")
    data = np.full((2, 6, 6), 30.0, np.float32)
    data[:, 0] = -99999.0
    _tif(tmp_path / "nd.tif", data, nodata=-99999.0)
    s = dio.load(tmp_path / "nd.tif")
    assert s.layer_info("image").fill == -99999.0 and not s["valid"][0, 0].any()
    lab = dio.load(fixtures / T1, label=fixtures / SEG)
    assert lab.layer_info("label").fill == 0


# --- 3. nodata per band, CRS as it is --------------------------------------------------------------
def test_a_pixel_nodata_in_one_band_only_is_invalid_and_stays_out_of_statistics(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(50, 100, (3, 16, 16)).astype(np.float32)
    data[0, 4:8, 4:8] = -99999.0                                   # an SLC-off gap in band 1 only
    data[1, 4:8, 4:8] = 72.0
    _tif(tmp_path / "gap.tif", data, nodata=-99999.0)
    with rasterio.open(tmp_path / "gap.tif") as src:
        assert (src.dataset_mask()[4:8, 4:8] > 0).all()           # GDAL: valid where any band is
    s = dio.load(tmp_path / "gap.tif")
    assert not s["valid"][0, 4:8, 4:8].any() and int(s["valid"].sum()) == 16 * 16 - 16
    out = rs.SpectralJitter(gain=1.0, bias=0.01)(rs.set_bands(s, ["B1", "B2", "B3"], "landsat7"),
                                                 torch.Generator().manual_seed(0))
    valid = out["valid"][0]
    shift = (out["image"] - s["image"])[:, valid]
    assert shift.abs().max() <= 0.01 * 50 + 1e-3                   # 1% of the valid range, not of 100 000
    assert (out["image"][:, ~valid] == s.layer_info("image").fill).all()
    dio.save(out, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as dst:
        written = dst.read()
        assert (written[:, 4:8, 4:8] == -99999.0).all()           # nodata in every band of the gap
        assert (written[:, valid.numpy()] > 0).all()              # and never in a valid pixel


def test_the_crs_is_kept_whole_and_written_back_as_it_came(tmp_path):
    _tif(tmp_path / "aea.tif", np.ones((1, 4, 5), np.uint8), crs=CRS.from_proj4(AEA),
         transform=rasterio.transform.from_origin(1000, 2000, 30, 30))
    s = dio.load(tmp_path / "aea.tif")
    with rasterio.open(tmp_path / "aea.tif") as src:
        assert src.crs.to_string() == "ESRI:102003"                # what the old loader kept: a guessed code
        source_wkt = src.crs.to_wkt()
    assert not s.space.crs.startswith(("ESRI:", "EPSG:")) and crs_equal(s.space.crs, source_wkt)
    json.dumps(s.space.crs)                                        # serialisable
    dio.save(s, tmp_path / "again.tif")
    with rasterio.open(tmp_path / "again.tif") as dst:
        assert dst.crs.to_wkt() == source_wkt


@pytest.fixture
def equivalent_pair(tmp_path):
    """An image in ESRI:102003 and its label in the same CRS written as PROJ text (another WKT)."""
    t = rasterio.transform.from_origin(1000, 2000, 30, 30)
    image = _tif(tmp_path / "scene.tif", np.arange(1, 801, dtype=np.uint16).reshape(2, 20, 20), crs="ESRI:102003",
                 transform=t)
    label = _tif(tmp_path / "scene_seg.tif", np.ones((1, 20, 20), np.uint8), crs=CRS.from_proj4(AEA), transform=t)
    return image, label


def test_equivalent_crs_is_decided_by_proj_and_reachable_everywhere(equivalent_pair, tmp_path):
    image, label = equivalent_pair
    with pytest.raises(da.SpaceMismatchError, match="crs .* equivalent by PROJ"):
        dio.load(image, label=label)
    s = dio.load(image, label=label, equivalent_crs=True)
    assert s.space.crs == dio.load(image).space.crs and "label" in s.layer_names()
    with pytest.raises(da.SpaceMismatchError):
        next(rs.tiles(image, 10, label=label))
    assert len(list(rs.tiles(image, 10, label=label, equivalent_crs=True))) == 4
    pipeline = da.Flip(axes=(0,))
    with pytest.raises(da.errors.SampleError):
        AugmentedDataset([(image, label)], pipeline)[0]
    assert "label" in AugmentedDataset([(image, label)], pipeline, equivalent_crs=True)[0].layer_names()
    out = tmp_path / "out"
    args = ["augment", str(image), "--out", str(out), "--pipeline", str(_flip_yaml(tmp_path)), "--label-suffix",
            "_seg", "--workers", "1"]
    assert cli.main(args) == 1                                     # refused without the option
    assert cli.main(args + ["--equivalent-crs"]) == 0
    assert (out / "scene_seg_aug000.tif").exists()
    assert cli.main(["replay", str(out / "scene_aug000.json")]) == 0


def _flip_yaml(tmp_path):
    path = tmp_path / "flip.yaml"
    path.write_text("transform: Flip\nconfig: {axes: [0]}\n", encoding="utf-8")
    return path


# --- 4. files written back exactly as they came ---------------------------------------------------
def test_a_4_band_uint8_raster_gets_no_alpha(tmp_path):
    path = _rgbn_without_nodata(tmp_path)
    s = dio.load(path)
    assert "valid" not in s.layer_names()
    dio.save(s, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert ColorInterp.alpha not in dst.colorinterp
        assert all(f == [rasterio.enums.MaskFlags.all_valid] for f in dst.mask_flag_enums)
    again = dio.load(tmp_path / "out.tif")
    assert "valid" not in again.layer_names() and torch.equal(again["image"], s["image"])   # NIR == 0 stays valid


def test_a_raster_with_real_alpha_keeps_it(tmp_path):
    data = np.full((4, 8, 8), 100, np.uint8)
    data[3] = 255
    data[3, :2] = 0
    _tif(tmp_path / "rgba.tif", data, photometric="RGB",
         colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha])
    s = dio.load(tmp_path / "rgba.tif")
    assert not s["valid"][0, :2].any() and s["valid"][0, 2:].all()
    dio.save(s, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert dst.colorinterp[3] == ColorInterp.alpha


def test_layout_descriptions_tags_and_colour_are_kept(tmp_path):
    path = _rgbn_without_nodata(tmp_path)
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(SOURCE="test", AREA_OR_POINT="Area")
        dst.update_tags(2, WAVELENGTH="560")
        dst.scales, dst.offsets = (0.01,) * 4, (0.5,) * 4
    _tif(tmp_path / "plain.tif", np.ones((2, 40, 30), np.int16), interleave="band")       # uncompressed, striped
    for name in ("rgbn.tif", "plain.tif"):
        s = dio.load(tmp_path / name)
        dio.save(s, tmp_path / f"out_{name}")
        with rasterio.open(tmp_path / name) as src, rasterio.open(tmp_path / f"out_{name}") as dst:
            assert dst.profile == src.profile, name                # compression, tiling, blocks, interleave, dtype
            assert dst.descriptions == src.descriptions == (None,) * src.count   # no made-up band1..N
            assert dst.colorinterp == src.colorinterp and dst.tags() == src.tags()
            assert [dst.tags(i) for i in dst.indexes] == [src.tags(i) for i in src.indexes]
            assert dst.scales == src.scales and dst.offsets == src.offsets
            assert dst.tags(ns="IMAGE_STRUCTURE") == src.tags(ns="IMAGE_STRUCTURE")
    named = rs.set_bands(dio.load(path), ["blue", "green", "red", "nir"])
    dio.save(named, tmp_path / "named.tif")
    with rasterio.open(tmp_path / "named.tif") as dst:
        assert dst.descriptions == ("blue", "green", "red", "nir")


def test_label_nodata_is_written_as_nodata(fixtures, tmp_path):
    with rasterio.open(fixtures / "rgbn_suba.tif") as src:
        shape, transform = (src.height, src.width), src.transform
    labels = np.full((1,) + shape, 3, np.int32)
    labels[0, :10] = -99999
    _tif(tmp_path / "labels.tif", labels, transform=transform, nodata=-99999)
    s = dio.load(fixtures / "rgbn_suba.tif", label=tmp_path / "labels.tif")
    assert (s["label"][0, :10] == 0).all()
    dio.save(s, tmp_path / "out.tif", layer="label")
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert dst.nodata == -99999 and dst.dtypes[0] == "int32"
        assert (dst.read(1)[:10] == -99999).all() and (dst.read(1)[10:] == 3).all()


def test_float_raster_with_nan_nodata_keeps_nan(tmp_path):
    data = np.full((2, 8, 8), 0.25, np.float32)
    data[:, :3] = np.nan
    _tif(tmp_path / "nan.tif", data, nodata=np.nan)
    s = dio.load(tmp_path / "nan.tif")
    assert torch.isfinite(s["image"]).all() and not s["valid"][0, :3].any()
    dio.save(s, tmp_path / "out.tif")
    with rasterio.open(tmp_path / "out.tif") as dst:
        assert math.isnan(dst.nodata) and np.isnan(dst.read()[:, :3]).all() and (dst.read()[:, 3:] == 0.25).all()
    _tif(tmp_path / "bare.tif", data)                              # NaN marks nodata, no nodata tag
    dio.save(dio.load(tmp_path / "bare.tif"), tmp_path / "bare_out.tif")
    with rasterio.open(tmp_path / "bare_out.tif") as dst:
        assert dst.nodata is None and np.isnan(dst.read()[:, :3]).all()          # was: nodata 0, zeros
        assert all(f == [rasterio.enums.MaskFlags.all_valid] for f in dst.mask_flag_enums)


def test_gained_invalid_pixels_get_a_mask_never_silent_zeros(fixtures, tmp_path):
    s = dio.load(fixtures / "L7_ETMs.tif")                         # no nodata
    turned = rs.RotationPolicy("any")(s, torch.Generator().manual_seed(3))
    assert not turned["valid"].all()
    dio.save(turned, tmp_path / "turned.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turned.tif"]     # an internal mask, no .msk file
    with rasterio.open(tmp_path / "turned.tif") as dst:
        assert dst.nodata is None                                  # no data value taken over (was: nodata 0)
        assert all(rasterio.enums.MaskFlags.per_dataset in f for f in dst.mask_flag_enums)
    again = dio.load(tmp_path / "turned.tif")
    assert torch.equal(again["valid"], turned["valid"])
    assert torch.equal(again["image"][:, turned["valid"][0]], torch.round(turned["image"][:, turned["valid"][0]]))


def test_tile_writer_keeps_band_names_and_masks_rotated_corners(fixtures, tmp_path):
    path = fixtures / "L7_ETMs.tif"
    names = ["B1", "B2", "B3", "B4", "B5", "B7"]
    with rs.TileWriter(tmp_path / "mosaic.tif", like=path) as writer:
        for k, tile in enumerate(rs.tiles(path, 128, bands=names, sensor="landsat7")):
            writer.write(rs.RotationPolicy("any")(tile, torch.Generator().manual_seed(k)) if k == 1 else tile)
    with rasterio.open(tmp_path / "mosaic.tif") as dst, rasterio.open(path) as src:
        assert dst.descriptions == tuple(names) and dst.profile["compress"] == src.profile["compress"]
        assert dst.colorinterp == src.colorinterp
        mask = dst.dataset_mask()
    assert (mask == 0).any() and (mask > 0).mean() > 0.9           # the turned tile's corners are masked


def test_nifti_codes_units_intent_and_nan_are_kept(tmp_path):
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    data[1, 1, 1] = np.nan
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.set_qform(None, code=0)
    img.set_sform(np.diag([2.0, 2.0, 3.0, 1.0]), code=2)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_intent("t test", (12.0,), name="tmap")
    nib.save(img, str(tmp_path / "stat.nii.gz"))
    s = dio.load(tmp_path / "stat.nii.gz")
    dio.save(s, tmp_path / "out.nii.gz")
    a, b = nib.load(str(tmp_path / "stat.nii.gz")).header, nib.load(str(tmp_path / "out.nii.gz")).header
    assert int(b["qform_code"]) == 0 and int(b["sform_code"]) == 2              # qform 0 was written as 1
    assert b.get_xyzt_units() == a.get_xyzt_units() and b.get_intent() == a.get_intent()
    assert b.get_data_dtype() == np.float32
    back = np.asanyarray(nib.load(str(tmp_path / "out.nii.gz")).dataobj)
    assert np.isnan(back[1, 1, 1]) and np.isfinite(back).sum() == data.size - 1
    both_zero = nib.Nifti1Image(np.ones((3, 3, 3), np.int16), np.eye(4))
    both_zero.set_qform(None, code=0)
    both_zero.set_sform(None, code=0)
    nib.save(both_zero, str(tmp_path / "zero.nii"))
    dio.save(dio.load(tmp_path / "zero.nii"), tmp_path / "zero_out.nii")
    h = nib.load(str(tmp_path / "zero_out.nii")).header
    assert int(h["qform_code"]) == 0 and int(h["sform_code"]) == 0


def test_a_crop_moves_both_nifti_forms_with_the_grid(fixtures, tmp_path):
    s = dio.load(fixtures / T1)
    out = da.Crop((40, 50, 30), mode="center")(s, torch.Generator().manual_seed(0))
    dio.save(out, tmp_path / "crop.nii.gz")
    back = nib.load(str(tmp_path / "crop.nii.gz"))
    src = nib.load(str(fixtures / T1))
    assert int(back.header["qform_code"]) == int(src.header["qform_code"])
    assert int(back.header["sform_code"]) == int(src.header["sform_code"])
    np.testing.assert_allclose(back.affine, out.space.affine, atol=1e-4)
    np.testing.assert_allclose(back.header.get_qform(), out.space.affine, atol=1e-4)


# --- 6. bad input that must not hang, explode or mislead ------------------------------------------
def _header_only_gz(path, shape, dtype=np.int16):
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\x00" * 4)
    return path


def test_a_tiny_gz_declaring_gigabytes_fails_fast_naming_the_sizes(tmp_path):
    path = _header_only_gz(tmp_path / "bomb.nii.gz", (2000, 2000, 2000))
    assert path.stat().st_size < 120
    with pytest.raises(da.errors.DomainaugError, match=r"bomb\.nii\.gz.*2000x2000x2000.*GiB"):
        dio.load(path)
    huge = _header_only_gz(tmp_path / "huge.nii.gz", (30000, 30000, 30000))
    with pytest.raises(da.errors.DomainaugError, match=r"huge\.nii\.gz: declares 30000x30000x30000.*load limit"):
        dio.load(huge)


def test_truncated_payloads_and_the_load_limit_are_named(tmp_path, monkeypatch):
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.int16), np.eye(4)), str(tmp_path / "whole.nii"))
    raw = (tmp_path / "whole.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[:-1000])
    with pytest.raises(da.errors.DomainaugError, match=r"cut\.nii: .*20x20x20.*truncated"):
        dio.load(tmp_path / "cut.nii")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).integers(0, 999, (40, 40, 40)).astype(np.int16), np.eye(4)),
             str(tmp_path / "whole.nii.gz"))
    gz = (tmp_path / "whole.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(da.errors.DomainaugError, match=r"cut\.nii\.gz"):
        dio.load(tmp_path / "cut.nii.gz")
    monkeypatch.setenv("DOMAINAUG_MAX_LOAD_GB", "0.0001")
    with pytest.raises(da.errors.DomainaugError, match=r"whole\.nii\.gz.*DOMAINAUG_MAX_LOAD_GB"):
        dio.load(tmp_path / "whole.nii.gz")
    with pytest.raises(da.errors.DomainaugError, match=r"L7_ETMs\.tif.*load limit"):
        dio.load(FIXTURES / "L7_ETMs.tif")


def test_grid_mismatch_says_what_differs(fixtures, tmp_path):
    s = dio.load(fixtures / SEG)
    zoomed = s.replace(space=da.Space(s.space.shape, s.space.affine @ np.diag([1.0, 1.0, 1.01, 1.0])))
    dio.save(zoomed, tmp_path / "zoomed.nii.gz")
    with pytest.raises(da.SpaceMismatchError, match="spacing") as err:
        dio.load(fixtures / T1, label=tmp_path / "zoomed.nii.gz")
    assert "shape (128, 128, 62), spacing" not in str(err.value)          # not two identical descriptions


def test_bad_affines_and_truncated_geotiffs_name_the_file(fixtures, tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    img.set_sform(np.zeros((4, 4)) + np.eye(4) * [0, 0, 0, 1], code=1)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(da.errors.DomainaugError, match=r"flat\.nii\.gz.*affine"):
        dio.load(tmp_path / "flat.nii.gz")
    raw = (fixtures / "L7_ETMs.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(da.errors.DomainaugError, match=r"cut\.tif"):
        dio.load(tmp_path / "cut.tif")
    with pytest.raises(da.errors.DomainaugError, match=r"cut\.tif"):
        list(rs.tiles(tmp_path / "cut.tif", 64))
