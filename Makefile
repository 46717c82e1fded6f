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

# Every stage on the real COCO subset (CI): three fusion strategies at two seeds (enough for the
# seed statistics and the pairwise table; tests/models/test_fusions.py trains every strategy) and
# the whole Table 1 chain. Each run costs about 40 s here, so all five strategies would push CI
# past 20 minutes. Runs as a DVC experiment in the workspace: it sets these params in
# params.yaml (restore with `git checkout params.yaml`).
SMOKE_FUSIONS := [none,sum,asff]
SMOKE_TABLE1 := [yolov3-original,bof,ga,baseline,asff]
smoke: $(VENV)/.installed
	dvc exp run -S profile=smoke -S dataset=$(COCO_SUBSET) -S 'fusions=$(SMOKE_FUSIONS)' \
		-S 'seeds=[0,1]' -S 'table1=$(SMOKE_TABLE1)' -S 'table1_not_run=[]'

clean-runs:
	rm -rf runs
