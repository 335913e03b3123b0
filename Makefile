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
# llama-cpp-python (the embedded local LLM) has no prebuilt wheel here and is
# built from source once, into a wheelhouse outside the repository that later
# virtual environments reuse. It is built for a portable CPU (GGML_NATIVE=OFF):
# a native build uses AMX instructions that some virtual machines advertise but
# forbid, and then crashes on the first request. --no-cache-dir keeps pip from
# reusing a wheel it built earlier with other flags.
LLAMA_SPEC ?= llama-cpp-python>=0.3.0,<0.4
LLAMA_WHEELHOUSE ?= $(HOME)/.cache/skcandist/wheels
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
PYTEST_ARGS ?=

.PHONY: test demo lint docs venv clean-venv

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	@ls $(LLAMA_WHEELHOUSE)/llama_cpp_python-*.whl >/dev/null 2>&1 || { \
	  echo "Building llama-cpp-python from source once (about 5-10 minutes)..."; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(PY) -m pip wheel --quiet --no-cache-dir --no-deps \
	    -w $(LLAMA_WHEELHOUSE) "$(LLAMA_SPEC)"; }
	$(PY) -m pip install --quiet $$(ls -t $(LLAMA_WHEELHOUSE)/llama_cpp_python-*.whl | head -n 1)
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
