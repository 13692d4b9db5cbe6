"""Offline generation: pairing, sidecars, replay, Dask scheduler independence, resume, bad inputs."""

import json
import shutil

import pytest

from domainaug import cli, offline


@pytest.fixture
def dataset(fixtures, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(fixtures / "KmeansTest_T1UCharRaw.nii.gz", src / "t1.nii.gz")
    shutil.copy(fixtures / "KmeansTest_T1KmeansPrelimSegmentation.nii.gz", src / "t1_seg.nii.gz")
    shutil.copy(fixtures / "L7_ETMs.tif", src / "scene.tif")
    return src


def _checksums(out):
    return {p.name: offline.sha256(p) for p in sorted(out.iterdir()) if p.suffix in (".gz", ".tif")}


def test_augment_pairs_labels_writes_sidecars_and_replays(dataset, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["augment", str(dataset / "t1.nii.gz"), "--out", str(out), "--preset", "brain-mri", "-n", "2",
                   "--label-suffix", "_seg", "--workers", "1"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir() if p.name != ".domainaug.lock")   # (the folder's lock file stays)
    assert names == ["manifest.json", "t1_aug000.json", "t1_aug000.nii.gz", "t1_aug001.json", "t1_aug001.nii.gz",
                     "t1_seg_aug000.nii.gz", "t1_seg_aug001.nii.gz"]
    doc = json.loads((out / "t1_aug001.json").read_text(encoding="utf-8"))
    assert doc["records"][0]["transform"] == "Compose" and set(doc["inputs"]) == {str(dataset / "t1.nii.gz"),
                                                                                 str(dataset / "t1_seg.nii.gz")}
    assert cli.main(["replay", str(out / "t1_aug001.json")]) == 0


def test_outputs_do_not_depend_on_the_scheduler(dataset, tmp_path):
    from distributed import LocalCluster
    volumes = str(dataset / "*.nii.gz")                                 # the 3D preset's inputs
    jobs_a = offline.plan([volumes], tmp_path / "a", copies=2, label_suffix="_seg")
    jobs_b = offline.plan([volumes], tmp_path / "b", copies=2, label_suffix="_seg")
    assert len(jobs_a) == 2                                             # t1 x 2 copies; t1_seg is its label
    pipeline = offline.resolve_pipeline("brain-mri")
    offline.run(jobs_a, pipeline, seed=3, workers=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        offline.run(jobs_b, pipeline, seed=3, scheduler=cluster.scheduler_address)
    assert _checksums(tmp_path / "a") == _checksums(tmp_path / "b")


def test_rerun_resumes_and_bad_inputs_are_reported(dataset, tmp_path, capsys):
    (dataset / "broken.nii.gz").write_bytes(b"not a nifti")
    out = tmp_path / "out"
    args = ["augment", str(dataset / "*.nii.gz"), "--out", str(out), "--preset", "brain-mri", "-n", "2",
            "--label-suffix", "_seg", "--workers", "2"]
    assert cli.main(args) == 1                                      # the broken file failed, the rest finished
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err
    before = _checksums(out)
    (out / "t1_aug001.nii.gz").unlink()                             # a lost output is made again, exactly
    assert cli.main(args) == 1
    assert "1 written, 1 already complete" in capsys.readouterr().out
    assert _checksums(out) == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_user_mistakes_are_one_line_errors(dataset, tmp_path, capsys):
    assert cli.main(["augment", str(dataset), "--out", str(tmp_path / "o"), "--preset", "no-such"]) == 2
    assert "preset='no-such'" in capsys.readouterr().err
    bad = tmp_path / "p.yaml"
    bad.write_text("transform: Compose\nconfig:\n  transforms: [\n", encoding="utf-8")
    assert cli.main(["augment", str(dataset), "--out", str(tmp_path / "o"), "--pipeline", str(bad)]) == 2
    assert "line" in capsys.readouterr().err
    unknown = tmp_path / "q.yaml"
    unknown.write_text("transform: Compose\nconfig:\n  transforms:\n  - transform: Affine\n    config: {degree: 5}\n",
                       encoding="utf-8")
    assert cli.main(["augment", str(dataset), "--out", str(tmp_path / "o"), "--pipeline", str(unknown)]) == 2
    assert "degree" in capsys.readouterr().err
    assert cli.main(["presets"]) == 0 and "brain-mri" in capsys.readouterr().out


def test_a_killed_run_resumes_to_exactly_the_full_set(dataset, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    args = [sys.executable, "-m", "domainaug", "augment", str(dataset / "t1.nii.gz"), "--out", str(out), "--preset",
            "brain-mri", "-n", "8", "--label-suffix", "_seg", "--workers", "1"]
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("t1_aug*.json"))) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)                                 # the CLI and its Dask workers
    proc.wait()
    done_before = len(list(out.glob("t1_aug*.json")))
    assert 2 <= done_before < 8
    assert subprocess.run(args, capture_output=True).returncode == 0
    expected = {f"t1_aug{k:03d}{ext}" for k in range(8) for ext in (".json", ".nii.gz")} | \
        {f"t1_seg_aug{k:03d}.nii.gz" for k in range(8)} | {"manifest.json"}
    assert {p.name for p in out.iterdir()} - {".domainaug.lock"} == expected      # no duplicates, no partial files
    assert cli.main(["replay", str(out / "t1_aug007.json")]) == 0


def test_inputs_with_the_same_name_are_refused(fixtures, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(fixtures / "KmeansTest_T1UCharRaw.nii.gz", tmp_path / folder / "t1.nii.gz")
    with pytest.raises(offline.ParameterError, match="^inputs="):
        offline.plan([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out")


def test_preview_writes_pngs_for_a_volume_and_a_raster(dataset, fixtures, tmp_path):
    png = tmp_path / "p.png"
    assert cli.main(["preview", str(dataset / "t1.nii.gz"), "--label", str(dataset / "t1_seg.nii.gz"), "--preset",
                     "brain-mri", "-n", "2", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    yaml_file = tmp_path / "rs.yaml"
    yaml_file.write_text("transform: Compose\nconfig:\n  transforms:\n  - transform: RotationPolicy\n"
                         "    config: {policy: any}\n", encoding="utf-8")
    png2 = tmp_path / "r.png"
    assert cli.main(["preview", str(fixtures / "rgbn_suba.tif"), "--pipeline", str(yaml_file), "--bands",
                     "band3,band2,band1", "--out", str(png2)]) == 0
    assert png2.stat().st_size > 1000


def test_augment_writes_every_layer_with_its_own_name_and_metadata(dataset, tmp_path):
    """Masks, occlusion and appended indices are written too, each listed in the sidecar and manifest."""
    import numpy as np
    import rasterio

    from domainaug import io as dio
    yaml_file = tmp_path / "rs.yaml"
    yaml_file.write_text("transform: Compose\nconfig:\n  transforms:\n"
                         "  - transform: RotationPolicy\n    config: {policy: any}\n"
                         "  - transform: CloudShadow\n    config: {coverage: 0.2}\n"
                         "  - transform: AppendIndex\n    config: {index: NDVI}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli.main(["augment", str(dataset / "scene.tif"), "--out", str(out), "--pipeline", str(yaml_file),
                     "--bands", "B1,B2,B3,B4,B5,B7", "--sensor", "landsat7", "--workers", "1"]) == 0
    doc = json.loads((out / "scene_aug000.json").read_text(encoding="utf-8"))
    assert set(doc["layers"]) == {"image", "valid", "occlusion", "NDVI"}
    assert doc["layers"]["image"] == str(out / "scene_aug000.tif")              # today's name, unchanged
    assert doc["layers"]["occlusion"] == str(out / "scene_aug000_occlusion.tif")
    assert set(doc["outputs"]) == set(doc["layers"].values())
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"][0]["layers"] == doc["layers"]
    with rasterio.open(out / "scene_aug000_valid.tif") as f:
        assert f.dtypes[0] == "uint8" and f.crs is not None and f.count == 1
        valid = f.read(1)
    assert set(np.unique(valid).tolist()) <= {0, 1} and 0 < valid.mean() < 1
    with rasterio.open(out / "scene_aug000_NDVI.tif") as f, rasterio.open(dataset / "scene.tif") as src:
        assert f.count == 1 and f.dtypes[0] == "float32" and f.crs == src.crs and f.descriptions[0] == "NDVI"
    occlusion = dio.load(out / "scene_aug000_occlusion.tif")
    assert set(occlusion["image"].unique().tolist()) <= {0, 1, 2}
    assert cli.main(["replay", str(out / "scene_aug000.json")]) == 0
    assert cli.main(["augment", str(dataset / "scene.tif"), "--out", str(out), "--pipeline", str(yaml_file),
                     "--bands", "B1,B2,B3,B4,B5,B7", "--sensor", "landsat7", "--workers", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"][0]["layers"] == doc["layers"]   # resumed
