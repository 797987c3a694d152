"""Reset in place: a workspace emptied between tests without restarting its process."""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression


def reset(ws) -> dict:
    answer = requests.post(f"{ws.url}/__emulator/reset", json={},
                           headers={"Authorization": f"Bearer {ws.token}"}, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()


def fill(client: MlflowClient, experiment: str, runs: int = 100, versions: int = 10) -> str:
    exp_id = client.create_experiment(experiment)
    run_ids = []
    for i in range(runs):
        run = client.create_run(exp_id)
        client.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric("m", i, 0, 0)],
                         params=[mlflow.entities.Param("p", str(i))])
        run_ids.append(run.info.run_id)
    client.log_text(run_ids[0], "hello", "notes/a.txt")
    client.create_registered_model("reset_model")
    for _ in range(versions):
        client.create_model_version("reset_model", f"runs:/{run_ids[0]}/notes", run_id=run_ids[0])
    return exp_id


def assert_empty(client: MlflowClient) -> None:
    experiments = client.search_experiments()
    assert [e.name for e in experiments] == ["Default"], experiments
    assert client.search_runs([e.experiment_id for e in experiments]) == []
    assert client.search_registered_models() == []
    assert client.search_model_versions() == []


def test_databricks_reset_empties_store_files_and_folders(databricks_ws, sdk):
    client = MlflowClient("databricks", "databricks")
    sdk.workspace.mkdirs(f"/Users/{databricks_ws.user}/reset-folder")
    fill(client, f"/Users/{databricks_ws.user}/reset-folder/exp")
    took = reset(databricks_ws)["seconds"]
    assert_empty(client)
    names = [o.path for o in sdk.workspace.list(f"/Users/{databricks_ws.user}")]
    assert names == [], names
    print(f"databricks reset of 100 runs + 10 versions: {took:.3f} s (server-side)")
    # Fresh means usable as new: the folder rule applies again, and numbering starts over.
    exp_id = client.create_experiment(f"/Users/{databricks_ws.user}/again")
    assert exp_id == "1"
    assert client.get_experiment(exp_id).artifact_location == "dbfs:/databricks/mlflow-tracking/1"
    with mlflow.start_run(experiment_id=exp_id):
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), name="model",
                                        registered_model_name="reset_model")
    assert str(info.registered_model_version) == "1"
    assert mlflow.pyfunc.load_model("models:/reset_model/1").predict([[2.0]])[0] == pytest.approx(2.0)


def test_azureml_reset_empties_store_and_artifacts(emulator, monkeypatch):
    ws = emulator.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(ws.tracking_uri, ws.tracking_uri)
    exp_id = fill(client, "reset-exp", runs=20, versions=3)
    artifacts = emulator.state.role_dir("azureml") / "artifacts"
    assert any(artifacts.rglob("a.txt"))
    reset(ws)
    assert_empty(client)
    assert not any(artifacts.rglob("*"))
    # The store numbers from 1 again, as a new one; Azure ML's GUIDs are new ones (test_azureml_identity.py)
    again = client.create_experiment("reset-exp")
    assert again != exp_id and client.get_experiment(again).name == "reset-exp"


def test_reset_needs_token_and_json(emulator):
    ws = emulator.databricks
    assert requests.post(f"{ws.url}/__emulator/reset", json={}, timeout=30).status_code == 401
    answer = requests.post(f"{ws.url}/__emulator/reset", data="{}", timeout=30,
                           headers={"Authorization": f"Bearer {ws.token}", "Content-Type": "text/plain"})
    assert answer.status_code == 415


def test_artifacts_of_runs_from_before_a_reset_are_refused(databricks_ws):
    # Experiment ids start over after a reset: a run id cached as existing must not stay writable.
    client = MlflowClient("databricks", "databricks")
    exp_id = client.create_experiment(f"/Users/{databricks_ws.user}/before-reset")
    run_id = client.create_run(exp_id).info.run_id
    url = (f"{databricks_ws.url}/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/{exp_id}/Runs/"
           f"{run_id}/artifacts/x.txt")
    auth = {"Authorization": f"Bearer {databricks_ws.token}"}
    assert requests.put(url, data=b"one", headers=auth, timeout=60).status_code == 204
    reset(databricks_ws)
    client.create_experiment(f"/Users/{databricks_ws.user}/after-reset")  # takes the same id again
    answer = requests.put(url, data=b"two", headers=auth, timeout=60)
    assert answer.status_code == 404, answer.text


def test_linked_pair_resets_together_and_mirrors_again(emulator):
    from harness import links

    db, aml = emulator.databricks, emulator.azureml
    links.link(db, aml)
    try:
        with _env(db.env):
            client = MlflowClient("databricks", "databricks")
            old = client.create_run(client.create_experiment(f"/Users/{db.user}/linked-reset")).info.run_id
            _wait(lambda: links.mirror_of(db, old))
            reset(db)
            reset(aml)
            assert links.mirror_of(db, old) is None  # the mapping went with the stores
            state = requests.get(f"{db.url}/__emulator/mirror", headers={"Authorization": f"Bearer {db.token}"},
                                 timeout=30).json()
            assert state["linked"] and state["backlog"] == 0 and state["failed"] == 0, state
            new = client.create_run(client.create_experiment(f"/Users/{db.user}/linked-reset")).info.run_id
            client.log_param(new, "p", "after-reset")
            mirrored = _wait(lambda: links.mirror_of(db, new))
        with _env(aml.env):
            aml_client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
            _wait(lambda: aml_client.get_run(mirrored["azureml_run_id"]).data.params.get("p") == "after-reset")
    finally:
        links.unlink(db)


def _wait(condition, timeout: float = 120.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # not there yet
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def _env(values: dict):
    import os
    from unittest import mock

    return mock.patch.dict(os.environ, values)
