"""load -> save -> load on every shipped fixture and every GeoTIFF/NIfTI in ../shared/data_real:
the same data, grid, CRS, nodata, dtype, band names and the file's metadata."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import rasterio
import torch

import domainaug.io as dio

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data_real"
_EXT = (".tif", ".tiff", ".nii", ".nii.gz")
FILES = sorted(p for p in (ROOT / "data_fixtures").iterdir() if p.name.endswith(_EXT)) + \
    (sorted(p for p in SHARED.rglob("*") if p.name.endswith(_EXT)) if SHARED.is_dir() else [])


def _ext(path: Path) -> str:
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


def _same_sample(a, b) -> None:
    assert a.space == b.space                                      # grid and CRS, exactly
    assert a.layer_names() == b.layer_names()
    for name in a.layer_names():
        la, lb = a.layer_info(name), b.layer_info(name)
        assert la.data.dtype == lb.data.dtype and torch.equal(la.data, lb.data), name
        assert la.fill == lb.fill and la.channels == lb.channels, name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_load_save_load_gives_the_file_back(path, tmp_path):
    s = dio.load(path)
    out = dio.save(s, tmp_path / f"out{_ext(path)}")
    again = dio.load(out)
    _same_sample(s, again)
    if path.suffix in (".tif", ".tiff"):
        with rasterio.open(path) as src, rasterio.open(out) as dst:
            assert dst.profile == src.profile                      # dtype, nodata, compression, tiling, CRS
            assert dst.crs.to_wkt() == src.crs.to_wkt()
            for attr in ("colorinterp", "descriptions", "scales", "offsets", "units", "mask_flag_enums"):
                assert getattr(dst, attr) == getattr(src, attr), attr
            assert dst.tags() == src.tags() and dst.tags(ns="IMAGE_STRUCTURE") == src.tags(ns="IMAGE_STRUCTURE")
            a, b = src.read(), dst.read()
            valid = s["valid"][0].numpy() if "valid" in s.layer_names() else np.ones(a.shape[1:], bool)
            assert np.array_equal(a[:, valid], b[:, valid])         # every pixel valid in all bands, exactly
            if src.nodata is not None:                             # a pixel nodata in any band: nodata in all
                assert (b[:, ~valid] == src.nodata).all()
    else:
        src, dst = nib.load(str(path)), nib.load(str(out))
        assert dst.header.binaryblock == src.header.binaryblock   # codes, forms, scaling, units, intent, dtype
        assert np.array_equal(np.asanyarray(dst.dataobj), np.asanyarray(src.dataobj))


def _pairs():
    fixtures = ROOT / "data_fixtures"
    pairs = [(fixtures / "KmeansTest_T1UCharRaw.nii.gz", fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz")]
    if SHARED.is_dir():
        derived = SHARED / "derived"
        pairs += [(derived / "nc_landsat7_6band.tif", derived / "nc_landsat7_strata_dense.tif"),
                  (derived / "nc_landsat7_6band.tif", derived / "nc_landsat7_labels_sparse.tif")]
    return pairs


@pytest.mark.parametrize("image,label", _pairs(), ids=lambda p: p.name)
def test_labels_come_back_as_they_came(image, label, tmp_path):
    s = dio.load(image, label=label)
    out = dio.save(s, tmp_path / f"label{_ext(label)}", layer="label")
    again = dio.load(image, label=out)
    assert torch.equal(again["label"], s["label"])
    if label.suffix == ".tif":
        with rasterio.open(label) as src, rasterio.open(out) as dst:
            assert dst.profile == src.profile and dst.colorinterp == src.colorinterp
            assert np.array_equal(dst.read(), src.read())          # unlabelled pixels written as nodata again
    else:
        src, dst = nib.load(str(label)), nib.load(str(out))
        assert dst.header.binaryblock == src.header.binaryblock
        assert np.array_equal(np.asanyarray(dst.dataobj), np.asanyarray(src.dataobj))
