# The two README commands set themselves up on a fresh machine:
#   make demo   -> .venv with torch==2.13.0 (CPU wheel first, so nothing pulls a CUDA build), then `tether demo`
#   make test   -> same setup, then the default test suite (slow tests excluded)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: demo test test-all setup lint bench clean chaos

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# (the grep hides pip's harmless "extra index location ignored" warnings of this machine's pip config)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 -e ".[all,dev]" 2>&1 | { grep -v "is ignored: it is neither" || true; }
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tether demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check tether tests benchmarks

clean:
	rm -rf $(VENV) runs

chaos: $(STAMP)
	$(BIN)/python -m tether.testing.chaos --trials 20 --out runs/chaos-$$(date +%s)
