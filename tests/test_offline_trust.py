"""Offline jobs you can trust (issue "Offline jobs you can trust", items 1 and 2): a write that did
not reach the disk never becomes a "complete" output, and resume checks what it resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

import domainaug as da
from domainaug import cli, offline
from domainaug import io as dio
from domainaug.errors import DomainaugError


@pytest.fixture
def scenes(fixtures, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        shutil.copy(fixtures / "rgbn_suba.tif", src / f"{name}.tif")
    return src


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: offline.sha256(p) for p in sorted(out.iterdir()) if p.suffix in (".tif", ".gz")}


def test_a_writer_that_fails_silently_is_caught_before_the_rename(tmp_path, monkeypatch):
    """GDAL only logs some write errors: the writer returns, and an empty file would take the final name."""
    from domainaug.io import geotiff
    monkeypatch.setattr(geotiff, "write", lambda path, *a, **k: Path(path).write_bytes(b""))
    affine = np.array([[0, 10.0, 0], [-10.0, 0, 0], [0, 0, 1]])
    sample = da.Sample.from_numpy(np.ones((2, 8, 8), np.float32), affine=affine, crs="EPSG:32633",
                                  channels=["B1", "B2"])
    with pytest.raises(DomainaugError, match=r"out\.tif.*does not read back"):
        dio.save(sample, tmp_path / "out.tif")
    assert list(tmp_path.iterdir()) == []                      # nothing under the final name, no temporary


def test_a_truncated_nifti_is_caught_before_the_rename(tmp_path, monkeypatch, fixtures):
    from domainaug.io import nifti
    real = nifti.write

    def truncating(path, *args, **kwargs):
        real(path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])         # a disk that filled up half way

    monkeypatch.setattr(nifti, "write", truncating)
    sample = dio.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    with pytest.raises(DomainaugError, match="t1_out.nii.gz"):
        dio.save(sample, tmp_path / "t1_out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_a_job_whose_write_fails_is_failed_with_no_sidecar(scenes, tmp_path, monkeypatch):
    from domainaug.io import geotiff
    monkeypatch.setattr(geotiff, "write", lambda path, *a, **k: Path(path).write_bytes(b""))
    out = tmp_path / "out"
    jobs = offline.plan([str(scenes / "a.tif")], out)
    results = offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)
    assert results[0]["status"] == "failed" and "does not read back" in results[0]["error"]
    assert not Path(jobs[0].sidecar).exists() and not Path(jobs[0].out_image).exists()
    monkeypatch.undo()                                          # the disk works again: the job is made
    assert offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)[0]["status"] == "done"


def test_a_full_disk_never_leaves_an_empty_complete_output(scenes, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        out = mnt / "out"
        jobs = offline.plan([str(scenes / "a.tif"), str(scenes / "b.tif")], out)
        results = offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)
        for job, result in zip(jobs, results):
            if result["status"] == "done":                      # a complete output reads back whole
                assert dio.load(job.out_image)["image"].numel() > 0
            else:
                assert not Path(job.sidecar).exists()
                assert not Path(job.out_image).exists() or Path(job.out_image).stat().st_size > 0
        assert any(r["status"] == "failed" for r in results)    # 96 kB cannot hold both outputs
        assert not [p for p in out.iterdir() if ".tmp" in p.name]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _augment(scenes: Path, out: Path, *extra: str) -> int:
    return cli.main(["augment", str(scenes / "*.tif"), "--out", str(out), "--workers", "1",
                     "--bands", "blue,green,red,nir", "--sensor", "aerial-rgbn", *extra])


def test_a_rerun_with_another_seed_or_pipeline_refuses_the_folder_unless_overwrite(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    assert _augment(scenes, out, "--preset", "aerial-rgbn", "--seed", "0") == 0
    first = _outputs(out)
    capsys.readouterr()
    assert _augment(scenes, out, "--preset", "aerial-rgbn", "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "seed 0, not 1" in err and "--overwrite" in err and _outputs(out) == first   # nothing touched
    flip = tmp_path / "flip.yaml"
    flip.write_text(da.Flip(axes=(0,)).to_yaml(), encoding="utf-8")
    assert _augment(scenes, out, "--pipeline", str(flip), "--seed", "0") == 2
    assert "another pipeline" in capsys.readouterr().err
    assert _augment(scenes, out, "--preset", "aerial-rgbn", "--seed", "1", "--overwrite") == 0
    assert "2 written, 0 already complete" in capsys.readouterr().out
    assert _outputs(out) != first
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    sidecars = [json.loads(p.read_text(encoding="utf-8")) for p in out.glob("*.json") if p.name != "manifest.json"]
    assert manifest["seed"] == 1 and {s["seed"] for s in sidecars} == {1}     # the manifest describes the files


def test_a_changed_input_is_made_again_and_the_others_are_kept(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    assert _augment(scenes, out, "--preset", "aerial-rgbn") == 0
    first = _outputs(out)
    import rasterio
    with rasterio.open(scenes / "b.tif", "r+") as dst:          # new pixel values, same file name
        dst.write(dst.read() // 2)
    capsys.readouterr()
    assert _augment(scenes, out, "--preset", "aerial-rgbn") == 0
    assert "1 written, 1 already complete" in capsys.readouterr().out
    again = _outputs(out)
    assert again["a_aug000.tif"] == first["a_aug000.tif"] and again["b_aug000.tif"] != first["b_aug000.tif"]


def test_a_sidecar_of_another_version_is_made_again(scenes, tmp_path):
    out = tmp_path / "out"
    jobs = offline.plan([str(scenes / "a.tif")], out)
    assert offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)[0]["status"] == "done"
    sidecar = Path(jobs[0].sidecar)
    doc = json.loads(sidecar.read_text(encoding="utf-8"))
    doc["domainaug"] = "0.0.0-" + uuid.uuid4().hex[:6]
    sidecar.write_text(json.dumps(doc), encoding="utf-8")
    assert offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)[0]["status"] == "done"
    assert json.loads(sidecar.read_text(encoding="utf-8"))["domainaug"] == da.__version__
    assert os.path.exists(jobs[0].out_image)


def test_a_second_run_into_a_locked_folder_exits_2_naming_the_folder_and_the_holder(scenes, tmp_path, capsys):
    import sys
    import time
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a_aug000.xyz.tmp.tif"
    stale.write_bytes(b"half")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from domainaug.offline import folder_lock\n"
        "with folder_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n"), str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _augment(scenes, out, "--preset", "aerial-rgbn") == 2
        err = capsys.readouterr().err
        assert str(out) in err and "another domainaug run" in err and f"pid {holder.pid}" in err
        assert stale.exists() and not (out / "manifest.json").exists()   # nothing touched under its lock
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert _augment(scenes, out, "--preset", "aerial-rgbn") == 0          # the lock went with its holder
    assert not stale.exists() and not (out / ".domainaug.lock.holder").exists()


def test_outputs_do_not_depend_on_the_other_inputs(scenes, fixtures, tmp_path):
    """Seeded by a stable id of each output (its stem), not by the job's place in the list."""
    shutil.copy(fixtures / "rgbn_suba.tif", scenes / "c.tif")
    flip = da.Compose([da.Affine(degrees=(-20, 20)), da.Flip(axes=(0,), p=0.5)])
    runs = {"all": ["a", "b", "c"], "fewer": ["c", "a"], "more": ["0", "a", "b", "c"]}
    (scenes / "0.tif").write_bytes(b"not a GeoTIFF")                # a corrupt extra input, sorted first
    outputs = {}
    for name, stems in runs.items():
        out = tmp_path / name
        jobs = offline.plan([str(scenes / f"{s}.tif") for s in stems], out, copies=2)
        offline.run(jobs, flip, seed=3, workers=1)
        outputs[name] = _outputs(out)
    assert outputs["fewer"] == {k: v for k, v in outputs["all"].items() if not k.startswith("b_")}
    assert outputs["more"] == outputs["all"]
    assert outputs["all"]["a_aug000.tif"] != outputs["all"]["a_aug001.tif"]     # copies still differ


