"""`harness check` end to end against its own emulator: fails naming the difference while unlinked,
passes (Spark included) once linked; and the report formats."""

import json
import os
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from harness import links, report
from harness.checks.result import CheckResult
from harness.cli import main
from harness.workspaces import Emulator


@pytest.fixture(scope="module")
def own_emulator(tmp_path_factory):
    """A separate emulator, so linking it does not mirror other tests' runs."""
    emu = Emulator(tmp_path_factory.mktemp("harness-cli-state")).up()
    yield emu
    emu.down()


@pytest.fixture
def restore_environ():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_check(emu, tmp_path, *args):
    out_json, out_xml = tmp_path / "report.json", tmp_path / "report.xml"
    result = CliRunner().invoke(main, ["check", "--state-dir", str(emu.state.root), "--json", str(out_json),
                                       "--junit-xml", str(out_xml), *args])
    return result, json.loads(out_json.read_text()), ET.parse(out_xml).getroot()


def test_unlinked_fails_naming_the_difference_then_linked_passes(own_emulator, spark, tmp_path, restore_environ):
    result, data, xml = run_check(own_emulator, tmp_path, "--no-spark")
    assert result.exit_code == 1, result.output
    dual = next(c for c in data["checks"] if c["name"] == "dual_logging")
    assert not data["passed"] and not dual["passed"]
    expected = "experiment '/Users/someone@example.com/harness/seed-experiment' is missing in azureml"
    assert expected in dual["differences"][0]["text"]
    assert expected in result.output  # the printed report names it too
    failure = xml.find(".//testcase[@name='dual_logging']/failure")
    assert failure is not None and expected in failure.get("message")
    # Every other check passed: only the mirroring is broken.
    assert [c["name"] for c in data["checks"] if not c["passed"]] == ["dual_logging"]

    links.link(own_emulator.databricks, own_emulator.azureml)
    try:
        # Spark from the session fixture: the CLI's getOrCreate() reuses it.
        result, data, xml = run_check(own_emulator, tmp_path, "--rows", "300")
    finally:
        links.unlink(own_emulator.databricks)
    assert result.exit_code == 0, result.output
    assert data["passed"] and data["linked"]
    names = [c["name"] for c in data["checks"]]
    assert names[:2] == ["seed_scenario", "dual_logging"] and "udf_scoring" in names
    # Both flavours: the Spark ML steps follow (harness.spark_ml_steps), every one passed.
    assert {"seed_scenario[spark ML]", "dual_logging[spark ML]", "registry_versions[spark ML model]",
            "udf_scoring[spark ML, no signature, seed's line]"} <= set(names)
    udf = next(c for c in data["checks"] if c["name"] == "udf_scoring")
    assert udf["compared"]["rows"] == 300 and udf["details"]["mismatches"] == 0
    assert xml.find("testsuite").get("failures") == "0"
    assert "checks passed" in result.output


def test_exit_2_when_the_emulator_is_not_running(own_emulator, tmp_path, monkeypatch):
    # Another state dir's servers on the ports this one would use (as after `make run` on
    # 5001/5002) are not "running here": no adopting them, and nothing is created.
    from emulator.control import launcher

    for role in ("databricks", "azureml"):
        monkeypatch.setenv(f"EMULATOR_{role.upper()}_PORT", str(launcher.running(own_emulator.state, role).port))
    state = tmp_path / "nothing"
    result = CliRunner().invoke(main, ["check", "--state-dir", str(state), "--no-spark"])
    assert result.exit_code == 2, result.output
    assert "not running here" in result.output and str(state) in result.output and "emulator up" in result.output
    assert not state.exists()


def test_reports_render_differences_errors_and_passes():
    good = CheckResult("a", compared={"rows": 3}, timings={"total": 1.0})
    bad = CheckResult("b", subject="run x")
    bad.differ("metric epoch_loss step 3", "missing in azureml")
    broken = CheckResult("c", error="ConnectionError: refused")
    text = report.table([good, bad, broken])
    assert "b: FAILED — run x\n  - metric epoch_loss step 3: missing in azureml" in text
    assert "1/3 checks passed" in text
    root = ET.fromstring(report.junit_xml([good, bad, broken]).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    assert root.find(".//testcase[@name='b']/failure").get("message") == "metric epoch_loss step 3: missing in azureml"
    assert root.find(".//testcase[@name='c']/error") is not None
    data = report.to_json([good, bad])
    assert data["passed"] is False and data["checks"][1]["differences"][0]["location"] == "metric epoch_loss step 3"


def test_registry_databricks_uc_variant_passes_with_alias_scoring(own_emulator, spark, tmp_path, restore_environ):
    """`harness check --registry databricks-uc`: the seed registers main.default.seed_model in Unity Catalog
    (files in the emulator's S3), the increments checks run there, and the UDF check scores models:/...@champion."""
    links.link(own_emulator.databricks, own_emulator.azureml)
    try:
        result, data, _ = run_check(own_emulator, tmp_path, "--registry", "databricks-uc", "--rows", "200",
                                    "--registrations", "2", "--concurrency", "2")
    finally:
        links.unlink(own_emulator.databricks)
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["seed_scenario"]["details"]["model"] == "main.default.seed_model v1"
    assert "registry_increments[databricks-uc, sequential]" in checks
    assert checks["registry_increments[databricks-uc, 2 at once]"]["details"]["versions"] == [1, 2]
    assert checks["udf_scoring"]["subject"].startswith("spark_udf(models:/main.default.seed_model@champion)")
    assert checks["udf_scoring"]["details"]["mismatches"] == 0
    # The registry is not dual: nothing of Unity Catalog reached the linked Azure ML workspace.
    from mlflow import MlflowClient

    aml = own_emulator.azureml
    os.environ["MLFLOW_TRACKING_TOKEN"] = aml.token
    aml_models = [m.name for m in MlflowClient(aml.tracking_uri, aml.tracking_uri).search_registered_models()]
    assert aml_models and not [n for n in aml_models if n.startswith("main.default.")]
