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

.PHONY: venv export check-export test nbtest pytest reproduce readme clean-nbs check-nbs docs lab browser-test bench help

help:
	@echo "make test       export check + nbdev_test + pytest (sets up .venv)"
	@echo "make reproduce  run every experiment with its full config; writes figures/"
	@echo "make readme     regenerate README.md from nbs/index.ipynb"
	@echo "make bench      run benchmarks/*.py"
	@echo "make lab        JupyterLab on this repository; saving a notebook keeps it in its committed form"
	@echo "make docs       static HTML site of the notebooks in _docs/ (open _docs/index.html); ONLY=\"00_losses index\" for some"
	@echo "make clean-nbs  put nbs/*.ipynb back in the committed form (no outputs); make check-nbs only checks"
	@echo "make browser-test  JupyterLab and the docs in chromium (tests/test_browser.py); NOTEBOOKS=\"000_utils 00_losses\" for some"

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

# the committed form: nbdev_clean's (settings.ini), no outputs, each cell's source one string (tools/nbclean.py)
clean-nbs: $(STAMP)
	$(PY) tools/nbclean.py

check-nbs: $(STAMP)
	$(PY) tools/nbclean.py --check

# JupyterLab with jupyter_server_config.py (notebooks saved in the committed form); inline plots, this checkout's vlkd.
# Extra flags: make lab LAB_ARGS="--no-browser --port 8899"
LAB_ARGS ?=
lab: $(STAMP)
	env -u MPLBACKEND JUPYTER_CONFIG_PATH="$(CURDIR)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# executes every notebook (2 at a time, each in a scratch copy of the working tree) and writes _docs/*.html
ONLY ?=
docs: $(STAMP)
	$(PY) tools/docs.py --out _docs --jobs 2 $(if $(ONLY),--only $(ONLY))

# the real-browser test alone (make test runs it too when chromium is installed)
NOTEBOOKS ?=
browser-test: $(STAMP)
	VLKD_BROWSER_NOTEBOOKS="$(NOTEBOOKS)" $(PY) -m pytest tests/test_browser.py -q -rs --tb=short

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; OMP_NUM_THREADS=2 $(PY) $$f --save; done
