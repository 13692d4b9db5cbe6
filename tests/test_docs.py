"""The documentation: every registered transform documents its arguments and an example (the
gallery and the API reference are generated from them), the gallery has one section per registered
transform, and the site builds with ``mkdocs build --strict`` (a broken link, a missing page or an
unresolvable API reference fails)."""

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from domainaug.testing import library_transforms

ROOT = Path(__file__).resolve().parents[1]
TRANSFORMS = library_transforms()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_every_transform_documents_args_and_an_example(name):
    doc = inspect.getdoc(TRANSFORMS[name]) or ""
    assert re.search(r"^Args:\n", doc, flags=re.M), f"{name}'s docstring has no `Args:` section"
    assert re.search(r"^Examples?:\n", doc, flags=re.M), f"{name}'s docstring has no `Example:` section"
    example = doc.split("Example", 1)[1]
    assert ">>> " in example, f"{name}'s `Example:` section has no doctest line (>>> ...)"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site built with --strict from a copy of docs/ whose gallery is generated without pictures
    (the pages, tables and YAML are the same; ``make docs`` adds the PNGs)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    tmp = tmp_path_factory.mktemp("docs")
    docs = tmp / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("gallery"))
    gen = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_gallery.py"), "--no-pictures",
                          "--out", str(docs / "gallery")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert gen.returncode == 0, gen.stderr[-3000:]
    config = tmp / "mkdocs.yml"
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config.write_text(text + f"\ndocs_dir: {docs}\nsite_dir: {tmp / 'site'}\n", encoding="utf-8")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)],
                           capture_output=True, text=True, cwd=ROOT, timeout=600,
                           env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    return tmp


def test_the_site_builds_strict(built_site):
    site = built_site / "site"
    for page in ("index.html", "getting-started.html", "concepts.html", "performance.html", "api/core.html",
                 "gallery/index.html", "changelog.html", "contributing.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "spatial.html").read_text(encoding="utf-8")
    assert "domainaug.spatial.Affine" in api                                   # mkdocstrings rendered it


def test_the_gallery_has_one_section_per_registered_transform(built_site):
    text = (built_site / "docs" / "gallery" / "index.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (\w+)$", text, flags=re.M)
    assert sorted(sections) == sorted(TRANSFORMS)
    for name in TRANSFORMS:                      # each section gives its flags and a YAML config
        body = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Spatial:**" in body and "**Deterministic:**" in body, name
        assert "```yaml" in body or "not shown" in body, name


def test_the_gallery_pictures_are_drawn(tmp_path):
    """One volume op and one raster op with pictures: the PNGs exist and the page shows them."""
    pytest.importorskip("matplotlib")
    gen = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_gallery.py"), "--out", str(tmp_path),
                          "--only", "Affine", "SpectralJitter"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert gen.returncode == 0, gen.stderr[-3000:]
    for png in ("Affine_volume.png", "Affine_raster.png", "Affine_raster_nir.png", "SpectralJitter_raster.png"):
        assert (tmp_path / "img" / png).stat().st_size > 10_000, png
    assert "img/Affine_volume.png" in (tmp_path / "index.md").read_text(encoding="utf-8")
