"""The README's code blocks marked ``<!-- test -->`` run as written (each in a fresh namespace, in a
temporary folder); a block whose optional framework is not installed is skipped, naming it."""

import re
from pathlib import Path

import pytest

from domainaug.errors import MissingDependencyError

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^<!-- test -->\n```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_the_readme_has_marked_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        compiled = compile(code, str(README), "exec")
        exec(compiled, {"__name__": "readme"})
    except MissingDependencyError as e:
        pytest.skip(str(e))
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] in ("lightning", "hydra", "omegaconf", "nnunetv2"):
            pytest.skip(f"needs {e.name}")
        raise
