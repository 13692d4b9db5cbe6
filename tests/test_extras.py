"""Optional dependencies: a missing extra is named in one line; NIfTI, GeoTIFF, the demo and local
offline runs need none of them."""

import subprocess
import sys

import pytest

import domainaug as da
from domainaug import cli, offline
from domainaug.errors import MissingDependencyError
from domainaug.extras import EXTRAS, available, require

INSTALL_HINT = r"pip install 'domainaug\[{}\]'"


def test_a_missing_module_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # as if it were not installed
    with pytest.raises(MissingDependencyError, match=INSTALL_HINT.format("plot")) as info:
        require("matplotlib", "preview")
    assert isinstance(info.value, ImportError) and "\n" not in str(info.value)
    assert info.value.extra == "plot" and info.value.module == "matplotlib" and not available("matplotlib")
    with pytest.raises(da.ParameterError, match="^module='numpy'"):
        require("numpy", "nothing")


def test_every_lazy_import_site_names_its_extra(monkeypatch, tmp_path, fixtures, capsys):
    for module in EXTRAS:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, "domainaug.io.itk", raising=False)     # imported afresh, as in a new process
    monkeypatch.delattr(da.io, "itk", raising=False)
    sample = da.io.load(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    from domainaug.io import interop
    from domainaug.preview import preview
    from domainaug.training import adapters
    monkeypatch.setattr(adapters, "_BUILT", {})                             # the adapter classes, built afresh
    cases = [
        ("plot", lambda: preview(sample, [sample], tmp_path / "p.png")),
        ("monai", lambda: interop.to_monai(sample)),
        ("torchio", lambda: interop.to_torchio(sample)),
        ("monai", lambda: adapters.MonaiTransform),
        ("torchio", lambda: adapters.TorchioTransform),
        ("itk", lambda: da.io.save(sample, tmp_path / "t1.mha")),
        ("xarray", lambda: da.Sample.from_xarray(None)),
        ("xarray", lambda: sample.to_xarray()),
    ]
    (tmp_path / "x.mha").write_bytes(b"not read: the reader is refused first")
    cases.append(("itk", lambda: da.io.load(tmp_path / "x.mha")))
    jobs = offline.plan([str(fixtures / "KmeansTest_T1UCharRaw.nii.gz")], tmp_path / "out", 1, None)
    cases.append(("dask", lambda: offline.run(jobs, da.Compose([]), scheduler="tcp://127.0.0.1:1")))
    from domainaug.evaluate import tune
    cases.append(("tune", lambda: tune("t1-segmentation", {"none": None}, storage=tmp_path / "s.sqlite3")))
    for extra, call in cases:
        with pytest.raises(MissingDependencyError, match=INSTALL_HINT.format(extra)):
            call()
    capsys.readouterr()
    t1 = str(fixtures / "KmeansTest_T1UCharRaw.nii.gz")
    assert cli.main(["preview", t1, "--preset", "brain-mri", "--out", str(tmp_path / "p.png")]) == 2
    assert capsys.readouterr().err.strip() == ("domainaug: error: preview needs matplotlib, which is not installed: "
                                               "pip install 'domainaug[plot]'")


def test_local_offline_runs_need_no_dask(monkeypatch, tmp_path, fixtures):
    monkeypatch.setitem(sys.modules, "distributed", None)
    jobs = offline.plan([str(fixtures / "KmeansTest_T1UCharRaw.nii.gz")], tmp_path / "out", 2, None)
    results = offline.run(jobs, da.Flip(axes=(0,)), seed=1, workers=2)
    assert [r["status"] for r in results] == ["done", "done"] and (tmp_path / "out" / "manifest.json").is_file()


def test_nifti_geotiff_and_the_demo_import_no_optional_dependency(tmp_path):
    """In a fresh process where every optional module is unimportable."""
    code = ("import sys\n"
            f"for m in {sorted(EXTRAS)!r} + ['dask', 'sklearn']:\n"
            "    sys.modules[m] = None\n"
            "import domainaug as da\n"
            "from domainaug import cli, data\n"
            "t1 = da.io.load(data.path(data.T1), label=data.path(data.T1_LABELS))\n"
            f"da.io.save(t1, {str(tmp_path / 't1.nii.gz')!r})\n"
            "rgbn = da.io.load(data.path(data.RGBN))\n"
            f"da.io.save(rgbn, {str(tmp_path / 'rgbn.tif')!r})\n"
            f"sys.exit(cli.main(['demo', '--out', {str(tmp_path / 'demo')!r}]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "pip install 'domainaug[plot]'" in out.stdout
    assert (tmp_path / "demo" / "t1_aug.nii.gz").is_file() and (tmp_path / "demo" / "rgbn_aug.tif").is_file()
    assert not list((tmp_path / "demo").glob("*.png"))
