"""Garbage in, on both workspaces: a 400 in MLflow's shape, the server keeps serving, written data
stays intact. The same checks (``emulator.pipeline.validation``) guard Databricks and Azure ML."""

import json
import math

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

JSON = {"Content-Type": "application/json"}
ROLES = ["databricks", "azureml"]


class Target:
    """One workspace as the tests drive it: tracking URI, env, base URL for raw calls, token."""

    def __init__(self, emulator, role):
        self.role = role
        if role == "databricks":
            ws = emulator.databricks
            self.tracking_uri, self.base, self.token, self.env = "databricks", ws.url, ws.token, ws.env
        else:
            ws = emulator.azureml
            self.tracking_uri, self.base, self.token = ws.tracking_uri, ws.tracking_uri, ws.token
            self.env = {"MLFLOW_TRACKING_TOKEN": ws.token}
        self.user = emulator.databricks.user

    def post(self, path, body: bytes):
        return requests.post(f"{self.base}/api/2.0/mlflow/{path}", data=body, timeout=60,
                             headers={"Authorization": f"Bearer {self.token}", **JSON})


@pytest.fixture(params=ROLES)
def target(request, emulator, monkeypatch):
    t = Target(emulator, request.param)
    for key, value in t.env.items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(t.tracking_uri)
    yield t
    mlflow.set_tracking_uri(None)


@pytest.fixture
def logged(target):
    """A run with known good data, logged with the real client."""
    exp = mlflow.set_experiment(f"/Users/{target.user}/bad-input-exp")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_param("good", "value")
        mlflow.set_tag("kept", "yes")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_dict({"a": 1}, "data/a.json")
    yield target, run.info.run_id, exp.experiment_id


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


def expected_refusal(target, path, body: bytes) -> tuple[int, str]:
    """400 INVALID_PARAMETER_VALUE, except an experiment id Azure ML does not hold: its ids are GUIDs,
    so an over-long integer is an unknown id there (docs/pages/fidelity.md, Azure ML experiment ids)."""
    if target.role == "azureml" and b'"experiment_id": "9999' in body:
        return 404, "RESOURCE_DOES_NOT_EXIST"
    return 400, "INVALID_PARAMETER_VALUE"


def test_garbage_gets_400_and_nothing_is_lost(logged):
    target, run_id, experiment_id = logged
    for path, body in garbage(run_id, experiment_id):
        answer = target.post(path, body)
        status, code = expected_refusal(target, path, body)
        assert answer.status_code == status, (path, body[:80], answer.status_code, answer.text[:300])
        error = answer.json()
        assert error["error_code"] == code, (path, error)
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
    target, run_id, _ = logged
    headers = {"Authorization": f"Bearer {target.token}"}
    too_big = requests.get(f"{target.base}/api/2.0/mlflow/experiments/get", headers=headers,
                           params={"experiment_id": "9" * 40}, timeout=60)
    status, code = expected_refusal(target, "experiments/get", b'{"experiment_id": "' + b"9" * 40 + b'"}')
    assert (too_big.status_code, too_big.json()["error_code"]) == (status, code)
    unknown = requests.get(f"{target.base}/api/2.0/mlflow/no-such-api", headers=headers, timeout=60)
    # Databricks answers unknown APIs 501 (its clients retry 404s as "missing"; docs/pages/databricks.md).
    assert (unknown.status_code, unknown.json()["error_code"]) in ((404, "ENDPOINT_NOT_FOUND"),
                                                                   (501, "NOT_IMPLEMENTED"))
    escape = requests.get(f"{target.base}/api/2.0/mlflow-artifacts/artifacts/%2e%2e/%2e%2e/etc/passwd",
                          headers=headers, timeout=60)
    # Azure ML: refused path; Databricks has no proxied-artifact API: 501 (not a retried 503).
    assert escape.status_code in (400, 404, 501) and "root:" not in escape.text
    assert escape.json()["error_code"]
    assert_intact(run_id)


def test_one_out_of_range_timestamp_refuses_the_batch_and_stores_nothing(logged):
    target, run_id, _ = logged
    metrics = [{"key": "batch", "value": float(i), "timestamp": 1_700_000_000_000 + i, "step": i} for i in range(100)]
    metrics[57]["timestamp"] = 2**63  # one past int64
    answer = target.post("runs/log-batch", json.dumps({"run_id": run_id, "metrics": metrics}).encode())
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "timestamp" in answer.json()["message"]
    assert MlflowClient().get_metric_history(run_id, "batch") == []  # not stored as 0, not stored at all
    assert_intact(run_id)


@pytest.mark.parametrize("body", [b"[]", b"null", b'"x"', b"[" * 1500 + b"]" * 1500, b"{" * 3 + b"}"])
def test_malformed_bodies_are_400_not_500(logged, body):
    target, run_id, _ = logged
    for path in ("runs/log-metric", "experiments/create", "runs/update"):
        answer = target.post(path, body)
        assert answer.status_code == 400, (path, body[:20], answer.status_code, answer.text[:200])
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("bad", [[], {}, None])
def test_integer_fields_that_are_lists_objects_or_null_are_400_not_500(logged, bad):
    """MLflow's handlers call int() on them, which raised a TypeError (500) instead of their 400."""
    target, run_id, experiment_id = logged
    calls = [("runs/search", {"experiment_ids": [experiment_id], "max_results": bad}),
             ("experiments/search", {"max_results": bad})]
    if bad is not None:
        calls += [("runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": bad, "step": 9}),
                  ("runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 1, "step": bad}),
                  ("runs/update", {"run_id": run_id, "end_time": bad})]
    for path, body in calls:
        answer = target.post(path, json.dumps(body).encode())
        assert answer.status_code == 400, (path, body, answer.status_code, answer.text[:300])
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, answer.json())
    assert_intact(run_id)


