# Two commands do all the set-up: `make test` and `make demo`.
# Both create (or reuse) the virtual environment .venv in the repository root.
# torch is pinned to the CPU build that lies on this kind of machine's disk and
# installed first, so that no CUDA build is ever resolved; the package itself
# only declares a range (torch>=2.1).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test demo lint docs venv clean-venv

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test,local,docs,benchmarks]"
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check skcandist tests benchmarks docs
	$(VENV)/bin/ruff format --check skcandist tests benchmarks docs

test: lint
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/skcandist demo

docs: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

clean-venv:
	rm -rf $(VENV)
