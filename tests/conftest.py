from pathlib import Path

import pytest
import torch

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data_fixtures"
SHARED = ROOT.parent / "shared" / "data_real"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data_real is not present")
    return SHARED


def _readme_blocks(heading: str) -> list[str]:
    """The ```python blocks of README.md's section ``heading`` (up to the next heading of its level)."""
    import re
    level = heading.split(" ", 1)[0]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1].split(f"\n{level} ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def readme_blocks():
    """``readme_blocks("### TorchGeo")``: the README's code of one section, for a test to execute."""
    return _readme_blocks
