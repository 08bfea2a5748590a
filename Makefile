# Two commands on a fresh machine (see README):
#   make demo   install spdekit into .venv and run the forward-process demo on a real image
#   make test   install spdekit with its test extras into .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# genmodel needs torch; the CPU build is enough for the tests. On a GPU machine install the CUDA
# build of your choice first (see README, "GPU"); an installed torch satisfies this spec's range.
TORCH_SPEC ?= torch==2.13.0
OUT    ?= out
# test processes (pytest-xdist): one per core; TEST_WORKERS=0 runs the suite in one process
TEST_WORKERS ?= auto

.PHONY: demo test install install-test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	@touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

demo: $(VENV)/.base
	$(VENV)/bin/spdekit simulate examples/demo.toml --out $(OUT)/demo.nc
	$(VENV)/bin/spdekit plot $(OUT)/demo.nc --out $(OUT)/demo.png
	@echo "demo outputs: $(OUT)/demo.nc (netCDF trajectory) and $(OUT)/demo.png (forward process)"

test: $(VENV)/.test
	$(PY) -m pytest -q -n $(TEST_WORKERS)

lint: $(VENV)/.test
	$(PIP) install -q ruff && $(VENV)/bin/ruff check .

bench: $(VENV)/.base
	$(PY) benchmarks/step.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .hypothesis
