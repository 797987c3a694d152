# Two commands set up a fresh machine and go: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
STATE_DIR ?= .emulator

.PHONY: run test setup down bench clean

$(STAMP): pyproject.toml
	bash .ci/system-deps.sh python
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(STAMP)
	bash .ci/system-deps.sh java

## Start both emulated workspaces, run the seed scenario through the real MLflow client, report.
run: setup
	$(VENV)/bin/emulator up --state-dir $(STATE_DIR)
	$(VENV)/bin/emulator status --state-dir $(STATE_DIR)

## The whole test suite (starts real servers, Spark and Docker containers).
test: setup
	bash .ci/system-deps.sh docker
	$(PY) -m pytest

down:
	$(VENV)/bin/emulator down --state-dir $(STATE_DIR)

bench: setup
	$(PY) -m bench

clean: down
	rm -rf $(VENV) $(STATE_DIR)
