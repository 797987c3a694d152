"""`harness replay`: a journal recorded while a registration bug happened reproduces it on a fresh workspace."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient

from harness import faults, replay
from harness.cli import main as harness_cli
from harness.fault_scenarios import run_scenario


def _reset(ws) -> None:
    # A workspace no MLflow call has touched yet has no tables, and its reset answers 500 (reset.py):
    # one call first creates them.
    _client(ws).search_experiments(max_results=1)
    answer = requests.post(f"{ws.url}/__emulator/reset", json={}, headers={"Authorization": f"Bearer {ws.token}"},
                           timeout=300)
    assert answer.status_code == 200, answer.text


def _client(ws) -> MlflowClient:
    uri = getattr(ws, "tracking_uri", "databricks")
    return MlflowClient(uri, uri)


@pytest.fixture
def recorded(emulator, request, monkeypatch, tmp_path):
    """The journal of one run of the duplicate-version scenario, saved to a file; then the workspace is reset."""
    ws = getattr(emulator, request.param)
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    _reset(ws)
    faults.clear_journal(ws)  # only this test's calls
    ws.journal(True)
    outcome = run_scenario("duplicate_version_after_lost_response", ws)
    assert outcome.reproduced
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"requests": ws.requests()}))
    ws.journal(False)
    _reset(ws)
    yield ws, outcome.observed["model"], path
    ws.clear_faults()


@pytest.mark.parametrize("recorded", ["databricks", "azureml"], indirect=True)
def test_replay_reproduces_the_duplicate_version(recorded):
    ws, model, path = recorded
    entries = replay.load(path)
    assert replay.role_of_journal(entries) == ("azureml" if hasattr(ws, "tracking_uri") else "databricks")
    report = replay.replay(entries, ws)
    print(report.summary())
    assert report.differing == [], report.summary()
    creates = [s for s in report.steps if s.path.endswith("/model-versions/create")]
    assert [s.replayed for s in creates] == [503, 200] and creates[0].fault
    assert any("not an MLflow" in why or "body" in why for _, _, why in report.skipped) or not report.skipped
    versions = _client(ws).search_model_versions(f"name = '{model}'")
    assert sorted(v.version for v in versions) == ["1", "2"]  # the bug, again, on a fresh workspace


@pytest.mark.parametrize("recorded", ["azureml"], indirect=True)
def test_replay_without_the_faults_reports_the_difference(recorded):
    ws, model, path = recorded
    report = replay.replay(replay.load(path), ws, with_faults=False)
    create = next(s for s in report.differing if s.path.endswith("/model-versions/create"))
    assert create.differences[0] == "status: recorded 503, replayed 200"
    # The client's retry is in the journal too: replayed as recorded, it still makes version 2.
    assert sorted(v.version for v in _client(ws).search_model_versions(f"name = '{model}'")) == ["1", "2"]


@pytest.mark.parametrize("recorded", ["azureml"], indirect=True)
def test_harness_replay_cli(recorded, emulator):
    ws, model, path = recorded
    result = CliRunner().invoke(harness_cli, ["replay", str(path), "--state-dir", str(emulator.state.root)])
    assert result.exit_code == 0, result.output
    assert "same outcome" in result.output
    assert sorted(v.version for v in _client(ws).search_model_versions(f"name = '{model}'")) == ["1", "2"]


@pytest.mark.parametrize("recorded", ["azureml"], indirect=True)
def test_harness_replay_cli_refuses_to_empty_a_workspace_holding_data(recorded, emulator):
    ws, _, path = recorded
    mine = _client(ws).create_experiment("not-the-replays")
    args = ["replay", str(path), "--state-dir", str(emulator.state.root)]
    refused = CliRunner().invoke(harness_cli, args)
    assert refused.exit_code == 2 and "--reuse-destructive" in refused.output, refused.output
    assert _client(ws).get_experiment(mine).lifecycle_stage == "active"  # nothing was reset
    result = CliRunner().invoke(harness_cli, [*args, "--reuse-destructive"])
    assert result.exit_code == 0 and "same outcome" in result.output, result.output
    assert "not-the-replays" not in [e.name for e in _client(ws).search_experiments()]


def test_harness_scenario_cli(emulator):
    runner = CliRunner()
    listed = runner.invoke(harness_cli, ["scenario", "list"])
    assert "pending_version_times_out  [databricks]" in listed.output
    ran = runner.invoke(harness_cli, ["scenario", "run", "empty_model_after_failed_first_version", "--role", "azureml",
                                      "--state-dir", str(emulator.state.root), "--json"])
    assert ran.exit_code == 0, ran.output
    outcome = json.loads(ran.stdout)[0]
    assert outcome["reproduced"] and outcome["observed"]["versions"] == []
    unknown = runner.invoke(harness_cli, ["scenario", "run", "nope", "--state-dir", str(emulator.state.root)])
    assert unknown.exit_code == 2 and "harness scenario list" in unknown.output


def test_replay_refuses_paths_that_normalise_elsewhere(emulator, tmp_path):
    """A journal can't steer replay to the admin routes: dot segments, escapes and backslashes are refused."""
    ws = emulator.databricks
    plant = json.dumps({"method": "*", "path": "*", "status": 500})
    paths = ["/api/2.0/mlflow/../../../__emulator/faults",
             "/api/2.0/mlflow/%2e%2e/%2e%2e/%2e%2e/__emulator/faults",
             "/api/2.0/mlflow/.%2F..%2F..%2F../__emulator/faults",
             "/api/2.0/mlflow/..\\..\\..\\__emulator/faults",
             "/api/2.0/mlflow//../../__emulator/faults"]
    entries = [{"seq": i, "method": "POST", "path": p, "query": "", "status": 200,
                "request": {"body": plant}, "response": {"body": "{}"}} for i, p in enumerate(paths, 1)]
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"requests": entries}))
    try:
        report = replay.replay(replay.load(path), ws)
        assert report.steps == [] and [seq for seq, _, _ in report.skipped] == [1, 2, 3, 4, 5], report.skipped
        assert faults.list_faults(ws) == []  # the admin call was never sent
    finally:
        ws.clear_faults()


