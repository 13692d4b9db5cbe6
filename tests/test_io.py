"""I/O round trips on real files, conventions, bad files."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import rasterio
import SimpleITK as sitk
import torch

import domainaug as da
import domainaug.io as dio

T1 = "KmeansTest_T1UCharRaw.nii.gz"
SEG = "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"


def test_nifti_round_trip_keeps_affine_dtype_and_codes(fixtures, tmp_path):
    s = dio.load(fixtures / T1, label=fixtures / SEG)
    src = nib.load(str(fixtures / T1))
    assert np.allclose(s.space.affine, src.affine)
    assert s["image"].dtype == torch.float32 and s["label"].dtype == torch.uint8    # compute in float
    assert s.meta["layers"]["image"]["on_disk_dtype"] == "int16"
    dio.save(s, tmp_path / "t1.nii.gz")
    dio.save(s, tmp_path / "seg.nii.gz", layer="label")
    back = nib.load(str(tmp_path / "t1.nii.gz"))
    assert np.allclose(back.affine, src.affine)
    assert back.get_data_dtype() == src.get_data_dtype()
    assert int(back.header["qform_code"]) == int(src.header["qform_code"])
    assert np.array_equal(np.asanyarray(back.dataobj), np.asanyarray(src.dataobj))
    again = dio.load(tmp_path / "t1.nii.gz", label=tmp_path / "seg.nii.gz")
    assert torch.equal(again["label"], s["label"])
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_itk_formats_agree_with_nifti_in_world_space(fixtures, tmp_path, ext):
    s = dio.load(fixtures / T1)
    dio.save(s, tmp_path / f"t1{ext}")
    itk = sitk.ReadImage(str(tmp_path / f"t1{ext}"))
    # an index maps to the same physical point (ITK is LPS, NIfTI RAS)
    index = (5, 17, 30)
    lps = np.array(itk.TransformIndexToPhysicalPoint(index))
    ras = s.space.index_to_world(np.array(index, float))
    np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-4)
    again = dio.load(tmp_path / f"t1{ext}")
    assert torch.equal(again["image"], s["image"])
    np.testing.assert_allclose(again.space.affine, s.space.affine, atol=1e-5)


def test_geotiff_round_trip_keeps_crs_transform_nodata_and_bands(fixtures, tmp_path):
    s = dio.load(fixtures / "rgbn_suba.tif")
    assert s.space.crs == "EPSG:32618" and "valid" in s.layer_names()
    with rasterio.open(fixtures / "rgbn_suba.tif") as src:
        # the centre of pixel (row 10, col 20) through rasterio's transform
        x, y = src.xy(10, 20, offset="center")
        assert np.allclose(s.space.index_to_world([10, 20]), [x, y])
        mask = src.dataset_mask() > 0
    assert torch.equal(s["valid"][0], torch.from_numpy(mask))
    out = tmp_path / "r.tif"
    dio.save(s, out)
    with rasterio.open(out) as dst, rasterio.open(fixtures / "rgbn_suba.tif") as src:
        assert dst.crs == src.crs and dst.transform.almost_equals(src.transform)
        assert dst.nodata == src.nodata and dst.dtypes == src.dtypes
        assert np.array_equal(dst.read(), src.read())


def test_crop_of_a_raster_keeps_world_coordinates_in_the_written_file(fixtures, tmp_path):
    s = dio.load(fixtures / "L7_ETMs.tif")
    out = da.Crop((100, 120))(s, torch.Generator().manual_seed(0))
    start = out.history[-1].params["start"]
    dio.save(out, tmp_path / "crop.tif")
    with rasterio.open(tmp_path / "crop.tif") as dst, rasterio.open(fixtures / "L7_ETMs.tif") as src:
        assert np.allclose(dst.xy(0, 0), src.xy(start[0], start[1]), rtol=0, atol=1e-6)
        assert np.array_equal(dst.read(), src.read()[:, start[0]:start[0] + 100, start[1]:start[1] + 120])


def test_label_on_another_grid_is_an_error(fixtures, tmp_path):
    s = dio.load(fixtures / SEG)
    affine = s.space.affine.copy()
    affine[0, 3] += 5.0                                  # 5 mm off: another grid
    shifted = s.replace(space=da.Space(s.space.shape, affine))
    dio.save(shifted, tmp_path / "shifted.nii.gz")
    with pytest.raises(da.SpaceMismatchError, match="another grid"):
        dio.load(fixtures / T1, label=tmp_path / "shifted.nii.gz")


def test_bad_files_are_named(tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    with pytest.raises(da.errors.DomainaugError, match="empty"):
        dio.load(empty)
    corrupt = tmp_path / "bad.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    with pytest.raises(da.errors.DomainaugError, match="bad.tif"):
        dio.load(corrupt)
    with pytest.raises(da.ParameterError, match="^path="):
        dio.load(tmp_path / "missing.nii")
    with pytest.raises(da.ParameterError, match="^path="):
        dio.format_of("x.jpg")


def test_nodata_everywhere_and_missing_crs(tmp_path):
    profile = dict(driver="GTiff", width=8, height=8, count=1, dtype="uint8", nodata=0, crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(0, 80, 10, 10))
    with rasterio.open(tmp_path / "empty.tif", "w", **profile) as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    with pytest.raises(da.NoDataError, match="empty.tif"):
        dio.load(tmp_path / "empty.tif")
    profile.pop("crs")
    with rasterio.open(tmp_path / "nocrs.tif", "w", **profile) as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    with pytest.raises(da.ParameterError, match="^crs="):
        dio.load(tmp_path / "nocrs.tif")


def test_failed_write_leaves_no_file(tmp_path):
    s = da.Sample.from_numpy(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(da.ParameterError):
        dio.save(s.replace(space=da.Space.from_spacing((4, 4, 4))), tmp_path / "x.tif")   # 3D to GeoTIFF
    assert os.listdir(tmp_path) == []


def test_real_shared_rasters_and_volumes(shared_data):
    nc = dio.load(shared_data / "derived/nc_landsat7_6band.tif",
                  label=shared_data / "derived/nc_landsat7_strata_dense.tif")
    assert nc.space.crs == "EPSG:32119" and nc["image"].shape[0] == 6
    assert set(nc["label"].unique().tolist()) <= set(range(8))
    out = da.Compose([da.Rot90(), da.Affine(degrees=(-30, 30))])(nc, torch.Generator().manual_seed(0))
    assert set(out["label"].unique().tolist()) <= set(nc["label"].unique().tolist())
    mni = dio.load(shared_data / "medical/nilearn_mni152_2009a/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    assert mni.space.shape == (197, 233, 189)
    json.dumps(out.history[-1].to_dict())


def test_dicom_series_folder_loads_with_world_geometry(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (5, 12, 10)).astype(np.int16)         # (z, y, x) as ITK arrays are
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.shape[0]):
        sl = image[:, :, k]
        for tag, value in {"0010|0010": "TEST", "0020|000d": "1.2.3", "0020|000e": "1.2.3.4", "0008|0060": "MR",
                           "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0013": str(k), "0028|0030": "0.9\\0.8",
                           "0018|0050": "2.5"}.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    s = dio.load(tmp_path)
    reference = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    assert s.space.shape == (10, 12, 5)                                   # (i, j, k) = ITK index order
    assert torch.equal(s["image"][0], torch.from_numpy(sitk.GetArrayFromImage(reference).transpose(2, 1, 0)))
    lps = np.array(reference.TransformIndexToPhysicalPoint((3, 7, 2)))
    np.testing.assert_allclose(s.space.index_to_world([3, 7, 2]), lps * [-1, -1, 1], atol=1e-4)


def test_nifti_scaling_is_applied_and_kept(tmp_path):
    values = np.arange(4 * 5 * 6).reshape(4, 5, 6) * 0.5 - 10.0
    img = nib.Nifti1Image(values, np.diag([1.5, 1.5, 3.0, 1.0]))
    img.set_data_dtype(np.int16)                                       # nibabel stores int16 + slope/inter
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    assert nib.load(str(tmp_path / "scaled.nii.gz")).dataobj.slope != 1.0
    s = dio.load(tmp_path / "scaled.nii.gz")
    assert s.meta["layers"]["image"]["scl_slope"] is not None and s["image"].dtype == torch.float32
    np.testing.assert_allclose(s["image"][0].numpy(), values, atol=1e-3)
    dio.save(s, tmp_path / "again.nii.gz")
    back = nib.load(str(tmp_path / "again.nii.gz"))
    assert back.get_data_dtype() == np.int16                           # on-disk dtype kept, values scaled
    np.testing.assert_allclose(np.asanyarray(back.dataobj), values, atol=2e-3)
    assert back.dataobj.slope == nib.load(str(tmp_path / "scaled.nii.gz")).dataobj.slope      # the scaling kept


def test_label_raster_one_pixel_off_is_an_error(fixtures, tmp_path):
    """Grids are compared in pixels, so a large projected origin gives no slack."""
    with rasterio.open(fixtures / "rgbn_suba.tif") as src:
        profile = src.profile.copy()
        profile.update(count=1, transform=src.transform * rasterio.Affine.translation(1, 0))
        shape = (src.height, src.width)
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(np.ones((1,) + shape, np.uint8))
    with pytest.raises(da.SpaceMismatchError, match="another grid"):
        dio.load(fixtures / "rgbn_suba.tif", label=tmp_path / "labels.tif")


def test_int64_labels_and_2d_images_save_to_nifti(tmp_path):
    big = np.zeros((6, 7, 5), np.int64)
    big[2:4, 2:5, 1:3] = 2035                                          # FreeSurfer-style label values
    s = da.Sample.from_numpy(np.ones((6, 7, 5), np.float32), label=big, spacing=(1.0, 1.0, 2.0))
    dio.save(s, tmp_path / "seg.nii.gz", layer="label")
    back = nib.load(str(tmp_path / "seg.nii.gz"))
    assert back.get_data_dtype() == np.int16 and np.array_equal(np.asanyarray(back.dataobj), big)
    flat = da.Sample.from_numpy(np.arange(20, dtype=np.float32).reshape(4, 5), spacing=(0.5, 0.7))
    dio.save(flat, tmp_path / "flat.nii.gz")
    again = dio.load(tmp_path / "flat.nii.gz")
    assert again.space.ndim == 2 and np.allclose(again.space.affine, flat.space.affine)
    assert torch.equal(again["image"], flat["image"])


def test_2d_itk_images_are_in_ras_like_3d_ones(tmp_path):
    image = sitk.GetImageFromArray(np.arange(20, dtype=np.int16).reshape(4, 5))
    image.SetOrigin((3.0, 4.0))
    sitk.WriteImage(image, str(tmp_path / "flat.mha"))
    s = dio.load(tmp_path / "flat.mha")
    lps = np.array(image.TransformIndexToPhysicalPoint((2, 1)))
    np.testing.assert_allclose(s.space.index_to_world([2, 1]), lps * [-1, -1])


def test_non_finite_voxels_in_a_file_become_invalid(tmp_path):
    data = np.ones((6, 6, 6), np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    s = dio.load(tmp_path / "nan.nii.gz")
    assert not s["valid"][0, 1, 2, 3] and int(s["valid"].sum()) == 215
    out = da.BrightnessContrast(0.1, 1.2)(s, torch.Generator().manual_seed(0))
    assert torch.isfinite(out["image"]).all()


def test_label_raster_nodata_becomes_unlabelled(tmp_path, fixtures):
    with rasterio.open(fixtures / "rgbn_suba.tif") as src:
        profile = src.profile.copy()
        profile.update(count=1, dtype="int16", nodata=-1)
        shape = (src.height, src.width)
    labels = np.full((1,) + shape, 3, np.int16)
    labels[0, :10] = -1
    with rasterio.open(tmp_path / "labels.tif", "w", **profile) as dst:
        dst.write(labels)
    s = dio.load(fixtures / "rgbn_suba.tif", label=tmp_path / "labels.tif")
    assert set(s["label"].unique().tolist()) == {0, 3} and (s["label"][0, :10] == 0).all()


def test_equivalent_label_crs_needs_the_explicit_option():
    """GDAL usually normalises a CRS to its EPSG code; when it cannot, the strings differ and only
    ``equivalent_crs=True`` accepts them (checked by rasterio/PROJ, not by comparing text)."""
    affine = np.array([[0.0, 5.0, 792930.5], [-5.0, 0.0, 2050109.5], [0, 0, 1]])
    proj = "+proj=utm +zone=18 +datum=WGS84 +units=m +no_defs"
    image = {"format": "geotiff", "data": np.ones((1, 4, 5), np.uint8), "fill": 0.0, "meta": {},
             "space": da.Space((4, 5), affine, "EPSG:32618")}
    label = {"format": "geotiff", "data": np.ones((1, 4, 5), np.uint8), "fill": 0.0, "meta": {},
             "space": da.Space((4, 5), affine, proj)}
    with pytest.raises(da.SpaceMismatchError, match="CRS"):
        dio.assemble(image, label, "image.tif", "labels.tif")
    s = dio.assemble(image, label, "image.tif", "labels.tif", equivalent_crs=True)
    assert s.space.crs == "EPSG:32618" and "label" in s.layer_names()
    other = dict(label, space=da.Space((4, 5), affine, "EPSG:32619"))
    with pytest.raises(da.SpaceMismatchError):
        dio.assemble(image, other, "image.tif", "labels.tif", equivalent_crs=True)


def test_saving_a_volume_as_geotiff_names_the_path_given(tmp_path):
    sample = da.Sample.from_numpy(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(da.ParameterError, match=r"x\.tif'.*GeoTIFF holds 2D") as err:
        dio.save(sample, tmp_path / "x.tif")
    assert ".tmp" not in str(err.value) and not list(tmp_path.iterdir())      # nothing half-written either
