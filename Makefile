# Two commands set up a fresh machine and go: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
STATE_DIR ?= .emulator

# Each set-up step's duration (seconds), printed by the suite at its end (tests/conftest.py).
TIMES := .emulator-cache/setup-times.txt
# $(call timed,NAME,COMMAND): run COMMAND, note how long it took under NAME.
timed = s=$$(date +%s); $(2); rc=$$?; mkdir -p $(dir $(TIMES)); echo "$(1) $$(( $$(date +%s) - s ))" >> $(TIMES); exit $$rc

# The suite's workers (pytest-xdist): most tests wait on servers, Spark and Docker, so two share the
# two cores well; a module stays on one worker (tests/support/parallel.py). TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder)

.PHONY: run test setup images client-venvs azureml-clients down bench docs clean mlflow-registry-suite

$(STAMP): pyproject.toml
	$(call timed,python venv,bash .ci/system-deps.sh python && { test -x $(PY) || python3 -m venv $(VENV); } && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[test]')
	touch $@

setup: $(STAMP)
	$(call timed,java,bash .ci/system-deps.sh java)

## Start both emulated workspaces, run the seed scenario through the real MLflow client, report.
## `harness check` runs the seed notebook flow and every check, prints the report (exit 0 = all passed).
run: setup
	$(VENV)/bin/emulator up --state-dir $(STATE_DIR)
	$(VENV)/bin/emulator link --state-dir $(STATE_DIR) > /dev/null
	rc=0; $(VENV)/bin/harness check --state-dir $(STATE_DIR) \
		--json $(STATE_DIR)/harness-report.json --junit-xml $(STATE_DIR)/harness-report.xml || rc=$$?; \
	$(PY) -m bench.records make-run $(STATE_DIR)/harness-report.json || true; \
	echo; echo "Where to look (the two MLflow UIs; reports in $(STATE_DIR)/harness-report.*):"; \
	$(VENV)/bin/emulator status --state-dir $(STATE_DIR); \
	exit $$rc

## The real Azure client stack (azureml-mlflow needs mlflow 3.15) in its own cached venv,
## under ~/.cache/mlflow-azure-emulator/venvs/ (rebuilt only when its pins change).
client-venvs: setup
	$(call timed,client venvs,$(PY) -m harness.client_venvs)

## Only the Azure client venv (the MLflow version matrix's venvs are not built).
azureml-clients: setup
	$(PY) -m harness.client_venvs azureml-clients

## The whole test suite (starts real servers, Spark and Docker containers, a headless Chromium).
## The images and the client venvs build side by side (one is mostly the Docker engine's work,
## the other downloads).
test:
	@mkdir -p $(dir $(TIMES)); : > $(TIMES)
	$(MAKE) --no-print-directory -j2 images client-venvs
	$(call timed,browser,bash .ci/system-deps.sh browser)
	EMULATOR_SETUP_TIMES=$(TIMES) EMULATOR_REQUIRE_DOCKER=1 $(PY) -m pytest $(PARALLEL)

## MLflow's own registry tests (tests/tracking/test_model_registry.py at the installed MLflow's tag,
## fetched once into .emulator-cache/, or MLFLOW_REGISTRY_SUITE_FILE=<path>) against a stock server
## and the Azure ML workspace: only the documented Azure ML differences may differ (several minutes).
mlflow-registry-suite: setup
	v=$$($(PY) -c 'import mlflow; print(mlflow.__version__)'); f=$${MLFLOW_REGISTRY_SUITE_FILE:-.emulator-cache/mlflow-$$v/test_model_registry.py}; \
	test -s $$f || { mkdir -p $$(dirname $$f) && curl -fsSL -o $$f \
		https://raw.githubusercontent.com/mlflow/mlflow/v$$v/tests/tracking/test_model_registry.py; }; \
	MLFLOW_REGISTRY_SUITE_FILE=$$f $(PY) -m pytest -m mlflow_suite -s tests/test_mlflow_registry_suite.py

## The emulator's Docker image, built without a registry (idempotent: current steps are reused).
images: setup
	$(call timed,docker engine,bash .ci/system-deps.sh docker)
	$(call timed,images,$(VENV)/bin/emulator images build --offline --spark --postgres)

down:
	$(VENV)/bin/emulator down --state-dir $(STATE_DIR)

bench: setup
	$(PY) -m bench

## The documentation site at http://127.0.0.1:8000 (docs/mkdocs.yml), the [docs] extra installed if missing.
docs:
	bash .ci/system-deps.sh python
	test -x $(PY) || python3 -m venv $(VENV)
	test -x $(VENV)/bin/mkdocs || $(PY) -m pip install -q -e '.[docs]'
	$(VENV)/bin/mkdocs serve -f docs/mkdocs.yml

clean: down
	rm -rf $(VENV) $(STATE_DIR)
