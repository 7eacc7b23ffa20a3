# The two commands of the README. Everything runs from the project's own virtualenv in .venv.
VENV ?= .venv
BIN := $(VENV)/bin
export TAGGER_HOME ?= $(CURDIR)/.tagger
export HF_HUB_OFFLINE := 1
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
# The install skips byte-compiling (see below), so Python must be free to write .pyc files on first
# import: with PYTHONDONTWRITEBYTECODE inherited, every process (driver, Python workers, training
# workers) compiled torch and transformers from source again, 14 s an import instead of 6.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install install-test run test test-fast bench clean metastore-up metastore-down cluster-up cluster-down system-deps

# One pip call: setup.py pins torch==2.13.0, which resolves to the CPU wheel on disk (anything else would
# pull gigabytes of CUDA packages). --no-compile skips byte-compiling every installed module up front
# (torch, pyspark, transformers: 30-40 s); Python compiles the modules the job imports on first use (about
# 10 s, once).
# `make run` installs only what the job needs; `make test` adds the test extras (mlflow, gensim, faiss, ...).
$(BIN)/.installed: setup.py
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --no-compile --disable-pip-version-check -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install -q --no-compile --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed
install-test: $(BIN)/.installed-test

## Seed demo data, train the demo models, tag the demo date and print the run summary.
run: install
	$(BIN)/tagger demo

## Debian packages the shared-metastore tests run (a private PostgreSQL and its JDBC driver): installed
## when missing (root), else the command to run is printed.
PG_READY := $(and $(wildcard /usr/lib/postgresql/15/bin/initdb),$(wildcard /usr/share/java/postgresql.jar))
system-deps:
ifeq ($(PG_READY),)
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql libpostgresql-jdbc-java; \
	else echo "run as root: apt-get install -y postgresql libpostgresql-jdbc-java" >&2; exit 1; fi
endif

## The whole test suite, slow end-to-end group included (what CI runs).
test: install-test system-deps
	$(BIN)/pytest -q

## The quick group only (no spark-submit subprocesses, no full-size training).
test-fast: install-test
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

## A Hive metastore in a private PostgreSQL ($(TAGGER_HOME)/metastore-pg, port 5439) for catalog: database
## (docs/cluster.md); needs Debian's postgresql and libpostgresql-jdbc-java. The data stays after -down.
metastore-up: install system-deps
	$(BIN)/python scripts/metastore.py up

metastore-down:
	$(BIN)/python scripts/metastore.py down

## A Spark standalone master (spark://127.0.0.1:7077) and two one-core workers from the pip pyspark.
cluster-up: install
	$(BIN)/python scripts/standalone_cluster.py up

cluster-down:
	$(BIN)/python scripts/standalone_cluster.py down
