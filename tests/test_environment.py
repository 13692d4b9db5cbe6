"""What ``import domainaug`` sets in the process environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, domainaug; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_kernels_cache_in_the_user_cache_keyed_on_simd(tmp_path):
    from domainaug.core.kernels import kernel_cache_dir
    if sys.platform in ("win32", "darwin"):
        pytest.skip("the XDG layout is the Linux one")
    (tmp_path / "simd.py").write_text("A = 1\n", encoding="utf-8")
    home = {"HOME": "/home/u"}
    first = kernel_cache_dir(tmp_path, home)
    assert first.parent == Path("/home/u/.cache/domainaug") and first.name.startswith("numba-")
    assert kernel_cache_dir(tmp_path, {**home, "XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/domainaug") / first.name
    assert kernel_cache_dir(tmp_path, {**home, "XDG_CACHE_HOME": "rel"}) == first       # XDG: relative is ignored
    chosen = kernel_cache_dir(tmp_path, {**home, "NUMBA_CACHE_DIR": "/nb"})
    assert chosen.parent == Path("/nb") and chosen.name.startswith("domainaug-")
    (tmp_path / "simd.py").write_text("A = 2\n", encoding="utf-8")    # edited: the kernels that use it recompile
    assert kernel_cache_dir(tmp_path, home) != first


def _files(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_import_and_compiled_kernels_write_nothing_inside_the_package(tmp_path):
    import domainaug
    package = Path(domainaug.__file__).parent
    before = _files(package)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    code = ("import numba, torch, domainaug as da\n"
            "assert numba.config.CACHE_DIR == '', numba.config.CACHE_DIR   # the user's own kernels: numba's default\n"
            "s = da.Sample.from_numpy(torch.rand(1, 20, 21, 22).numpy())\n"
            "da.Compose([da.Gamma(1.5), da.Flip(axes=(0,))])(s, generator=da.generator_for(0, 0, 0))\n")
    subprocess.run([sys.executable, "-B", "-c", code], env=env, check=True, timeout=600)   # -B: no .pyc either
    assert _files(package) == before
    assert list((tmp_path / "xdg" / "domainaug").rglob("*.nbi"))


def test_import_leaves_heavy_modules_until_first_use():
    heavy = ["scipy.stats", "rasterio", "matplotlib", "SimpleITK", "dask", "distributed", "monai", "torchio"]
    code = f"import sys, domainaug; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
