"""experiments/create's artifact_location can't point outside the workspace's own storage.

With the real MlflowClient.create_experiment on both workspaces: Databricks takes only dbfs:/
locations (kept inside its DBFS), Azure ML only its own mlflow-artifacts:/ store.
"""

from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


@pytest.fixture
def outside(tmp_path):
    """A directory outside the state dir that must stay untouched."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not for the emulator")
    return folder


@pytest.fixture
def databricks_client(databricks_ws):
    return MlflowClient("databricks")


@pytest.fixture
def azureml_client(emulator, monkeypatch):
    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    return MlflowClient(aml.tracking_uri)


def _escapes(outside: Path) -> list[str]:
    return [outside.as_uri(), str(outside), f"file://{outside}/../..", "s3://bucket/x",
            "abfss://c@acct.dfs.core.windows.net/x", "http://127.0.0.1:1/x"]


def test_databricks_refuses_non_dbfs_locations(databricks_client, databricks_ws, outside):
    for i, location in enumerate(_escapes(outside) + ["dbfs:/../../etc", "dbfs:/a/%2e%2e/%2e%2e/b",
                                                       "dbfs://host/x", "dbfs:/a//b"]):
        name = f"/Users/{databricks_ws.user}/loc-refused-{i}"
        with pytest.raises(MlflowException) as err:
            databricks_client.create_experiment(name, artifact_location=location)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE", location
        assert "artifact_location" in err.value.message
        assert databricks_client.get_experiment_by_name(name) is None
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]


def test_azureml_refuses_locations_outside_its_store(azureml_client, outside):
    for i, location in enumerate(_escapes(outside) + ["mlflow-artifacts://other-host:5000/x",
                                                       "mlflow-artifacts:/a/../../b", "dbfs:/x"]):
        name = f"/Users/someone@example.com/loc-refused-{i}"
        with pytest.raises(MlflowException) as err:
            azureml_client.create_experiment(name, artifact_location=location)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE", location
        assert azureml_client.get_experiment_by_name(name) is None
    assert [p.name for p in outside.iterdir()] == ["secret.txt"]


def test_azureml_own_store_still_works(azureml_client, emulator, tmp_path):
    default = azureml_client.create_experiment("/Users/someone@example.com/loc-default")
    assert azureml_client.get_experiment(default).artifact_location.startswith("mlflow-artifacts:/")
    exp = azureml_client.create_experiment("/Users/someone@example.com/loc-own",
                                           artifact_location="mlflow-artifacts:/team/place")
    run = azureml_client.create_run(exp)
    (tmp_path / "f.txt").write_text("inside")
    azureml_client.log_artifact(run.info.run_id, str(tmp_path / "f.txt"))
    stored = Path(emulator.state.root) / "azureml" / "artifacts" / "team" / "place"
    assert [p.name for p in stored.rglob("f.txt")] == ["f.txt"]


def test_databricks_user_dbfs_location_stays_in_the_workspace_dbfs(databricks_client, databricks_ws, emulator,
                                                                   tmp_path):
    exp = databricks_client.create_experiment(f"/Users/{databricks_ws.user}/loc-dbfs",
                                              artifact_location="dbfs:/team/place")
    run = databricks_client.create_run(exp)
    assert run.info.artifact_uri.startswith("dbfs:/team/place/")
    (tmp_path / "f.txt").write_text("inside")
    databricks_client.log_artifact(run.info.run_id, str(tmp_path / "f.txt"), "d")
    assert [f.path for f in databricks_client.list_artifacts(run.info.run_id, "d")] == ["d/f.txt"]
    stored = Path(emulator.state.root) / "databricks" / "dbfs" / "team" / "place"
    assert [p.read_text() for p in stored.rglob("f.txt")] == ["inside"]
    # The server-side routes (the UI's) read the same files from the workspace's DBFS, not through
    # MLflow's DBFS client (which would look for real Databricks credentials).
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    got = requests.get(f"{databricks_ws.url}/get-artifact", headers=headers, timeout=30,
                       params={"run_uuid": run.info.run_id, "path": "d/f.txt"})
    assert (got.status_code, got.text) == (200, "inside")
    listed = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/artifacts/list", headers=headers, timeout=30,
                          params={"run_id": run.info.run_id, "path": "d"})
    assert listed.status_code == 200 and [f["path"] for f in listed.json()["files"]] == ["d/f.txt"]

