# Quickstart: `make demo` and `make test` each create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test docs bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# nnU-Net v2 for tests/test_nnunet.py, without timm: dynamic-network-architectures requires timm,
# whose only reachable torchvision wheels need a CUDA torch (and then break `import lightning`).
# nnU-Net's default U-Net imports neither, so nnunetv2 and dynamic-network-architectures go in with
# --no-deps after their other requirements, listed here (users get the plain `domainaug[nnunet]`).
NNUNET := "nnunetv2==2.8.1" "dynamic-network-architectures==0.4.4"
NNUNET_DEPS := "acvl-utils>=0.2.6,<0.3" "batchgenerators>=0.25.1" "batchgeneratorsv2>=0.3.2" "blosc2>=3.3.2" \
	"scikit-image>=0.19.3" einops pandas graphviz tifffile requests seaborn imagecodecs yacs tqdm

# torch is pinned first, and held by a constraint file in every later step: the project's own
# range (<3) would otherwise let pip pick a CUDA build or swap it for a dependency.
# The test extra is every optional extra (domainaug[all]) plus pytest, hypothesis, scikit-learn and
# the docs extra (tests/test_docs.py builds the site with --strict); the lint extra pins ruff and mypy.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0
	printf 'torch==2.13.0\n' > $(VENV)/torch-pin.txt
	$(PIP) install -q -c $(VENV)/torch-pin.txt -e ".[test,lint]"
	$(PIP) install -q -c $(VENV)/torch-pin.txt $(NNUNET_DEPS)
	$(PIP) install -q --no-deps $(NNUNET)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m domainaug demo --out demo_out

# The checks first (pinned in the lint extra; configured in pyproject.toml), then the tests
# (with the docstring examples of domainaug/ as doctests and a strict build of the site).
test: $(VENV)/.installed
	$(PY) -m ruff check domainaug tests benchmarks examples experiments docs conftest.py
	$(PY) -m mypy
	$(PY) -m pytest
	$(PY) -m pytest --doctest-modules domainaug

# The site: the transform gallery generated from the registry (docs/gallery/, gitignored), then a
# strict MkDocs build into site/ (open site/index.html).
docs: $(VENV)/.installed
	$(PY) docs/gen_gallery.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: $(VENV)/.installed
	$(PIP) install -q -e ".[test,bench]"
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_rs.py
	$(PY) benchmarks/bench_medical.py
	$(PY) benchmarks/label_interpolation.py
	$(PY) benchmarks/bench_offline.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/suite.py

clean:
	rm -rf demo_out .pytest_cache build *.egg-info site docs/gallery