def test_bogus_run_status_is_refused_and_the_run_keeps_its_status(logged):
    target, run_id, _ = logged
    answer = target.post("runs/update", json.dumps({"run_id": run_id, "status": "BOGUS"}).encode())
    assert answer.status_code == 400 and answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"


def test_nan_metric_round_trips_as_nan(logged):
    """What the real client sends for nan/inf (the strings "NaN", "Infinity"), stored exactly."""
    target, run_id, _ = logged
    client = MlflowClient()
    client.log_metric(run_id, "nan_metric", float("nan"), step=0)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metric("nan_fluent", float("nan"))
    assert math.isnan(client.get_metric_history(run_id, "nan_metric")[0].value)
    assert math.isnan(client.get_metric_history(run_id, "nan_fluent")[0].value)
    assert math.isnan(client.get_run(run_id).data.metrics["nan_metric"])


def test_bare_nan_is_stored_exactly_not_as_zero(logged):
    target, run_id, _ = logged
    body = f'{{"run_id": "{run_id}", "key": "bare", "value": NaN, "timestamp": 1700000000000, "step": 4}}'
    answer = target.post("runs/log-metric", body.encode())
    assert answer.status_code == 200, answer.text[:300]
    [point] = [m for m in MlflowClient().get_metric_history(run_id, "bare") if m.step == 4]
    assert math.isnan(point.value), point
    assert point.timestamp == 1700000000000  # the whole message, not a zeroed one
    assert_intact(run_id)


@pytest.mark.parametrize("token", ["Infinity", "-Infinity", "1e309", "-1e309"])
def test_bare_infinity_or_a_number_past_double_is_refused_and_nothing_stored(logged, token):
    """Not stored as 1.797e308 (nor as 0, MLflow's handler's reading): protobuf's parser refuses them."""
    target, run_id, _ = logged
    body = f'{{"run_id": "{run_id}", "key": "huge", "value": {token}, "timestamp": 1700000000000, "step": 4}}'
    answer = target.post("runs/log-metric", body.encode())
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert 'use quoted "Infinity"' in answer.json()["message"] and "'value'" in answer.json()["message"]
    batch = f'{{"run_id": "{run_id}", "metrics": [{{"key": "huge", "value": {token}, "timestamp": 1, "step": 5}}]}}'
    assert target.post("runs/log-batch", batch.encode()).status_code == 400
    assert MlflowClient().get_metric_history(run_id, "huge") == []
    assert_intact(run_id)


def test_malformed_dbfs_calls_are_400_in_databricks_shape(emulator):
    """Types and ranges the DBFS API's protos do not allow: a 400, never a 500, and nothing written."""
    ws = emulator.databricks
    headers = {"Authorization": f"Bearer {ws.token}"}
    api = f"{ws.url}/api/2.0/dbfs"
    path = "/tmp/bad-input/sweep.txt"
    put = requests.post(f"{api}/put", json={"path": path, "contents": "aGVsbG8=", "overwrite": True},
                        headers=headers, timeout=60)
    assert put.status_code == 200, put.text
    handle = requests.post(f"{api}/create", json={"path": "/tmp/bad-input/open.txt", "overwrite": True},
                           headers=headers, timeout=60).json()["handle"]
    calls = [("get", "read", {"params": {"path": path, "offset": str(2**70)}}),
             ("get", "read", {"params": {"path": path, "length": str(-(2**70))}}),
             ("get", "read", {"params": {"path": path, "offset": str(2**63)}})]
    for bad in ([], {}, "x", 1.5, True, 2**70):
        calls += [("post", "add-block", {"json": {"handle": bad, "data": "eA=="}}),
                  ("post", "close", {"json": {"handle": bad}})]
    for bad in ([], {"a": 1}, 5):
        calls += [("post", "put", {"json": {"path": bad, "contents": "eA=="}}),
                  ("post", "put", {"json": {"path": path, "contents": bad, "overwrite": True}}),
                  ("post", "create", {"json": {"path": bad}}),
                  ("post", "mkdirs", {"json": {"path": bad}}),
                  ("post", "delete", {"json": {"path": bad}}),
                  ("post", "move", {"json": {"source_path": path, "destination_path": bad}}),
                  ("get", "get-status", {"params": {"path": json.dumps(bad)}})]
    wrong = []
    for method, route, kwargs in calls:
        answer = getattr(requests, method)(f"{api}/{route}", headers=headers, timeout=60, **kwargs)
        if not (400 <= answer.status_code < 500 and answer.json().get("error_code") and answer.json().get("message")):
            wrong.append((route, kwargs, answer.status_code, answer.text[:200]))
    assert wrong == []
    read = requests.get(f"{api}/read", params={"path": path}, headers=headers, timeout=60).json()
    assert read["data"] == "aGVsbG8="  # unchanged
    past_the_end = requests.get(f"{api}/read", params={"path": path, "offset": 100}, headers=headers, timeout=60)
    assert past_the_end.json() == {"bytes_read": 0, "data": ""}
    assert requests.post(f"{api}/close", json={"handle": handle}, headers=headers, timeout=60).status_code == 200
