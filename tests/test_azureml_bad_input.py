"""Garbage in: a 400 in MLflow's shape, the server keeps serving, written data stays intact."""

import json

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def logged(emulator, monkeypatch):
    """A run with known good data, logged through the scoped tracking URI."""
    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    mlflow.set_tracking_uri(aml.tracking_uri)
    exp = mlflow.set_experiment("/Users/someone@example.com/bad-input/exp")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_param("good", "value")
        mlflow.set_tag("kept", "yes")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_dict({"a": 1}, "data/a.json")
    yield aml, run.info.run_id, exp.experiment_id
    mlflow.set_tracking_uri(None)


def assert_intact(run_id):
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.data.params == {"good": "value"}
    assert run.data.tags["kept"] == "yes"
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [1.0, 0.5, 1.0 / 3]
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/data/a.json") == {"a": 1}


def garbage(run_id, experiment_id):
    deep = "[" * 100_000 + "]" * 100_000
    return [
        ("runs/log-parameter", b'{"run_id": "' + run_id.encode() + b'", "key": "x", '),  # truncated JSON
        ("runs/log-parameter", b"\xff\xfe\x00garbage"),
        ("experiments/create", b"[1, 2, 3]"),
        ("experiments/create", b'"just a string"'),
        ("experiments/create", deep.encode()),
        ("experiments/create", json.dumps({"name": 5}).encode()),
        ("runs/log-parameter", json.dumps({"run_id": run_id, "key": "good", "value": "v" * 6001}).encode()),
        ("runs/log-parameter", json.dumps({"run_id": run_id, "key": "k" * 300, "value": "v"}).encode()),
        ("runs/set-tag", json.dumps({"run_id": run_id, "key": "kept", "value": "v" * 9000}).encode()),
        ("runs/log-metric", json.dumps({"run_id": run_id, "key": "loss", "value": "abc", "timestamp": 1}).encode()),
        ("runs/log-metric", json.dumps({"run_id": run_id, "key": "loss", "value": 1, "timestamp": 10**30}).encode()),
        ("runs/log-metric", json.dumps({"run_id": run_id, "key": "loss", "value": 1, "timestamp": 1,
                                        "step": 2**70}).encode()),
        ("runs/log-batch", json.dumps({"run_id": run_id, "metrics": [1, 2]}).encode()),
        ("runs/log-batch", json.dumps({"run_id": run_id, "params": "nope"}).encode()),
        ("runs/log-batch", json.dumps({"run_id": run_id, "metrics": [
            {"key": "loss", "value": 0.0, "timestamp": 1, "step": i} for i in range(5000)]}).encode()),
        ("runs/log-batch", json.dumps({"run_id": run_id, "params": [
            {"key": f"p{i}", "value": "v"} for i in range(500)]}).encode()),
        ("runs/create", json.dumps({"experiment_id": "9" * 40}).encode()),
        ("runs/update", json.dumps({"run_id": run_id, "status": "NOT_A_STATUS"}).encode()),
    ]


def test_garbage_gets_400_and_nothing_is_lost(logged):
    aml, run_id, experiment_id = logged
    headers = {"Authorization": f"Bearer {aml.token}", **JSON}
    for path, body in garbage(run_id, experiment_id):
        answer = requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/{path}", data=body, headers=headers,
                               timeout=30)
        assert answer.status_code == 400, (path, body[:80], answer.status_code, answer.text[:300])
        error = answer.json()
        assert error["error_code"] == "INVALID_PARAMETER_VALUE", (path, error)
        assert error["message"]
    assert_intact(run_id)
    # And it still takes good writes.
    MlflowClient().log_metric(run_id, "loss", 0.1, step=3)
    assert len(MlflowClient().get_metric_history(run_id, "loss")) == 4


def test_oversized_values_through_the_client_are_rejected_not_truncated(logged, monkeypatch):
    _, run_id, _ = logged
    # The client truncates long values itself unless told not to; the server must refuse them.
    monkeypatch.setenv("MLFLOW_TRUNCATE_LONG_VALUES", "false")
    with pytest.raises(MlflowException) as err:
        MlflowClient().log_param(run_id, "long", "x" * 6001)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as err:
        MlflowClient().set_tag(run_id, "long", "x" * 8001)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    data = MlflowClient().get_run(run_id).data
    assert "long" not in data.params and "long" not in data.tags
    assert_intact(run_id)


def test_bad_query_and_unknown_paths(logged):
    aml, run_id, _ = logged
    headers = {"Authorization": f"Bearer {aml.token}"}
    too_big = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow/experiments/get", headers=headers,
                           params={"experiment_id": "9" * 40}, timeout=10)
    assert too_big.status_code == 400 and too_big.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow/no-such-api", headers=headers, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    escape = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/%2e%2e/%2e%2e/etc/passwd",
                          headers=headers, timeout=10)
    assert escape.status_code in (400, 404) and "root:" not in escape.text
    assert_intact(run_id)
