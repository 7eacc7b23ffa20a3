# The two commands of the README. Everything runs from the project's own virtualenv in .venv.
VENV ?= .venv
BIN := $(VENV)/bin
export TAGGER_HOME ?= $(CURDIR)/.tagger
export HF_HUB_OFFLINE := 1
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python

.PHONY: install run test test-fast bench clean

# torch is installed first and pinned: 2.13.0 resolves to the CPU wheel on disk; anything else
# would pull gigabytes of CUDA packages.
$(BIN)/.installed: setup.py
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

## Seed demo data, train the demo models, tag the demo date and print the run summary.
run: install
	$(BIN)/tagger demo

## The whole test suite, slow end-to-end group included (what CI runs).
test: install
	$(BIN)/pytest -q

## The quick group only (no spark-submit subprocesses, no full-size training).
test-fast: install
	$(BIN)/pytest -q -m "not slow"

clean:
	rm -rf $(TAGGER_HOME) spark-warehouse metastore_db derby.log

## Cluster artifacts for spark-submit --master yarn|k8s://... (docs/orchestration.md):
## dist-code: the project as a zip for --py-files (+ wheel, + a spark-cluster.properties template);
## dist-env: its Python dependencies as a venv-pack archive for spark.archives (large: minutes).
DIST_DIR ?= $(CURDIR)/dist
TORCH_SPEC ?= torch==2.13.0
.PHONY: dist dist-code dist-env
dist: install dist-code dist-env

dist-code:
	$(BIN)/python scripts/build_dist.py code --out $(DIST_DIR)

dist-env:
	$(BIN)/python scripts/build_dist.py env --out $(DIST_DIR) --torch-spec "$(TORCH_SPEC)"
