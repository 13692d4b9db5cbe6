"""Pairing inputs as datasets are laid out (issue "Offline jobs you can trust", item 8): ``--labels DIR``
(same file names, nnU-Net's imagesTr/labelsTr with channel suffixes), per-file band names, and a
preview with one stretch for all panels. On the shipped T1 + labels and the shipped RGBN raster."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import domainaug as da
from domainaug import cli, offline
from domainaug import io as dio
from domainaug.errors import ParameterError


def _nnunet(root: Path, fixtures: Path, cases: tuple[str, ...] = ("brain", "head")) -> Path:
    images, labels = root / "imagesTr", root / "labelsTr"
    images.mkdir(parents=True)
    labels.mkdir()
    for case in cases:
        shutil.copy(fixtures / "KmeansTest_T1UCharRaw.nii.gz", images / f"{case}_0000.nii.gz")
        shutil.copy(fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", labels / f"{case}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "labels": {"background": 0, **{f"class{i}": i for i in range(1, 7)}},
        "numTraining": len(cases), "file_ending": ".nii.gz"}), encoding="utf-8")
    return root


def _second_channel(image: Path, out: Path, zoom: float = 1.0) -> np.ndarray:
    """A second contrast of the same case: 255 - T1, on the same grid (or a rescaled one)."""
    img = nib.load(image)
    data = (255 - np.asarray(img.dataobj)).astype(np.uint8)
    affine = img.affine.copy()
    affine[:3, :3] *= zoom
    nib.save(nib.Nifti1Image(data, affine), out)
    return data


def _flip_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "flip.yaml"
    path.write_text(da.Flip(axes=(0,)).to_yaml(), encoding="utf-8")
    return path


def _run(args: list[str]) -> int:
    return cli.main(["augment", *args, "--workers", "1"])


def _cases(folder: Path, channel: bool) -> set[str]:
    """Case ids as nnU-Net reads them: the file name without its ending (and channel suffix)."""
    pattern = r"^(.+)_\d{4}\.nii\.gz$" if channel else r"^(.+)\.nii\.gz$"
    return {re.match(pattern, p.name).group(1) for p in folder.iterdir()}


def test_nnunet_layout_in_and_out(fixtures, tmp_path, capsys):
    src = _nnunet(tmp_path / "Dataset501_T1", fixtures)
    out = tmp_path / "Dataset502_T1aug"
    assert _run([str(src / "imagesTr"), "--labels", str(src / "labelsTr"), "--out", str(out), "-n", "2",
                 "--pipeline", str(_flip_yaml(tmp_path))]) == 0
    assert "4 written" in capsys.readouterr().out
    images, labels = out / "imagesTr", out / "labelsTr"
    assert sorted(p.name for p in images.iterdir()) == [f"{c}_aug00{k}_0000.nii.gz" for c in ("brain", "head")
                                                        for k in (0, 1)]
    assert _cases(images, channel=True) == _cases(labels, channel=False) == {"brain_aug000", "brain_aug001",
                                                                               "head_aug000", "head_aug001"}
    dataset = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert dataset["numTraining"] == 4 and dataset["file_ending"] == ".nii.gz"
    assert dataset["channel_names"] == {"0": "T1"}
    assert (out / "brain_aug000.json").exists() and (out / "manifest.json").exists()   # not in imagesTr
    label_in = np.asarray(nib.load(src / "labelsTr" / "brain.nii.gz").dataobj)
    label_out = np.asarray(nib.load(labels / "brain_aug000.nii.gz").dataobj)
    image_in = np.asarray(nib.load(src / "imagesTr" / "brain_0000.nii.gz").dataobj)
    image_out = np.asarray(nib.load(images / "brain_aug000_0000.nii.gz").dataobj)
    assert np.array_equal(label_out, label_in[::-1]) and np.array_equal(image_out, image_in[::-1])
    assert cli.main(["replay", str(out / "head_aug001.json")]) == 0
    assert capsys.readouterr().out.count("identical") == 2
    stale = images / ".brain_aug000_0000.x1y2.tmp.nii.gz"                  # a killed run's, in a subfolder
    stale.write_bytes(b"half")
    assert _run([str(src / "imagesTr"), "--labels", str(src / "labelsTr"), "--out", str(out), "-n", "2",
                 "--pipeline", str(_flip_yaml(tmp_path))]) == 0
    assert "0 written, 4 already complete" in capsys.readouterr().out and not stale.exists()


def test_nnunet_channels_of_a_case_are_one_job_with_a_layer_each(fixtures, tmp_path, capsys):
    src = _nnunet(tmp_path / "ds", fixtures, cases=("brain",))
    inverse = _second_channel(src / "imagesTr" / "brain_0000.nii.gz", src / "imagesTr" / "brain_0001.nii.gz")
    jobs = offline.plan([str(src / "imagesTr")], tmp_path / "out", labels=str(src / "labelsTr"))
    assert len(jobs) == 1 and [Path(p).name for p in jobs[0].images] == ["brain_0000.nii.gz", "brain_0001.nii.gz"]
    assert offline.layer_path(jobs[0], "image_0001") == jobs[0].out_images[1]
    assert offline.layer_path(jobs[0], "valid") == str(tmp_path / "out" / "brain_aug000_valid.nii.gz")  # not imagesTr
    sample = offline.load_job(jobs[0])
    assert sample.layer_names() == ["image_0000", "image_0001", "label"]
    assert np.array_equal(sample["image_0001"][0].numpy(), inverse.astype(np.float32))
    out = tmp_path / "out"
    assert _run([str(src / "imagesTr"), "--labels", str(src / "labelsTr"), "--out", str(out),
                 "--pipeline", str(_flip_yaml(tmp_path))]) == 0
    second = np.asarray(nib.load(out / "imagesTr" / "brain_aug000_0001.nii.gz").dataobj)
    assert np.array_equal(second, inverse[::-1])
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["brain_aug000_0000.nii.gz",
                                                                     "brain_aug000_0001.nii.gz"]
    capsys.readouterr()
    assert cli.main(["replay", str(out / "brain_aug000.json")]) == 0
    assert capsys.readouterr().out.count("identical") == 3


def test_nnunet_channels_on_two_grids_or_with_a_gap_fail_their_case_only(fixtures, tmp_path, capsys):
    src = _nnunet(tmp_path / "ds", fixtures, cases=("brain", "head", "neck"))
    _second_channel(src / "imagesTr" / "brain_0000.nii.gz", src / "imagesTr" / "brain_0001.nii.gz", zoom=1.5)
    _second_channel(src / "imagesTr" / "head_0000.nii.gz", src / "imagesTr" / "head_0002.nii.gz")
    shutil.copy(src / "imagesTr" / "neck_0000.nii.gz", src / "imagesTr" / "neck_0001.nii.gz")
    assert _run([str(src / "imagesTr"), "--labels", str(src / "labelsTr"), "--out", str(tmp_path / "out"),
                 "--pipeline", str(_flip_yaml(tmp_path))]) == 1
    captured = capsys.readouterr()
    assert "1 written, 0 already complete, 2 failed" in captured.out
    failed = {line.split(": ")[2]: line for line in captured.err.splitlines() if "failed:" in line}
    assert "brain_0001.nii.gz is on another grid" in failed[str(src / "imagesTr" / "brain_0000.nii.gz")]
    assert "share one grid" in failed[str(src / "imagesTr" / "brain_0000.nii.gz")]
    assert "_0000, _0002" in failed[str(src / "imagesTr" / "head_0000.nii.gz")]
    assert json.loads((tmp_path / "out" / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 1


def test_a_missing_label_is_a_failed_job_naming_both_files(fixtures, tmp_path, capsys):
    src = _nnunet(tmp_path / "ds", fixtures)
    (src / "labelsTr" / "head.nii.gz").unlink()
    assert _run([str(src / "imagesTr"), "--labels", str(src / "labelsTr"), "--out", str(tmp_path / "out"),
                 "--pipeline", str(_flip_yaml(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert str(src / "imagesTr" / "head_0000.nii.gz") in err and str(src / "labelsTr" / "head.nii.gz") in err
    assert not (tmp_path / "out" / "imagesTr" / "head_aug000_0000.nii.gz").exists()     # no image-only output
    assert (tmp_path / "out" / "labelsTr" / "brain_aug000.nii.gz").exists()


def test_labels_paired_by_the_same_file_name_keep_two_folders(fixtures, tmp_path, capsys):
    scans, segs = tmp_path / "scans", tmp_path / "segs"
    scans.mkdir()
    segs.mkdir()
    for name in ("s1", "s2_0000"):                  # a name like a channel does not make it nnU-Net here
        shutil.copy(fixtures / "KmeansTest_T1UCharRaw.nii.gz", scans / f"{name}.nii.gz")
        shutil.copy(fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", segs / f"{name}.nii.gz")
    out = tmp_path / "out"
    assert _run([str(scans), "--labels", str(segs), "--out", str(out), "--pipeline", str(_flip_yaml(tmp_path))]) == 0
    assert sorted(p.name for p in (out / "scans").iterdir()) == ["s1_aug000.nii.gz", "s2_0000_aug000.nii.gz"]
    assert sorted(p.name for p in (out / "segs").iterdir()) == ["s1_aug000.nii.gz", "s2_0000_aug000.nii.gz"]
    label_out = dio.load(out / "segs" / "s1_aug000.nii.gz")["image"][0].numpy()
    label_in = dio.load(segs / "s1.nii.gz")["image"][0].numpy()
    assert np.array_equal(label_out, label_in[::-1])
    with pytest.raises(ParameterError, match="not both"):
        offline.plan([str(scans)], out, label_suffix="_seg", labels=str(segs))
    with pytest.raises(ParameterError, match="existing folder"):
        offline.plan([str(scans)], out, labels=str(tmp_path / "nowhere"))


def _rasters(fixtures: Path, tmp_path: Path, names: tuple[str, ...]) -> Path:
    src = tmp_path / "rasters"
    src.mkdir()
    for name in names:
        shutil.copy(fixtures / "rgbn_suba.tif", src / name)
    return src


def test_bands_per_file_pattern_and_a_count_mismatch_fails_that_file(fixtures, tmp_path, capsys):
    import rasterio
    src = _rasters(fixtures, tmp_path, ("S2_a.tif", "L8_b.tif", "other.tif"))
    out = tmp_path / "out"
    rc = _run([str(src / "*.tif"), "--out", str(out), "--preset", "aerial-rgbn", "--sensor", "aerial-rgbn",
               "--bands", "S2_*.tif=blue,green,red,nir", "--bands", "L8_*.tif=blue,green,red",
               "--bands", "blue,green,red,nir"])
    captured = capsys.readouterr()
    assert rc == 1 and "2 written, 0 already complete, 1 failed" in captured.out
    assert "L8_b.tif: --bands L8_*.tif=blue,green,red names 3 bands, but the file has 4" in captured.err
    with rasterio.open(out / "S2_a_aug000.tif") as f:
        assert f.descriptions == ("blue", "green", "red", "nir")
    sidecar = json.loads((out / "S2_a_aug000.json").read_text(encoding="utf-8"))
    assert sidecar["bands"] == ["blue", "green", "red", "nir"]
    assert cli.main(["replay", str(out / "other_aug000.json")]) == 0       # the fallback list, replayed


def test_band_descriptions_in_the_file_need_no_bands_flag(fixtures, tmp_path, capsys):
    import rasterio
    src = _rasters(fixtures, tmp_path, ("described.tif",))
    with rasterio.open(src / "described.tif", "r+") as f:
        f.descriptions = ("blue", "green", "red", "nir")
    assert dio.load(src / "described.tif").layer_info("image").channels == ("blue", "green", "red", "nir")
    assert _run([str(src / "described.tif"), "--out", str(tmp_path / "out"), "--preset", "aerial-rgbn",
                 "--bands", "other*.tif=B1,B2,B3,B4"]) == 0                  # a pattern for other files only


def test_bands_table_parsing():
    assert cli.bands_table(None) is None
    assert cli.bands_table(["B1,B2"]) == ["B1", "B2"]
    assert cli.bands_table(["a*=B1,B2", "B3,B4"]) == {"a*": ["B1", "B2"], "*": ["B3", "B4"]}
    for bad in (["B1,,B2"], ["=B1"], ["B1", "B2"]):
        with pytest.raises(ParameterError):
            cli.bands_table(bad)


def test_preview_band_choice_by_name_and_sensor(fixtures):
    from domainaug.preview import rgb_channels
    from domainaug.remote_sensing import set_bands
    sample = dio.load(fixtures / "rgbn_suba.tif")
    assert rgb_channels(sample) == [2, 1, 0]                                   # no names: bands 3, 2, 1
    assert rgb_channels(sample, ["band4", "band3", "band2"]) == [3, 2, 1]
    named = set_bands(sample, ["B02", "B03", "B04", "B08"], sensor="sentinel2")
    assert rgb_channels(named) == [2, 1, 0]
    assert rgb_channels(named, ["nir", "red", "green"]) == [3, 2, 1]
    assert rgb_channels(named, ["B8", "B4", "B3"], sensor="sentinel2") == [3, 2, 1]
    with pytest.raises(ParameterError, match="'swir16' is none of them"):
        rgb_channels(named, ["swir16", "red", "green"])
    with pytest.raises(ParameterError, match="three band names"):
        rgb_channels(named, ["red", "green"])


def _panel_means(png: Path, columns: int, rows: int = 1) -> list[float]:
    """The mean grey level of the middle of each column's panels (the PNG's pixels)."""
    import matplotlib.image as mpimg
    pixels = mpimg.imread(png)[..., :3].mean(-1)
    h, w = pixels.shape
    means = []
    for col in range(columns):
        x0, x1 = int(w * (col + 0.3) / columns), int(w * (col + 0.7) / columns)
        band = [pixels[int(h * (r + 0.35) / rows):int(h * (r + 0.65) / rows), x0:x1] for r in range(rows)]
        means.append(float(np.mean([b.mean() for b in band])))
    return means


@pytest.mark.parametrize("image", ["rgbn_suba.tif", "KmeansTest_T1UCharRaw.nii.gz"])
def test_preview_of_a_brightened_input_shows_it_brighter(fixtures, tmp_path, capsys, image):
    pytest.importorskip("matplotlib")
    bright = tmp_path / "bright.yaml"
    bright.write_text(da.BrightnessContrast(brightness=0.25, contrast=1.0).to_yaml(), encoding="utf-8")
    png = tmp_path / "preview.png"
    extra = ["--bands", "band3,band2,band1"] if image.endswith(".tif") else []
    assert cli.main(["preview", str(fixtures / image), "--pipeline", str(bright), "-n", "1", "--out", str(png),
                     *extra]) == 0
    original, augmented = _panel_means(png, columns=2, rows=1 if image.endswith(".tif") else 3)
    assert augmented > original + 0.1          # a stretch per panel would show the two alike
