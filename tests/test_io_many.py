"""Loading many files into one sample: a mapping of layer name to path, and a list of per-band
GeoTIFFs stacked as channels (one grid per sample)."""

import nibabel as nib
import numpy as np
import pytest
import rasterio
import torch

import domainaug.io as dio
from domainaug.errors import ParameterError, SpaceMismatchError

T1 = "KmeansTest_T1UCharRaw.nii.gz"
SEG = "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"
L7 = "L7_ETMs.tif"
L7_BANDS = ["B1", "B2", "B3", "B4", "B5", "B7"]          # ETM+ reflective bands of the fixture


@pytest.fixture
def brats(fixtures, tmp_path):
    """A BraTS-like case: t1, a "flair" with other values and a float dtype, a label, a brain mask."""
    src = nib.load(str(fixtures / T1))
    t1 = np.asanyarray(src.dataobj)
    flair = (t1.astype(np.float32) * 1.5 + 7.25).astype(np.float32)
    mask = (t1 > 10).astype(np.uint8)
    paths = {"t1": fixtures / T1, "flair": tmp_path / "flair.nii.gz", "label": fixtures / SEG,
             "brain_mask": tmp_path / "mask.nii.gz"}
    nib.save(nib.Nifti1Image(flair, src.affine), str(paths["flair"]))
    nib.save(nib.Nifti1Image(mask, src.affine), str(paths["brain_mask"]))
    return paths, {"t1": t1, "flair": flair, "mask": mask}


def _bands(fixtures, tmp_path, names=None, prefix="LE07_L2SP_"):
    """The L7 fixture split into single-band files named like a Landsat Collection 2 product."""
    paths = []
    with rasterio.open(fixtures / L7) as src:
        profile = src.profile
        profile.update(count=1)
        for b, name in enumerate(names or L7_BANDS):
            path = tmp_path / f"{prefix}{name}.TIF"
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(src.read(b + 1), 1)
            paths.append(path)
    return paths


def test_mapping_loads_every_layer_with_its_role_and_metadata(brats):
    paths, arrays = brats
    s = dio.load(paths, labels=("label", "brain_mask"))
    assert set(s.layer_names()) >= {"t1", "flair", "label", "brain_mask"}
    assert s["t1"].dtype == torch.float32 and s["flair"].dtype == torch.float32
    assert s.layers["label"].role.value == "label" and s.layers["brain_mask"].role.value == "label"
    assert s["brain_mask"].dtype == torch.uint8
    assert np.array_equal(s["t1"][0].numpy(), arrays["t1"].astype(np.float32))
    assert np.allclose(s["flair"][0].numpy(), arrays["flair"])
    assert s.meta["path"] == str(paths["t1"])                       # the first intensity layer
    for name in paths:
        assert s.meta["layers"][name]["path"] == str(paths[name])
    assert s.meta["layers"]["t1"]["on_disk_dtype"] == "int16"
    assert s.meta["layers"]["flair"]["on_disk_dtype"] == "float32"
    assert s.layers["flair"].fill == pytest.approx(float(arrays["flair"].min()))   # per-layer fill


def test_mapping_round_trips_every_layer(brats, tmp_path):
    paths, _ = brats
    s = dio.load(paths, labels=("label", "brain_mask"))
    out = {}
    for name in paths:
        out[name] = dio.save(s, tmp_path / f"out_{name}.nii.gz", layer=name)
        before, after = nib.load(str(paths[name])), nib.load(str(out[name]))
        assert after.get_data_dtype() == before.get_data_dtype(), name
        assert np.allclose(after.affine, before.affine)
        assert np.array_equal(np.asanyarray(after.dataobj), np.asanyarray(before.dataobj)), name
    again = dio.load(out, labels=("label", "brain_mask"))
    for name in paths:
        assert torch.equal(again[name], s[name]), name


