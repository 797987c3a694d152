"""MLflow's own registry integration tests (``tests/tracking/test_model_registry.py`` of the mlflow
repository) against a stock MLflow server and against the emulated Azure ML workspace: every test
that passes on the stock server passes on the workspace, except the documented Azure ML
differences (docs/pages/fidelity.md, "MLflow's registry tests on Azure ML").

Not in the default run (several minutes): ``make mlflow-registry-suite`` fetches the file at the
installed MLflow's tag and runs this with ``MLFLOW_REGISTRY_SUITE_FILE`` pointing at it; without the
variable the test is skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.workspaces import Emulator

pytestmark = pytest.mark.mlflow_suite

SUITE_FILE_ENV = "MLFLOW_REGISTRY_SUITE_FILE"
ROOT = Path(__file__).resolve().parent.parent

# Test functions that pass on a stock server and not on Azure ML, and why (fidelity doc rows).
# Each registers "runs:/run_id/model" with run_id="run_id", a run no workspace holds: a stock
# server stores the version (the source names the same run id), Azure ML answers 404
# "Run with id=run_id not found" (fidelity: Azure ML workspace, unknown runs). The file's other
# model-version tests pass run_id="run_id_1" for "runs:/run_id/...", which MLflow 3.17.2's own
# server already refuses (400 "Invalid model version source"), so they fail on both.
UNKNOWN_RUN = "unknown run: 404 Run with id=run_id not found"
KNOWN_DIFFERENCES = {
    "test_search_model_versions_filter_string": UNKNOWN_RUN,
    "test_search_model_versions_max_results": UNKNOWN_RUN,
    "test_search_model_versions_order_by": UNKNOWN_RUN,
    "test_latest_models": UNKNOWN_RUN,
}


def _outcomes(junit: Path) -> dict[str, str]:
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        found[case.get("name")] = outcome
    return found


def _run(suite: Path, junit: Path, env: dict) -> dict[str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-p", "tests.support.mlflow_registry_suite",
         "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", str(suite.parent), "-q",
         f"--junit-xml={junit}"],
        cwd=suite.parent, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=3600)
    assert junit.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    return _outcomes(junit)


@pytest.fixture(scope="module")
def suite_file() -> Path:
    value = os.environ.get(SUITE_FILE_ENV)
    if not value:
        pytest.skip(f"set {SUITE_FILE_ENV} to MLflow's tests/tracking/test_model_registry.py "
                    "(make mlflow-registry-suite does)")
    return Path(value).resolve()


def test_mlflow_registry_suite_on_azureml_matches_stock(suite_file, tmp_path_factory):
    work = tmp_path_factory.mktemp("mlflow-suite")
    # A fresh suite directory per target: pytest imports the file by its basename.
    suite = work / "test_model_registry.py"
    suite.write_text(suite_file.read_text())
    stock = _run(suite, work / "stock.xml", {})
    emu = Emulator(tmp_path_factory.mktemp("mlflow-suite-aml")).up()  # its own: the suite empties the registry
    try:
        aml = emu.azureml
        on_aml = _run(suite, work / "azureml.xml", {"EMULATOR_SUITE_TRACKING_URI": aml.tracking_uri,
                                                    "MLFLOW_TRACKING_TOKEN": aml.token})
    finally:
        emu.down()
    assert stock and set(on_aml) == set(stock)
    differ = sorted({name for name, outcome in stock.items() if outcome == "passed" and on_aml[name] != "passed"})
    functions = {name.split("[", 1)[0] for name in differ}
    print(f"stock: {sum(o == 'passed' for o in stock.values())}/{len(stock)} passed; "
          f"Azure ML: {sum(o == 'passed' for o in on_aml.values())}/{len(on_aml)} passed")
    assert functions - KNOWN_DIFFERENCES.keys() == set(), f"undocumented differences: {differ}"
    present = {name.split("[", 1)[0] for name in stock}
    assert (KNOWN_DIFFERENCES.keys() & present) - functions == set(), "documented differences that no longer differ"
