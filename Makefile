# One entry point for newcomers and CI. Everything installs into .venv (created on first use).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data/bible-es-en
DEMO_MINUTES ?= 10

.PHONY: install demo test lint bench data clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned exactly: anything else pulls gigabytes of CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

data: $(DATA)/train.parquet

$(DATA)/train.parquet:
	@echo "Bible corpus missing at $(DATA): rebuilding it from the SWORD modules (needs apt-get)."
	$(PY) examples/bible-es-en/prepare.py --install --out $(DATA)

## The main job end to end: prepare → tokenize → train ($(DEMO_MINUTES) CPU minutes) → evaluate.
demo: install data
	$(VENV)/bin/s2s train configs/bible-es-en.yaml --set name=bible-es-en-demo \
		--set train.max_minutes=$(DEMO_MINUTES) --set evaluate.n_bootstrap=200

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=10

lint: install
	$(PY) -m ruff check .

bench: install data
	$(PY) bench/train_bench.py --out bench/results/train-$$(date +%Y%m%d).json

clean:
	rm -rf $(VENV) store reports .pytest_cache .ruff_cache
