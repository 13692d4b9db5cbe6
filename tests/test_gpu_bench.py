"""benchmarks/gpu.py (the device benchmark) on the CPU at its quick sizes, in-process: the table
has every workload, floor and per-element-loop row with numbers, a peer that does not import is
listed as skipped, and a failing workload or the time budget shows in the table without stopping
the run."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_bench_under_test", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def _table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table under ``## heading``, split into cells."""
    part = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows[1:]]   # drop the header


def _number(cell: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(?: \((\d+(?:\.\d+)?)\))?", cell)
    assert match, f"not a number of ms: {cell!r}"
    return float(match.group(1))


def test_quick_cpu_run_has_every_row(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "monai", None)       # import monai now raises ImportError
    out, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    rc = bench.main(["--device", "cpu", "--quick", "--rounds", "1", "--out", str(out), "--json", str(js)])
    assert rc == 0
    text = out.read_text(encoding="utf-8")
    summary = _table(text, "Summary")
    titles = [bench.WORKLOADS[k].title(bench.QUICK) for k in bench.WORKLOADS]
    assert [r[0] for r in summary] == titles
    for r in summary:
        assert _number(r[1]) > 0 and _number(r[4]) > 0         # domainaug batched and per-element loop
        assert _number(r[9]) > 0 and _number(r[10]) > 0        # both floors
        assert r[5] == "—" and r[6] == "—"                      # MONAI not timed
    rows = _table(text, "All rows")
    for title in titles:
        tools = {r[1]: r for r in rows if r[0] == title}
        for tool in ("floor: copy", "floor: grid_sample", "domainaug", "domainaug per-element loop"):
            assert _number(tools[tool][3]) > 0 and int(tools[tool][7]) >= 1, (title, tool)
        assert tools["MONAI"][3] == "—" and tools["MONAI"][-1].startswith("skipped: monai does not import"), title
    data = json.loads(js.read_text(encoding="utf-8"))
    loops = [r for r in data["rows"] if r["kind"] == "loop"]
    assert len(loops) == len(titles) and all(r["batch"] == bench.QUICK.batch2d or r["batch"] == bench.QUICK.batch3d
                                             for r in loops)
    assert all(r["per_element_ms"] == pytest.approx(r["median_ms"] / r["batch"]) for r in loops)
    ours = {r["key"]: r for r in data["rows"] if r["kind"] == "ours"}
    target = summary[0][-1]                                     # 3D affine + elastic: rate and x MONAI
    assert target.startswith(">= 2000 volumes/s: ") and "10x MONAI: n/a (MONAI not timed)" in target
    assert target.endswith("(a CPU run: the target is for one H200)")
    assert ours["3d-spatial"]["elements_per_s"] == pytest.approx(bench.QUICK.batch3d / ours["3d-spatial"]["median_ms"]
                                                                 * 1e3)


def test_failure_and_budget_are_reported(bench, tmp_path, monkeypatch):
    def broken(device, sizes):
        raise RuntimeError("no batch today")

    workload = bench.WORKLOADS["2d-dihedral"]
    monkeypatch.setitem(bench.WORKLOADS, "2d-dihedral", bench.Workload(workload.title, broken, workload.batch,
                                                                        workload.floor, workload.target))
    out = tmp_path / "gpu.md"
    rc = bench.main(["--device", "cpu", "--quick", "--rounds", "1", "--only", "2d-dihedral", "--out", str(out)])
    assert rc == 1
    summary = _table(out.read_text(encoding="utf-8"), "Summary")
    assert len(summary) == 1 and summary[0][1] == "RuntimeError: no batch today"
    assert (tmp_path / "gpu.json").exists()

    rc = bench.main(["--device", "cpu", "--quick", "--budget", "0", "--only", "3d-intensity", "2d-any",
                     "--out", str(out)])
    summary = _table(out.read_text(encoding="utf-8"), "Summary")
    assert rc == 0 and len(summary) == 2
    assert all(r[1] == "skipped: over the time budget of 0 s" for r in summary)


def test_the_device_check_compares_a_batch_with_its_reference(bench):
    """``agreement`` (the note a GPU run adds to domainaug's row): on the same device the batch agrees
    with itself exactly; a pipeline that fails says so instead of stopping the run."""
    import torch

    import domainaug as da
    from domainaug.training import BatchAugment
    images, labels = bench.volume_batch(2, (12, 14, 10), torch.device("cpu"))
    batch = BatchAugment(da.Compose([da.Affine(degrees=(-10, 10)), da.Elastic(spacing=8.0)]), seed=1)
    note = bench.agreement(batch, images, labels)
    assert note == "; vs cpu: image max |diff| 0.0e+00 of its range, labels 100.000% equal"
    assert "check failed (ShapeError" in bench.agreement(batch, images[:, :, :5], labels)
