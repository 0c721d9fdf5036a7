# Two commands for a fresh machine: `make demo` and `make test`.
# Both build .venv (torch first, so pip takes the CPU wheel, then the package).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

.PHONY: venv demo test bench clean

# torch is named again with the package: without it pip's resolver swaps the CPU wheel for the
# newest CUDA build (several GB of nvidia-* wheels) while it resolves the rest
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test,tracking]" "$(TORCH)"
	touch $(STAMP)

venv: $(STAMP)

## demo: the whole pipeline on the embedded BBC News data (artifacts under ./demo)
demo: venv
	$(VENV)/bin/multitype run --root demo

## test: the test suite (real data, real model weights, a real S3 server)
test: venv
	$(PY) -m pytest

bench: venv
	$(PY) -m pip install --quiet -e ".[bench]" "$(TORCH)"
	$(PY) benchmarks/baselines.py

clean:
	rm -rf demo .pytest_cache
