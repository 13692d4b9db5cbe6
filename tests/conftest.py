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


def _doc_blocks(page: str, heading: str) -> list[str]:
    """The ```python blocks of section ``heading`` (up to the next heading of its level) of ``page``:
    ``README.md`` or a markdown file under ``docs/`` (``"training.md"``), read as UTF-8."""
    import re
    level = heading.split(" ", 1)[0]
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    text = path.read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1].split(f"\n{level} ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def doc_blocks():
    """``doc_blocks("training.md", "## TorchGeo")``: one section's code of a page, for a test to execute."""
    return _doc_blocks