@pytest.mark.parametrize("role", ["databricks", "azureml"])
def test_faithful_replay_of_a_plain_train_and_register_run_is_the_same(emulator, role, monkeypatch, tmp_path):
    """log_model(registered_model_name=...) recorded, then replayed on a reset workspace: no difference."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    ws = getattr(emulator, role)
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    _reset(ws)
    faults.clear_journal(ws)  # only this test's calls
    ws.journal(True)
    uri = getattr(ws, "tracking_uri", "databricks")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("/Shared/replay-plain")
    with mlflow.start_run():
        mlflow.log_param("alpha", 1)
        mlflow.log_metric("loss", 0.5)
        mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="model",
                                 registered_model_name="replay-plain")
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"requests": ws.requests()}))
    ws.journal(False)
    result = CliRunner().invoke(harness_cli, ["replay", str(path), "--state-dir", str(emulator.state.root),
                                              "--reuse-destructive"])
    assert result.exit_code == 0, result.output
    assert "same outcome" in result.output
    version = _client(ws).get_model_version("replay-plain", "1")
    assert version.status == "READY"


def test_replay_compares_registration_status_aliases_and_stages(emulator, monkeypatch):
    """A version that ends otherwise on replay (status, status_message, aliases, stage) is a difference."""
    from mlflow.exceptions import MlflowException

    ws = emulator.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    _reset(ws)
    client = _client(ws)
    faults.clear_journal(ws)  # only this test's calls
    ws.journal(True)
    run = client.create_run(client.create_experiment("/Shared/replay-states"))
    client.log_text(run.info.run_id, "a model's files", "model/MLmodel")
    client.create_registered_model("states")
    with (faults.inject_fault(ws, "POST", "*/model-versions/create", fail_registration="Source files could not be copied."),
          pytest.raises(MlflowException, match="FAILED_REGISTRATION")):
        client.create_model_version("states", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.create_model_version("states", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.transition_model_version_stage("states", "2", "Staging")
    client.get_model_version("states", "2")
    entries = ws.requests()
    ws.journal(False)
    # The recorded answers of a service that named an alias and another stage (the workspace
    # registry's client refuses aliases, so the replayed version has none).
    last = json.loads(entries[-1]["response"]["body"])
    last["model_version"].update(aliases=["challenger"], current_stage="Production")
    entries[-1]["response"]["body"] = json.dumps(last)
    _reset(ws)
    report = replay.replay(entries, ws, with_faults=False)
    found = [d for s in report.differing for d in s.differences]
    assert "model_version.status: recorded 'FAILED_REGISTRATION', replayed 'READY'" in found, report.summary()
    assert any(d.startswith("model_version.status_message: recorded 'Source files could not be copied.', replayed")
               for d in found), found
    assert "model_version.aliases: recorded ['challenger'], replayed None" in found, found
    assert "model_version.current_stage: recorded 'Production', replayed 'Staging'" in found, found
    # Replayed with its fault, the same journal (answers as recorded up to the edit) differs only there.
    _reset(ws)
    report = replay.replay(entries, ws)
    found = [d for s in report.differing for d in s.differences]
    assert sorted(found) == ["model_version.aliases: recorded ['challenger'], replayed None",
                             "model_version.current_stage: recorded 'Production', replayed 'Staging'"], found


def test_harness_replay_takes_ports_for_its_throwaway_workspaces(emulator, tmp_path, monkeypatch):
    import socket

    from emulator.control.launcher import free_port

    ws = emulator.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    faults.clear_journal(ws)  # only this test's calls
    ws.journal(True)
    _client(ws).create_experiment("/Shared/replay-ports")
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"requests": ws.requests()}))
    ws.journal(False)
    ports = {"databricks": free_port(), "azureml": free_port()}
    args = ["replay", str(path), "--port-databricks", str(ports["databricks"]), "--port-azureml", str(ports["azureml"])]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["azureml"]))
        busy.listen()
        refused = CliRunner().invoke(harness_cli, args)
    assert refused.exit_code == 2 and f"127.0.0.1:{ports['azureml']} (--port-azureml)" in refused.output, refused.output
    result = CliRunner().invoke(harness_cli, args)
    assert result.exit_code == 0 and "same outcome" in result.output, result.output
    assert (f"databricks http://127.0.0.1:{ports['databricks']}" in result.output
            and f":{ports['azureml']}" in result.output), result.output
    mixed = CliRunner().invoke(harness_cli, [*args, "--state-dir", str(emulator.state.root)])
    assert mixed.exit_code == 2 and "throwaway" in mixed.output, mixed.output


SCRIPT = """
from mlflow import MlflowClient

