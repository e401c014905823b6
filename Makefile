# shapeshift: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
TORCH_INDEX ?=  # e.g. https://download.pytorch.org/whl/cpu for the CPU build on a CPU-only machine

.DEFAULT_GOAL := help
.PHONY: help install test test-full lint train sweep preview bench gpu-check constraints clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# A stamp file: the environment is (re)installed only when it is missing or pyproject.toml changed.
INSTALLED := $(VENV)/.installed

$(INSTALLED): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install "torch==2.13.0" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -c constraints.txt -e '.[dev,launchers,tune]'
	touch $@

install: $(INSTALLED) ## Create .venv: torch 2.13.0 first (TORCH_INDEX=... picks a build), then shapeshift with dev tools, launchers and the tuning sweeper

# pytest-xdist: one test process per core, at most 4 (each holds torch and Lightning), a test file to a
# process (a module's shared run is trained once); tests/conftest.py shares torch's threads out among them.
# `PYTEST_WORKERS=-n0` runs the suite in one process.
PYTEST_WORKERS ?= -n auto --maxprocesses=4 --dist loadfile

test: $(INSTALLED) ## Run the fast test suite (no slow tests), one process per core
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

test-full: $(INSTALLED) ## Run every test, the slow ones too
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "slow or not slow"

lint: $(INSTALLED) ## ruff: lint and layout (rules in pyproject.toml); `ruff format .` fixes the layout
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

train: $(INSTALLED) ## Train the default experiment (pass overrides with ARGS="arch=gap aug=basic")
	$(BIN)/python -m shapeshift.train $(ARGS)

sweep: $(INSTALLED) ## The user's sweep: 4 architectures x 2 augmentations (add ARGS="debug=smoke" for a dry run)
	$(BIN)/python -m shapeshift.train -m arch=cnn,gap,resnet18,resnet18_aa aug=none,basic $(ARGS)

preview: $(INSTALLED) ## Draw the o.o.d. catalog into outputs/preview.png
	$(BIN)/python -m shapeshift.preview $(ARGS)

bench: $(INSTALLED) ## Benchmarks (render, input path, step, evaluation, FLOP floor) -> benchmarks/results.md
	$(BIN)/python -m benchmarks.bench $(ARGS)

gpu-check: $(INSTALLED) ## On a CUDA machine: the GPU check (benchmarks/gpu_check.sh), summary in outputs/gpu_check/
	PYTHON=$(BIN)/python bash benchmarks/gpu_check.sh

constraints: $(INSTALLED) ## Refresh constraints.txt from this environment (after changing dependencies; then run make test)
	{ sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^-e\|^shapeshift\|^torch=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean: ## Remove runs/ and sweeps/ from outputs/ (or SHAPESHIFT_LOG_DIR); keeps the render cache
	rm -rf "$${SHAPESHIFT_LOG_DIR:-outputs}/runs" "$${SHAPESHIFT_LOG_DIR:-outputs}/sweeps"
