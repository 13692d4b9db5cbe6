"""What ``import domainaug`` sets in the process environment."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, domainaug; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_cached_kernels_are_dropped_when_simd_changes(tmp_path):
    from domainaug.core.kernels import drop_stale_caches
    (tmp_path / "simd.py").write_text("A = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "resample._warp-1.py311.nbi").write_text("old")
    assert drop_stale_caches(tmp_path) and not (cache / "resample._warp-1.py311.nbi").exists()
    (cache / "resample._warp-1.py311.nbi").write_text("new")
    assert not drop_stale_caches(tmp_path) and (cache / "resample._warp-1.py311.nbi").exists()
    (tmp_path / "simd.py").write_text("A = 2\n")                # edited: the kernels that use it recompile
    assert drop_stale_caches(tmp_path) and not (cache / "resample._warp-1.py311.nbi").exists()