client = MlflowClient()  # tracking URI from the environment, as the user's script had it
client.create_registered_model("script-model")
client.create_model_version("script-model", "runs:/{run}/model", run_id="{run}")
"""


def test_harness_replay_reruns_the_client_script_and_compares_its_exception(emulator, tmp_path, monkeypatch):
    """The captured script, re-run (this client and MLflow 3.1) against the fresh workspace, ends with the
    recorded exception; a different recorded exception is a difference (exit 1)."""
    ws = emulator.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    run = "0" * 32
    script = tmp_path / "register.py"
    script.write_text(SCRIPT.replace("{run}", run))
    _reset(ws)
    faults.clear_journal(ws)
    ws.journal(True)
    _client(ws).create_experiment("recorded-before-the-bug")
    recorded = {"type": "RestException", "message": f"RESOURCE_DOES_NOT_EXIST: Run with id={run} not found"}
    path = tmp_path / "journal.json"
    path.write_text(json.dumps({"requests": ws.requests(), "client_exception": recorded}))
    ws.journal(False)
    args = ["replay", str(path), "--state-dir", str(emulator.state.root), "--reuse-destructive", "--script", str(script)]
    same = CliRunner().invoke(harness_cli, args)
    assert same.exit_code == 0 and "same exception" in same.output, same.output
    old_client = CliRunner().invoke(harness_cli, [*args, "--mlflow", "3.1.4", "--json"])
    assert old_client.exit_code == 0, old_client.output
    assert json.loads(old_client.stdout)["script"]["got"] == recorded
    other = CliRunner().invoke(harness_cli, [*args, "--expect-exception", "RestException: PERMISSION_DENIED: no"])
    assert other.exit_code == 1 and "DIFFERENT exception" in other.output, other.output
    assert f"replayed: RestException: RESOURCE_DOES_NOT_EXIST: Run with id={run} not found" in other.output
    unknown = CliRunner().invoke(harness_cli, [*args, "--mlflow", "0.1"])
    assert unknown.exit_code == 2 and "no client venv for MLflow 0.1" in unknown.output, unknown.output
