# One entry point for people and CI. Every target sets up what it needs first, so each
# works on a fresh machine: Python venv, workerd from the npm lockfile, and the
# Kubernetes binaries built from Go modules (cached in ~/.cache/edgeplane).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup k8s helm registry test test-unit lint crds demo demo-down bench clean corpus soak

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The wrangler projects `edgeplane import` is tested on (create-cloudflare's templates) and
# the packages they import, from the npm registry, pinned; their install scripts never run.
CORPUS := tests/corpus/current tests/corpus/c3-2.25
CORPUS_STAMPS := $(addsuffix /node_modules/.package-lock.json,$(CORPUS))
tests/corpus/%/node_modules/.package-lock.json: tests/corpus/%/package-lock.json
	cd tests/corpus/$* && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

corpus: $(CORPUS_STAMPS) $(STAMP) node_modules/.package-lock.json
	$(BIN)/python -m tests.corpus.run

k8s: ; @tools/build-k8s.sh >/dev/null

helm: ; @tools/build-helm.sh >/dev/null

# The OCI registry the tests push to and pull from (tools/build-registry.sh, cached too).
registry: ; @tools/build-registry.sh >/dev/null

setup: $(STAMP) node_modules/.package-lock.json $(CORPUS_STAMPS) k8s helm registry

lint: $(STAMP)
	$(BIN)/ruff check .

# The whole suite: lint, unit tests, then integration and end-to-end tests against the
# real apiserver, controller manager, edge agents and workerd.
test: setup lint
	$(BIN)/pytest -p no:cacheprovider tests

test-unit: $(STAMP)
	$(BIN)/pytest -p no:cacheprovider tests/unit

crds: $(STAMP)
	$(BIN)/edgeplane crds

demo: setup
	$(BIN)/edgeplane demo up

demo-down: $(STAMP)
	$(BIN)/edgeplane demo down

clean:
	rm -rf .state

# The chaos soak, long form (bench/soak.py; tests/e2e/test_soak.py runs 75 s of it).
soak: setup
	$(BIN)/python bench/soak.py --duration 600