def test_default_labels_is_the_layer_named_label(brats):
    paths, _ = brats
    s = dio.load(paths)
    assert s.layers["label"].role.value == "label"
    assert s.layers["brain_mask"].role.value == "intensity"
    with pytest.raises(ParameterError, match="nope"):
        dio.load(paths, labels=("label", "nope"))


def test_valid_is_the_and_of_every_intensity_layer(fixtures, tmp_path):
    src = nib.load(str(fixtures / T1))
    a = np.asanyarray(src.dataobj).astype(np.float32)
    b = a.copy()
    a[0, 0, 0] = np.nan
    b[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(a, src.affine), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(b, src.affine), str(tmp_path / "b.nii.gz"))
    s = dio.load({"a": tmp_path / "a.nii.gz", "b": tmp_path / "b.nii.gz"})
    valid = s["valid"][0]
    assert not valid[0, 0, 0] and not valid[1, 1, 1] and int((~valid).sum()) == 2
    assert s["a"][0, 0, 0, 0] == s.layers["a"].fill               # invalid voxels hold the layer's fill
    back = nib.load(str(dio.save(s, tmp_path / "valid.nii.gz", layer="valid")))   # on the first layer's grid
    assert np.allclose(back.affine, src.affine) and int((np.asanyarray(back.dataobj) == 0).sum()) == 2


def test_file_on_another_grid_is_a_layer_on_its_own_grid(fixtures, tmp_path):
    src = nib.load(str(fixtures / T1))
    t1 = np.asanyarray(src.dataobj)
    coarse = t1[::2, ::2, ::2]                                     # a 2x coarser copy (4, 4, 6 mm)
    affine = src.affine.copy()
    affine[:3, :3] *= 2
    nib.save(nib.Nifti1Image(coarse, affine), str(tmp_path / "flair_2mm.nii.gz"))
    s = dio.load({"t1": fixtures / T1, "flair": tmp_path / "flair_2mm.nii.gz"})
    assert list(s.grids) == ["flair"] and s.space_of("t1") is s.space
    assert np.allclose(s.space_of("flair").affine, affine) and s.space_of("flair").shape == coarse.shape
    assert np.array_equal(s["flair"][0].numpy(), coarse.astype(np.float32))
    back = nib.load(str(dio.save(s, tmp_path / "flair_back.nii.gz", layer="flair")))   # saved on its own grid
    assert np.allclose(back.affine, affine) and np.array_equal(np.asanyarray(back.dataobj), coarse)


def test_files_of_one_layer_on_two_grids_are_refused_naming_them(fixtures, tmp_path):
    src = nib.load(str(fixtures / T1))
    affine = src.affine.copy()
    affine[:3, :3] *= 2
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj)[::2, ::2, ::2], affine), str(tmp_path / "flair_2mm.nii.gz"))
    with pytest.raises(SpaceMismatchError, match="flair_2mm.nii.gz") as err:
        dio.load({"mr": [fixtures / T1, tmp_path / "flair_2mm.nii.gz"]})
    msg = str(err.value)
    assert T1 in msg and "shape" in msg and "spacing" in msg and "share one grid" in msg


def test_layers_that_do_not_overlap_are_refused(fixtures, tmp_path):
    src = nib.load(str(fixtures / T1))
    affine = src.affine.copy()
    affine[:3, 3] += 10000.0
    nib.save(nib.Nifti1Image(np.asanyarray(src.dataobj), affine), str(tmp_path / "far.nii.gz"))
    with pytest.raises(SpaceMismatchError, match="do not overlap"):
        dio.load({"t1": fixtures / T1, "far": tmp_path / "far.nii.gz"})


def test_bad_names_are_refused(brats):
    paths, _ = brats
    with pytest.raises(ParameterError, match="valid"):
        dio.load({"t1": paths["t1"], "valid": paths["brain_mask"]})
    with pytest.raises(ParameterError, match="twice"):
        dio.load([("t1", paths["t1"]), ("t1", paths["flair"])])
    with pytest.raises(ParameterError, match="label="):
        dio.load({"t1": paths["t1"]}, label=paths["label"])


