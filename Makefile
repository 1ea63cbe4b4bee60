# vlkd: `make test` and `make reproduce` each set everything up on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV  := .venv
PY    := $(VENV)/bin/python
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
# 2 cores: one torch thread per notebook worker avoids oversubscription under nbdev_test
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: venv export check-export test nbtest pytest reproduce readme clean-nbs bench help

help:
	@echo "make test       export check + nbdev_test + pytest (sets up .venv)"
	@echo "make reproduce  run every experiment with its full config; writes figures/"
	@echo "make readme     regenerate README.md from nbs/index.ipynb"
	@echo "make bench      run benchmarks/*.py"

$(STAMP): requirements.txt constraints.txt settings.ini setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

export: $(STAMP)
	$(BIN)/nbdev_export

# the generated package must match the notebooks: exporting may not change a tracked file
check-export: export
	@if [ -n "$$(git status --porcelain -- vlkd)" ]; then \
	  echo "nbdev_export changed vlkd/: export and commit the notebooks' code"; git status --short -- vlkd; exit 1; fi

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing

pytest: $(STAMP)
	$(PY) -m pytest tests -q

test: check-export nbtest pytest

reproduce: $(STAMP)
	OMP_NUM_THREADS=2 $(BIN)/vlkd-reproduce

readme: $(STAMP)
	$(BIN)/jupyter nbconvert --to markdown --execute --no-input nbs/index.ipynb --output-dir . --output README
	@sed -i 's#](\.\./figures/#](figures/#g; s#src="\.\./figures/#src="figures/#g' README.md

clean-nbs: $(STAMP)
	$(BIN)/nbdev_clean

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; OMP_NUM_THREADS=2 $(PY) $$f --save; done
