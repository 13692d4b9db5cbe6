"""The command line's manners (issue "Offline jobs you can trust", item 7): -q/-v through ``logging``,
progress drawn only on a terminal and plain lines elsewhere, and a library that never prints."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import pytest

import domainaug as da
from domainaug import cli, offline


@pytest.fixture
def scenes(fixtures, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(fixtures / "rgbn_suba.tif", src / f"{name}.tif")
    return src


def _augment(scenes: Path, out: Path, *extra: str) -> int:
    return cli.main([*extra, "augment", str(scenes / "*.tif"), "--out", str(out), "--workers", "1",
                     "--preset", "aerial-rgbn", "--bands", "blue,green,red,nir", "--sensor", "aerial-rgbn"])


def test_progress_into_a_log_is_plain_lines_without_carriage_returns(scenes, tmp_path, capsys):
    assert _augment(scenes, tmp_path / "out") == 0
    err = capsys.readouterr().err                            # captured: not a terminal
    assert "\r" not in err
    lines = err.splitlines()
    assert "domainaug: augment: 3 jobs (3 inputs x 1 copies)" in lines[0]
    assert [ln for ln in lines if "progress: 3/3 jobs" in ln]                       # the last one, always
    assert len([ln for ln in lines if "progress:" in ln]) == 3                       # a tenth of 3 jobs: each


def test_plain_progress_lines_come_every_tenth_of_the_run_or_every_10_s(caplog):
    progress = cli.Progress()
    with caplog.at_level(logging.INFO, logger="domainaug"):
        for done in range(1, 101):
            progress(done, 100, elapsed=0.01 * done)
        assert len(caplog.records) == 10 and "100/100" in caplog.records[-1].getMessage()
        caplog.clear()
        slow = cli.Progress()
        for done in range(1, 6):
            slow(done, 1000, elapsed=11.0 * done)                 # 11 s per job: a line for each
        assert len(caplog.records) == 5


def test_progress_on_a_terminal_is_a_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    progress = cli.Progress()
    for done in range(1, 4):
        progress(done, 3, elapsed=0.1 * done)
    assert "3/3" in term.getvalue() and "\r" in term.getvalue() and "progress:" not in term.getvalue()
    quiet = Terminal()
    monkeypatch.setattr("sys.stderr", quiet)
    cli.Progress(quiet=True)(1, 1, 0.1)
    assert quiet.getvalue() == ""


def test_quiet_shows_no_information_but_still_the_errors_and_the_summary(scenes, tmp_path, capsys):
    (scenes / "broken.tif").write_bytes(b"not a GeoTIFF")
    assert _augment(scenes, tmp_path / "out", "-q") == 1
    captured = capsys.readouterr()
    assert "3 written, 0 already complete, 1 failed" in captured.out             # the result, on stdout
    assert "progress" not in captured.err and "jobs (" not in captured.err
    assert "broken.tif" in captured.err and "failed:" in captured.err
    assert cli.main(["replay", str(tmp_path / "missing.json"), "-q"]) == 2       # -q after the subcommand
    assert "missing.json" in capsys.readouterr().err


def test_verbose_shows_debug_lines(scenes, tmp_path, capsys):
    assert _augment(scenes, tmp_path / "out", "-v") == 0
    err = capsys.readouterr().err
    assert "DEBUG domainaug.offline" in err and "a_aug000.tif" in err and "3 jobs into" in err
    assert _augment(scenes, tmp_path / "out") == 0
    assert "DEBUG" not in capsys.readouterr().err                                 # the default: info


def test_the_library_prints_nothing_and_has_only_a_null_handler(scenes, tmp_path, capsys):
    logger = logging.getLogger("domainaug")
    assert [type(h) for h in logger.handlers] == [logging.NullHandler]
    jobs = offline.plan([str(scenes / "a.tif"), str(tmp_path / "nothing.tif")], tmp_path / "out")
    results = offline.run(jobs, da.Flip(axes=(0,)), seed=0, workers=1)
    assert [r["status"] for r in results] == ["done", "failed"]
    sample = da.io.load(scenes / "a.tif")
    da.Compose([da.Flip(axes=(0,)), da.GaussianNoise(std=1.0)])(sample, da.generator_for(0, 0, 0))
    assert capsys.readouterr() == ("", "")
    _augment(scenes, tmp_path / "cli", "-v")                                       # the CLI's handler goes again
    assert [type(h) for h in logger.handlers] == [logging.NullHandler] and logger.level == logging.NOTSET
