"""Issue 30 in Docker mode: the refusals and lifecycle states the workspaces make on their own (no
fault rule) reproduce against the Compose deployment too, with the real MLflow client from the host,
and fault rules still work there and still override the rules.

The scenarios are the shipped ones (``harness scenario run NAME --json`` runs the same code on a
local emulator); here they run against the session's Compose deployment (``docker_workspaces``),
and each outcome is read as its JSON (``Outcome.to_json()``) says it.
"""

from __future__ import annotations

import uuid

import pytest

from harness import faults
from harness.fault_scenarios import (
    REGISTRY_CREATE,
    SCENARIOS,
    SOURCE_MISSING,
    run_scenario,
)

pytestmark = pytest.mark.docker

# The scenarios whose rule is the service's own, met with no fault rule (`harness scenario list`).
NO_FAULT = ["missing_source_fails_registration", "unknown_run_is_not_found", "file_source_is_refused",
            "params_past_azureml_limit", "logged_model_metric_quota", "unity_catalog_name_in_workspace_registry",
            "unity_catalog_unknown_model_id"]
# Service rules shown with a fault rule on top (Unity Catalog's PENDING_REGISTRATION -> READY and
# FAILED_REGISTRATION at finalize): they also show that fault rules work in Docker mode.
WITH_FAULT = ["unity_catalog_pending_after_register", "unity_catalog_failed_at_finalize"]


def cases(names):
    return [pytest.param(name, role, id=f"{name}-{role}") for name in names for role in SCENARIOS[name].roles]


def run_in_docker(docker_workspaces, name: str, role: str) -> dict:
    ws = getattr(docker_workspaces, role)
    outcome = run_scenario(name, ws).to_json()
    assert ws.faults() == []  # the scenario leaves no rule behind
    return outcome


def test_the_no_fault_list_is_every_scenario_without_a_fault_rule():
    """A new built-in refusal gets a scenario (tests/test_fault_scenarios.py); it must be listed here too."""
    assert sorted(NO_FAULT) == sorted(n for n, s in SCENARIOS.items() if "fault rule" not in s.rule)
    assert all("fault rule" in SCENARIOS[n].rule for n in WITH_FAULT)


@pytest.mark.parametrize("name, role", cases(NO_FAULT))
def test_service_rule_reproduces_in_docker(docker_workspaces, name, role):
    outcome = run_in_docker(docker_workspaces, name, role)
    assert outcome["reproduced"] is True, outcome
    assert (outcome["scenario"], outcome["workspace"]) == (name, role)
    assert outcome["observed"].get("client_error") or outcome["observed"].get("error_code"), outcome


@pytest.mark.parametrize("name, role", cases(WITH_FAULT))
def test_fault_rule_scenario_reproduces_in_docker(docker_workspaces, name, role):
    outcome = run_in_docker(docker_workspaces, name, role)
    assert outcome["reproduced"] is True, outcome


def client_for(ws, monkeypatch):
    from mlflow import MlflowClient

    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    uri = getattr(ws, "tracking_uri", "databricks")
    return MlflowClient(uri, uri)


def test_a_fault_answers_before_azureml_refuses_an_unknown_run(docker_workspaces, monkeypatch):
    """The rule (404 'Run with id=... not found') is what the workspace answers on its own; a fault
    rule on the same call answers first, and once it is spent the rule answers again."""
    from mlflow.exceptions import MlflowException

    ws = docker_workspaces.azureml
    client = client_for(ws, monkeypatch)
    name = f"fault-over-rule-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    unknown = uuid.uuid4().hex
    message = "Permission denied by an injected fault."
    with faults.inject_fault(ws, "POST", REGISTRY_CREATE, body={"name": name}, status=403, message=message,
                             times=1) as rule:
        with pytest.raises(MlflowException) as by_fault:
            client.create_model_version(name, f"runs:/{unknown}/model", run_id=unknown)
        assert rule.hits == 1
    assert by_fault.value.error_code == "PERMISSION_DENIED", by_fault.value
    assert message in by_fault.value.message and "not found" not in by_fault.value.message

    with pytest.raises(MlflowException) as by_rule:
        client.create_model_version(name, f"runs:/{unknown}/model", run_id=unknown)
    assert str(by_rule.value) == f"RESOURCE_DOES_NOT_EXIST: Run with id={unknown} not found"
    assert client.search_model_versions(f"name = '{name}'") == []


def test_a_fault_overrides_the_failed_registration_of_a_missing_source(docker_workspaces, monkeypatch):
    """A source with nothing at it ends FAILED_REGISTRATION with the service's message on its own; a
    fail_registration fault on that create sets its own message instead."""
    from mlflow.exceptions import MlflowException

    ws = docker_workspaces.databricks
    client = client_for(ws, monkeypatch)
    exp_id = client.create_experiment(f"/Shared/fault-over-rule-{uuid.uuid4().hex[:8]}")
    run = client.create_run(exp_id)
    client.set_terminated(run.info.run_id)
    name = f"fault-over-lifecycle-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    missing = f"{run.info.artifact_uri}/nothing-here"
    message = "Model files failed an injected check."
    with faults.inject_fault(ws, "POST", REGISTRY_CREATE, body={"name": name}, fail_registration=message,
                             times=1) as rule:
        with pytest.raises(MlflowException) as by_fault:
            client.create_model_version(name, missing, run_id=run.info.run_id)
        assert rule.hits == 1
    assert f"FAILED_REGISTRATION and message: {message}" in by_fault.value.message, by_fault.value
    with pytest.raises(MlflowException) as by_rule:
        client.create_model_version(name, missing, run_id=run.info.run_id)
    assert f"FAILED_REGISTRATION and message: {SOURCE_MISSING}" in by_rule.value.message, by_rule.value
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    assert [(v.version, v.status, v.status_message) for v in versions] == [
        ("1", "FAILED_REGISTRATION", message), ("2", "FAILED_REGISTRATION", SOURCE_MISSING)]


def test_unity_catalog_version_is_pending_until_finalized_in_docker(docker_workspaces):
    """Unity Catalog's own lifecycle, no fault rule: a version is PENDING_REGISTRATION from create
    until the client finalizes it (after uploading its files), then READY."""
    import requests

    ws = docker_workspaces.databricks
    uc = f"{ws.url}/api/2.0/mlflow/unity-catalog"
    headers = {"Authorization": f"Bearer {ws.token}"}
    name = f"main.default.pending_{uuid.uuid4().hex[:8]}"
    assert requests.post(f"{uc}/registered-models/create", json={"name": name}, headers=headers,
                         timeout=60).status_code == 200
    created = requests.post(f"{uc}/model-versions/create", json={"name": name, "source": "x"}, headers=headers,
                            timeout=60)
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    got = requests.get(f"{uc}/model-versions/get", params={"name": name, "version": "1"}, headers=headers, timeout=60)
    assert got.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    finalized = requests.post(f"{uc}/model-versions/finalize", json={"name": name, "version": "1"}, headers=headers,
                              timeout=60)
    assert finalized.status_code == 200 and finalized.json()["model_version"]["status"] == "READY"
