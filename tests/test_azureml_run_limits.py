"""Azure ML's cap of 200 params per run (issue 30 item 7), with the real MLflow 3.17.2 client and the
azureml-mlflow plugin.

Azure/azure-sdk-for-python#35685: logging 210 params to an Azure ML run fails with
``INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': 'ValidationError', ..., 'Message': 'A field
of the entity is over the size limit. FieldName=Parameters, Limit=200, Size=210. See
https://aka.ms/azure-machine-learning-limits for service limits documentation.' ...`` where a local
MLflow server takes them.
"""

from __future__ import annotations

import json
import textwrap

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests.test_azureml_real_clients import client_python, run_client  # noqa: F401

LIMIT_TEXT = ("A field of the entity is over the size limit. FieldName=Parameters, Limit=200, Size={}. "
              "See https://aka.ms/azure-machine-learning-limits for service limits documentation.")


@pytest.fixture
def aml(emulator, monkeypatch):
    ws = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ws.token)
    mlflow.set_tracking_uri(ws.tracking_uri)
    yield ws
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def _params(n: int, start: int = 0) -> dict:
    return {f"p{i:03d}": str(i) for i in range(start, start + n)}


def test_210_params_are_refused_as_in_the_report(aml):
    # The report's call: mlflow.log_params with 210 params. The client sends batches of 100, 100
    # and 10; the third takes the run to 210 and is refused whole.
    with mlflow.start_run() as run:
        with pytest.raises(MlflowException) as err:
            mlflow.log_params(_params(210))
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    text = str(err.value)
    assert "'Code': 'ValidationError'" in text
    assert LIMIT_TEXT.format(210) in text
    params = MlflowClient().get_run(run.info.run_id).data.params
    assert params == _params(200)  # the first two batches stay; nothing of the refused one


def test_exactly_200_params_are_taken_and_a_repeated_key_does_not_count(aml):
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params(_params(200))
        mlflow.log_param("p007", "7")  # already on the run, same value: MLflow's idempotent re-log
        with pytest.raises(MlflowException) as err:
            mlflow.log_param("one-more", "x")
    assert LIMIT_TEXT.format(201) in str(err.value)
    assert client.get_run(run.info.run_id).data.params == _params(200)


def test_raw_answer_is_azure_mls_service_error(aml):
    client = MlflowClient()
    run = client.create_run(client.create_experiment("param-limit-raw"))
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in _params(100).items()])
    client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in _params(90, 100).items()])
    body = {"run_id": run.info.run_id, "params": [{"key": f"x{i}", "value": "1"} for i in range(11)]}
    for path in ("api/2.0/mlflow/runs/log-batch", "api/2.0/preview/mlflow/runs/log-batch-async"):
        resp = requests.post(f"{aml.tracking_uri}/{path}", json=body, timeout=60,
                             headers={"Authorization": f"Bearer {aml.token}"})
        assert resp.status_code == 400, (path, resp.text)
        answer = resp.json()
        assert answer["Error"]["Code"] == "ValidationError"
        assert answer["Error"]["Message"] == LIMIT_TEXT.format(201)
        assert (answer["statusCode"], answer["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
        assert "message" not in answer
    # A batch over MLflow's own 100 params per request gets MLflow's answer: its shape is judged first.
    too_big = {"run_id": run.info.run_id, "params": [{"key": f"y{i}", "value": "1"} for i in range(101)]}
    resp = requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/runs/log-batch", json=too_big, timeout=60,
                         headers={"Authorization": f"Bearer {aml.token}"})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "FieldName=Parameters" not in resp.text and resp.json()["message"]
    # Ten more fit: the run reaches exactly 200.
    body["params"] = body["params"][:10]
    resp = requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/runs/log-batch", json=body, timeout=60,
                         headers={"Authorization": f"Bearer {aml.token}"})
    assert resp.status_code == 200, resp.text
    assert len(client.get_run(run.info.run_id).data.params) == 200


def test_unknown_run_keeps_mlflows_not_found(aml):
    resp = requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/runs/log-batch", timeout=60,
                         json={"run_id": "0" * 32, "params": [{"key": "a", "value": "1"}]},
                         headers={"Authorization": f"Bearer {aml.token}"})
    assert resp.status_code == 404
    assert resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


# The azureml-mlflow plugin (its venv: mlflow 3.15) over the azureml:// tracking URI.
PLUGIN_SCRIPT = textwrap.dedent('''
    import json, sys
    import mlflow
    import azureml.mlflow
    from azureml.core import Workspace
    from mlflow.exceptions import MlflowException

    ws = Workspace.get(name=sys.argv[1], subscription_id=sys.argv[2], resource_group=sys.argv[3])
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    mlflow.set_experiment("plugin-param-limit")
    with mlflow.start_run() as run:
        try:
            mlflow.log_params({f"p{i:03d}": str(i) for i in range(210)})
            error = None
        except MlflowException as exc:
            error = {"code": exc.error_code, "text": str(exc)}
    count = len(mlflow.MlflowClient().get_run(run.info.run_id).data.params)
    print("RESULT " + json.dumps({"error": error, "count": count}))
''')


def test_plugin_user_sees_the_limit(emulator, client_python, tmp_path):
    info = emulator.status()["azureml"]
    result = run_client(client_python, PLUGIN_SCRIPT, info["client_env"], tmp_path, info["workspace_name"],
                        info["subscription_id"], info["resource_group"], timeout=600)
    assert result["error"] is not None, "the plugin logged 210 params"
    assert result["error"]["code"] == "INVALID_PARAMETER_VALUE"
    assert LIMIT_TEXT.format(210) in result["error"]["text"]
    assert result["count"] == 200
    json.dumps(result)  # the whole result is plain JSON (no client objects leaked)
