"""The shipped registration-bug reproductions, each on every workspace that has the behaviour."""

from __future__ import annotations

import pytest

from harness.fault_scenarios import SCENARIOS, run_scenario

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

CASES = [(name, role) for name, s in SCENARIOS.items() for role in s.roles]


@pytest.mark.parametrize("name, role", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_scenario_reproduces(emulator, name, role):
    ws = getattr(emulator, role)
    outcome = run_scenario(name, ws)
    print(outcome.summary())
    assert outcome.reproduced, outcome.summary()
    assert ws.faults() == []  # the scenario leaves no rule behind


def test_duplicate_is_what_the_registry_check_reports(emulator, monkeypatch):
    """The bug the scenario shows is the one `harness check`'s registry check names."""
    from mlflow import MlflowClient

    from harness.checks.registry import verify_registry_versions

    ws = emulator.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    outcome = run_scenario("duplicate_version_after_lost_response", ws)
    client = MlflowClient(ws.tracking_uri, ws.tracking_uri)
    result = verify_registry_versions(client, outcome.observed["model"], expected_count=1)
    assert not result.passed
    assert any("duplicate of version 1" in d.message for d in result.differences), result.summary()


def test_pending_scenario_is_refused_on_azureml(emulator):
    with pytest.raises(ValueError, match="needs a databricks workspace"):
        run_scenario("pending_version_times_out", emulator.azureml)


BUILT_IN = ["missing_source_fails_registration", "unknown_run_is_not_found", "file_source_is_refused",
            "unity_catalog_name_in_workspace_registry", "unity_catalog_unknown_model_id",
            "unity_catalog_pending_after_register", "unity_catalog_failed_at_finalize",
            "params_past_azureml_limit", "logged_model_metric_quota"]


def test_each_built_in_refusal_has_a_scenario_naming_its_rule_and_symptom():
    from click.testing import CliRunner

    from harness.cli import main as harness_cli

    listed = CliRunner().invoke(harness_cli, ["scenario", "list"])
    assert listed.exit_code == 0, listed.output
    for name in BUILT_IN:
        lines = listed.output.split(f"\n{name}  [", 1)[1].splitlines()[1:]
        block = lines[:next((i for i, line in enumerate(lines) if not line.startswith("    ")), len(lines))]
        assert [line.split(":", 1)[0].strip() for line in block] == ["rule", "symptom", "bug", "expected"], block
    assert "Failed registration. The given source path does not exist." in listed.output
    assert "Run with id=<uuid> not found" in listed.output and "mlflow/mlflow#18194" in listed.output
    assert "databricks/mlops-stacks#135" in listed.output
    assert "Provided model source: dummy-source" in listed.output and "mlflow/mlflow#15329" in listed.output
    assert "Azure/azure-sdk-for-python#35685" in listed.output and "FieldName=Parameters, Limit=200" in listed.output
    assert "mlflow/mlflow#20715" in listed.output and "per logged model: 1000" in listed.output
    assert all(SCENARIOS[n].rule and SCENARIOS[n].symptom for n in SCENARIOS)
