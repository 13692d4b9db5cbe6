# Quickstart: `make demo` and `make test` each create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench install clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned first: the project's own range (<3) would otherwise let pip pick a CUDA build.
# The test extra is every optional extra (domainaug[all]) plus pytest, hypothesis and scikit-learn;
# the lint extra pins ruff and mypy.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test,lint]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m domainaug demo --out demo_out

# The checks first (pinned in the lint extra; configured in pyproject.toml), then the tests.
test: $(VENV)/.installed
	$(PY) -m ruff check domainaug tests benchmarks examples experiments
	$(PY) -m mypy
	$(PY) -m pytest

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
	rm -rf demo_out .pytest_cache build *.egg-info
