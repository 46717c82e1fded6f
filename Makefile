# Two commands set everything up on a fresh machine (Python 3.10+, pip):
#   make study   -> creates .venv, runs the whole study (`dvc repro`) on the built-in dataset
#   make test    -> creates .venv, runs ruff and the test suite
# TORCH_SPEC pins the torch build installed into a new .venv; set it empty (make TORCH_SPEC=)
# to keep whatever torch pyproject's ranges resolve to (e.g. your CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
COCO_SUBSET ?= ../shared/data/coco-subset
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: study test smoke lint clean-runs

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(strip $(TORCH_SPEC)),$(BIN)/pip install -q $(TORCH_SPEC))
	$(BIN)/pip install -q -e '.[test]'
	touch $@

study: $(VENV)/.installed
	dvc repro

test: $(VENV)/.installed lint
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	ruff check study tests benchmarks
	ruff format --check study tests benchmarks

# Every stage on the real COCO subset (CI). Runs as a DVC experiment in the workspace: it
# sets profile and dataset in params.yaml (restore with `git checkout params.yaml`).
smoke: $(VENV)/.installed
	dvc exp run -S profile=smoke -S dataset=$(COCO_SUBSET)

clean-runs:
	rm -rf runs
