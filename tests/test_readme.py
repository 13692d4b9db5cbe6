"""The code blocks marked ``<!-- test -->`` in README.md and in the pages under docs/ run as written
(each in a fresh namespace, in a temporary folder); a block whose optional framework is not
installed is skipped, naming it."""

import re
from pathlib import Path

import pytest

from domainaug.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "gallery" not in p.parts)]
BLOCKS = [(page, code) for page in PAGES
          for code in re.findall(r"^<!-- test -->\n```python\n(.*?)^```", page.read_text(encoding="utf-8"),
                                 flags=re.M | re.S)]


def test_the_pages_have_marked_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("page", "code"), BLOCKS,
                         ids=[f"{page.relative_to(ROOT)}-block{i}" for i, (page, _) in enumerate(BLOCKS)])
def test_marked_block_runs(page, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        compiled = compile(code, str(page), "exec")
        exec(compiled, {"__name__": "readme"})
    except MissingDependencyError as e:
        pytest.skip(str(e))
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] in ("lightning", "hydra", "omegaconf", "nnunetv2"):
            pytest.skip(f"needs {e.name}")
        raise
