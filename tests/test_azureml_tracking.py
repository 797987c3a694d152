"""The seed's "track only in Azure ML" flow with the real MLflow client:
discovery -> tracking URI -> logging -> registration -> loading."""

import re
import uuid

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from harness.azureml import Workspace

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)


@pytest.fixture
def ws(emulator, monkeypatch):
    aml = emulator.azureml
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("AZUREML_EMULATOR_URL", aml.url)
    monkeypatch.setenv("EMULATOR_AZUREML_TOKEN", aml.token)
    # The seed's code, unmodified apart from the import.
    workspace = Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                              resource_group=aml.resource_group)
    yield workspace
    mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_tracking_uri_is_the_scoped_http_form_of_arm_answer(ws, emulator):
    aml = emulator.azureml
    uri = ws.get_mlflow_tracking_uri()
    assert uri == aml.tracking_uri
    assert uri.startswith(f"{aml.url}/mlflow/v2.0/subscriptions/{aml.subscription_id}/")
    assert ws.get_details()["properties"]["mlFlowTrackingUri"] == "azureml" + uri[len("http"):]


def test_seed_flow_track_register_load(ws, tmp_path):
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    experiment = mlflow.set_experiment("/Users/someone@example.com/folder/seed-exp")
    assert experiment.name == "/Users/someone@example.com/folder/seed-exp"

    X = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 5.0], [4.0, 3.0]])
    y = X @ np.array([2.0, -1.0]) + 0.5
    model = LinearRegression().fit(X, y)

    with mlflow.start_run() as run:
        for epoch, loss in enumerate([0.9, 0.5, 0.2]):
            mlflow.log_metric("epoch_loss", loss, step=epoch)
        mlflow.log_param("alpha", "0.1")
        mlflow.set_tag("team", "aml")
        (tmp_path / "notes.txt").write_text("hello from the seed")
        mlflow.log_artifact(str(tmp_path / "notes.txt"), artifact_path="docs")
        v1 = mlflow.sklearn.log_model(model, artifact_path="model", registered_model_name="seed_model")
    run_id = run.info.run_id
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, artifact_path="model", registered_model_name="seed_model")

    client = MlflowClient()
    data = client.get_run(run_id).data
    assert data.params == {"alpha": "0.1"}
    assert data.tags["team"] == "aml"
    history = client.get_metric_history(run_id, "epoch_loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.2)]

    # Artifacts go through the proxied mlflow-artifacts:/ routes under the scoped prefix.
    assert client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:/")
    assert [f.path for f in client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="docs/notes.txt",
                                                dst_path=str(tmp_path / "dl"))
    assert open(local).read() == "hello from the seed"

    versions = sorted(int(v.version) for v in client.search_model_versions("name='seed_model'"))
    assert versions == [1, 2]
    assert str(v1.registered_model_version) == "1"
    expected = model.predict(X)
    for uri in ("models:/seed_model/1", "models:/seed_model/2", f"runs:/{run_id}/model"):
        loaded = mlflow.pyfunc.load_model(uri)
        np.testing.assert_allclose(loaded.predict(X), expected)


def test_plain_experiment_names_and_the_v1_prefix(ws, emulator):
    v1_uri = ws.get_mlflow_tracking_uri().replace("/mlflow/v2.0/", "/mlflow/v1.0/")
    mlflow.set_tracking_uri(v1_uri)  # the seed's MLflow 1.x era form
    exp = mlflow.set_experiment("plain-name")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_metric("m", 1.5)
    # Same workspace, same data at v2.0 and at the root (what the MLflow UI uses).
    for uri in (ws.get_mlflow_tracking_uri(), emulator.azureml.url):
        assert MlflowClient(uri).get_run(run.info.run_id).data.metrics == {"m": 1.5}
    ui = requests.get(f"{emulator.azureml.url}/?token={emulator.azureml.token}", timeout=60)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    # The UI also works under the scope prefix (run links printed by the client point there):
    # its asset and ajax paths are relative, so they stay inside the prefix.
    browser = requests.Session()
    scoped = browser.get(f"{ws.get_mlflow_tracking_uri()}/?token={emulator.azureml.token}", timeout=60)
    script = re.search(r'src="(static-files/[^"]+\.js)"', scoped.text).group(1)
    assert browser.get(f"{ws.get_mlflow_tracking_uri()}/{script}", timeout=30).status_code == 200
    ajax = browser.post(f"{ws.get_mlflow_tracking_uri()}/ajax-api/2.0/mlflow/experiments/search",
                        json={"max_results": 10}, timeout=60, headers={"Origin": emulator.azureml.url})
    assert "plain-name" in {e["name"] for e in ajax.json()["experiments"]}


def test_async_batch_logging_endpoints(ws):
    uri = ws.get_mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.set_experiment("async-batch")
    run = MlflowClient().create_run(exp.experiment_id)
    headers = {"Authorization": f"Bearer {ws._token()}"}
    base = f"{uri}/api/2.0/preview/mlflow/runs"
    body = {"run_id": run.info.run_id, "metrics": [
        {"key": "acc", "value": 0.5 + i / 10, "timestamp": 1000 + i, "step": i} for i in range(3)],
        "params": [{"key": "lr", "value": "0.01"}]}
    answer = requests.post(f"{base}/log-batch-async", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    batch_id = answer.json()["batch_tracking_id"]
    status = requests.get(f"{base}/get-run-data-status", headers=headers, timeout=60,
                          params={"run_id": run.info.run_id, "batch_tracking_id": batch_id})
    assert status.json() == {"is_complete": True}
    client = MlflowClient()
    assert [m.value for m in client.get_metric_history(run.info.run_id, "acc")] == [0.5, 0.6, 0.7]
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.01"}
    bad = requests.post(f"{base}/log-batch-async", json={"run_id": run.info.run_id, "metrics": [1]},
                        headers=headers, timeout=60)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    missing = requests.get(f"{base}/get-run-data-status", headers=headers, timeout=60,
                           params={"run_id": "0" * 32, "batch_tracking_id": batch_id})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_legacy_experiments_list_is_served(emulator):
    """``GET experiments/list`` (MLflow 1.x; Azure ML's REST example still calls it). Before: 404
    ENDPOINT_NOT_FOUND, as open-source MLflow 2+ answers."""
    aml = emulator.azureml
    headers = {"Authorization": f"Bearer {aml.token}"}
    base = f"{aml.tracking_uri}/api/2.0/mlflow/experiments"
    name = f"listed-{uuid.uuid4().hex[:6]}"
    created = requests.post(f"{base}/create", json={"name": name}, headers=headers, timeout=30).json()
    listed = requests.get(f"{base}/list", headers=headers, timeout=30)
    assert listed.status_code == 200, listed.text
    found = {e["name"]: e for e in listed.json()["experiments"]}
    assert found[name]["experiment_id"] == created["experiment_id"]
    requests.post(f"{base}/delete", json={"experiment_id": created["experiment_id"]}, headers=headers, timeout=30)
    active = requests.get(f"{base}/list", headers=headers, timeout=30).json()["experiments"]
    deleted = requests.get(f"{base}/list", params={"view_type": "DELETED_ONLY"}, headers=headers, timeout=30)
    assert name not in {e["name"] for e in active}
    assert name in {e["name"] for e in deleted.json()["experiments"]}
    paged = requests.get(f"{base}/list", params={"max_results": 1, "view_type": "ALL"}, headers=headers, timeout=30)
    assert len(paged.json()["experiments"]) == 1 and paged.json()["next_page_token"]
    for params in ({"view_type": "SOME"}, {"max_results": 0}, {"page_token": "forged"}):
        bad = requests.get(f"{base}/list", params=params, headers=headers, timeout=30)
        assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE", (params, bad.text)
    assert requests.get(f"{base}/list", timeout=30).status_code == 401