def test_list_of_single_band_geotiffs_stacks_bands_named_from_files(fixtures, tmp_path):
    paths = _bands(fixtures, tmp_path)
    s = dio.load(paths)
    assert s.layers["image"].channels == tuple(L7_BANDS)
    whole = dio.load(fixtures / L7)
    assert torch.equal(s["image"], whole["image"])
    assert s.space.same_grid(whole.space)
    assert s.meta["layers"]["image"]["path"] == [str(p) for p in paths]
    out = dio.save(s, tmp_path / "stack.tif")                     # one multi-band file
    with rasterio.open(out) as dst:
        assert dst.count == 6 and list(dst.descriptions) == L7_BANDS and dst.dtypes[0] == "uint8"
    again = dio.load(out)
    assert again.layers["image"].channels == tuple(L7_BANDS)
    assert torch.equal(again["image"], s["image"])


def test_band_names_follow_the_sensor_rules_and_descriptions(fixtures, tmp_path):
    paths = _bands(fixtures, tmp_path, names=["SR_B1", "SR_B2", "SR_B3"], prefix="LC08_L2SP_042034_20230101_")
    assert dio.load(paths).layers["image"].channels == ("SR_B1", "SR_B2", "SR_B3")
    assert dio.load(paths, sensor="landsat8").layers["image"].channels == ("B1", "B2", "B3")
    s2 = tmp_path / "T33UUP_20230101T100000_B8A_20m.tif"
    paths[0].rename(s2)
    assert dio.load([s2] + paths[1:]).layers["image"].channels == ("B8A", "SR_B2", "SR_B3")
    with rasterio.open(paths[1], "r+") as dst:                      # a description wins over the name
        dst.set_band_description(1, "green")
    assert dio.load([s2] + paths[1:]).layers["image"].channels == ("B8A", "green", "SR_B3")


def test_same_band_twice_is_refused(fixtures, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _bands(fixtures, tmp_path / "a", names=["B1", "B2"])
    second = _bands(fixtures, tmp_path / "b", names=["B1"])
    with pytest.raises(ParameterError, match="B1.*twice|twice.*B1") as err:
        dio.load(first + second)
    assert "image_t" in str(err.value)                             # dates go in layers of their own
    s = dio.load({"image_t0": first[:1], "image_t1": second})      # ... which is accepted
    assert s.layers["image_t0"].channels == ("B1",) and s.layers["image_t1"].channels == ("B1",)


def test_crs_mismatch_is_refused(fixtures, tmp_path):
    paths = _bands(fixtures, tmp_path, names=["B1", "B2"])
    with rasterio.open(paths[1], "r+") as dst:
        dst.crs = rasterio.crs.CRS.from_epsg(32725)                 # WGS 84 / UTM 25S: same numbers, other datum
    with pytest.raises(SpaceMismatchError, match="CRS") as err:
        dio.load(paths)
    assert paths[1].name in str(err.value)


def test_list_with_label_on_the_same_grid(fixtures, tmp_path):
    paths = _bands(fixtures, tmp_path, names=["B1", "B2"])
    with rasterio.open(fixtures / L7) as src:
        profile = src.profile
        profile.update(count=1)
        lab = (src.read(1) > 80).astype(np.uint8)
    with rasterio.open(tmp_path / "lab.tif", "w", **profile) as dst:
        dst.write(lab, 1)
    s = dio.load(paths, label=tmp_path / "lab.tif")
    assert s.layers["label"].role.value == "label" and s["label"].sum() == int(lab.sum())


def test_augmented_dataset_takes_mapping_items(brats):
    from domainaug import Flip
    from domainaug.training import AugmentedDataset
    paths, _ = brats
    ds = AugmentedDataset([paths], Flip(axes=(0,), p=1.0), labels=("label", "brain_mask"))
    s = ds[0]
    assert s.layers["brain_mask"].role.value == "label" and s.layers["flair"].role.value == "intensity"
    assert torch.equal(s["t1"], dio.load(paths)["t1"].flip(1))