def test_when_the_manifest_cannot_be_written_the_jobs_are_still_reported(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").mkdir()                                  # the rename onto it fails
    (scenes / "broken.tif").write_bytes(b"not a GeoTIFF")
    assert _augment(scenes, out, "--preset", "aerial-rgbn") == 2
    captured = capsys.readouterr()
    assert "2 written, 0 already complete, 1 failed" in captured.out
    assert "broken.tif" in captured.err and "manifest.json: could not be written" in captured.err


def test_a_tiny_file_declaring_a_huge_volume_fails_its_job_and_the_run_goes_on(scenes, tmp_path, capsys):
    import gzip

    import nibabel as nib
    header = nib.Nifti1Header()
    header.set_data_shape((1000, 1000, 1000))
    header.set_data_dtype(np.float32)
    bomb = tmp_path / "vols" / "bomb.nii.gz"
    bomb.parent.mkdir()
    bomb.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4))   # a few bytes that declare 4 GB
    shutil.copy(Path(__file__).resolve().parent.parent / "data_fixtures" / "KmeansTest_T1UCharRaw.nii.gz",
                bomb.parent / "t1.nii.gz")
    out = tmp_path / "out"
    rc = cli.main(["augment", str(bomb.parent / "*.nii.gz"), "--out", str(out), "--preset", "brain-mri",
                   "--workers", "1"])
    captured = capsys.readouterr()
    assert rc == 1 and "1 written, 0 already complete, 1 failed" in captured.out
    assert "bomb.nii.gz" in captured.err and "GiB" in captured.err         # named, before any allocation


def test_version_and_exit_codes_in_help(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"domainaug {da.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "exit codes: 0" in text and "1 some inputs failed" in text and "2 a usage" in text


def test_replay_of_a_malformed_sidecar_is_one_line_not_a_traceback(tmp_path, capsys):
    for text in ('{"records": []}', "not json", '{"job": {"index": 0}, "records": [], "outputs": {}}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text, encoding="utf-8")
        assert cli.main(["replay", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "bad.json: not a domainaug sidecar" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_every_command_line_argument_has_help_text():
    import argparse
    parser = cli.build_parser()
    skip = (argparse._HelpAction, argparse._SubParsersAction)
    missing = [(name, a.dest) for name, p in [("domainaug", parser)] + list(_subparsers(parser).items())
               for a in p._actions if not isinstance(a, skip) and not a.help]
    assert missing == []


def _subparsers(parser):
    import argparse
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
