"""What the Azure ML registry refuses on model registration, refused as the real service does
(issue 30 items 4, 5, 7), with the real MLflow 3.17.2 client over plain REST.

Sources (mlflow/mlflow#15329, seen on the real service): anything that is not run/model based
must be an upload of the artifact service, ``azureml://artifacts/<origin>/<container>/<prefix>``;
else 400 ``ValidationError`` in Azure ML's service error body, which the MLflow client shows as
``INVALID_PARAMETER_VALUE: Response: {'Error': {...}, ...}``.
"""

from __future__ import annotations

import ast
import textwrap
import uuid

import mlflow
import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException
from sklearn.linear_model import LinearRegression

from tests.test_azureml_real_clients import client_python, run_client  # noqa: F401

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

FILE_SOURCE = ("Model source from file must be in the following format: "
               "azureml://artifacts/<origin>/<container>/<artifact_prefix>. Provided model source: {}")


@pytest.fixture
def aml(emulator, monkeypatch):
    ws = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ws.token)
    mlflow.set_tracking_uri(ws.tracking_uri)
    mlflow.set_registry_uri(ws.tracking_uri)
    yield ws
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create(ws, body: dict) -> requests.Response:
    return requests.post(f"{ws.tracking_uri}/api/2.0/mlflow/model-versions/create", json=body,
                         headers={"Authorization": f"Bearer {ws.token}"}, timeout=60)


def _assert_service_refusal(body: dict, source: str, location: str) -> None:
    # The body seen in mlflow/mlflow#15329, field for field (ids and time vary).
    assert body["Error"] == {
        "Code": "ValidationError", "Severity": None, "Message": FILE_SOURCE.format(source),
        "MessageFormat": None, "MessageParameters": None, "ReferenceCode": None, "DetailsUri": None,
        "Target": None, "Details": [], "InnerError": None, "DebugInfo": None, "AdditionalInfo": None,
    }
    assert set(body["Correlation"]) == {"operation", "request"}
    assert (body["Environment"], body["Location"], body["ComponentName"]) == (location, location, "mlflow")
    assert (body["statusCode"], body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "message" not in body  # so the MLflow client quotes the whole body, as users saw


@pytest.mark.parametrize("source", [
    "path/to/model",                        # MLflow's own registry tests use bare paths
    "file:///tmp/model",                    # a vanilla client (no azureml-mlflow) registering a local dir
    "s3://bucket/model",
    "https://acct.blob.core.windows.net/c/model",
    "azureml://artifacts/LocalUpload",      # an upload location missing its container and prefix
])
def test_file_sources_outside_the_artifact_service_are_refused(aml, source):
    client = MlflowClient()
    name = _name("src")
    client.create_registered_model(name)
    with pytest.raises(RestException) as err:
        client.create_model_version(name, source)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    text = str(err.value)
    assert text.startswith("INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': 'ValidationError'")
    _assert_service_refusal(ast.literal_eval(text[len("INVALID_PARAMETER_VALUE: Response: "):]), source,
                            "westeurope")
    assert client.search_model_versions(f"name = '{name}'") == []  # nothing stored


def test_raw_answer_is_400_in_the_service_shape(aml):
    name = _name("raw")
    MlflowClient().create_registered_model(name)
    resp = _create(aml, {"name": name, "source": "dummy-source"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    _assert_service_refusal(resp.json(), "dummy-source", "westeurope")


def test_prompts_are_refused_as_on_azure_ml(aml):
    # mlflow/mlflow#15329: register_prompt sends a placeholder source, which Azure ML refuses.
    with pytest.raises(RestException, match="Model source from file must be in the following format") as err:
        mlflow.genai.register_prompt(name=_name("prompt"), template="Hi {{name}}")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_run_model_and_artifact_service_sources_are_accepted(aml):
    client = MlflowClient()
    X = np.arange(10.0).reshape(-1, 1)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(LinearRegression().fit(X, 2 * X[:, 0]), name="model")
    name = _name("ok")
    client.create_registered_model(name)
    from_run = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    from_model = client.create_model_version(name, info.model_uri, model_id=info.model_id)
    artifact_uri = client.get_run(run.info.run_id).info.artifact_uri  # the store URI this workspace hands out
    assert artifact_uri.startswith("mlflow-artifacts:/")
    from_store_uri = client.create_model_version(name, f"{artifact_uri}/model", run_id=run.info.run_id)
    from_upload = client.create_model_version(name, "azureml://artifacts/LocalUpload/250101T000000-abcd1234/model")
    assert [int(v.version) for v in (from_run, from_model, from_store_uri, from_upload)] == [1, 2, 3, 4]


def test_unknown_run_keeps_mlflow_shape_and_run_text(aml):
    # Item 5: a run neither workspace holds is "Run with id=<id> not found" (not the Databricks-mirror
    # text); the source rule comes first only for sources that are not run based.
    client = MlflowClient()
    name = _name("unknown-run")
    client.create_registered_model(name)
    run_id = uuid.uuid4().hex
    with pytest.raises(MlflowException, match=f"^RESOURCE_DOES_NOT_EXIST: Run with id={run_id} not found$"):
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    # The same run named by run_id beside one of this workspace's artifact locations (MLflow's own
    # handler would answer 400 "Invalid model version source" here).
    with pytest.raises(MlflowException, match=f"^RESOURCE_DOES_NOT_EXIST: Run with id={run_id} not found$"):
        client.create_model_version(name, f"mlflow-artifacts:/1/{run_id}/artifacts/model", run_id=run_id)
    assert client.search_model_versions(f"name = '{name}'") == []


def test_refusal_needs_a_token_first(aml):
    resp = requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/model-versions/create",
                         json={"name": "x", "source": "dummy-source"}, timeout=60)
    assert resp.status_code == 401


# The real azureml-mlflow plugin (its venv: mlflow 3.15), azureml:// tracking URI over HTTPS: the
# same refusal reaches its user as RestException with the service body, as in mlflow/mlflow#15329.
PLUGIN_SCRIPT = textwrap.dedent('''
    import json, sys, uuid
    import mlflow
    import azureml.mlflow
    from azureml.core import Workspace
    from mlflow.exceptions import RestException

    ws = Workspace.get(name=sys.argv[1], subscription_id=sys.argv[2], resource_group=sys.argv[3])
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    client = mlflow.MlflowClient()
    name = "plugin-src-" + uuid.uuid4().hex[:8]
    client.create_registered_model(name)
    try:
        client.create_model_version(name, "s3://bucket/model")
        error = None
    except RestException as exc:
        error = {"code": exc.error_code, "text": str(exc), "json": exc.json}
    versions = [v.version for v in client.search_model_versions(f"name = '{name}'")]
    print("RESULT " + json.dumps({"error": error, "versions": versions}))
''')


def test_plugin_user_sees_the_service_refusal(emulator, client_python, tmp_path):
    info = emulator.status()["azureml"]
    result = run_client(client_python, PLUGIN_SCRIPT, info["client_env"], tmp_path, info["workspace_name"],
                        info["subscription_id"], info["resource_group"], timeout=600)
    error = result["error"]
    assert error is not None, "the plugin registered an s3:// source"
    assert error["code"] == "INVALID_PARAMETER_VALUE"
    assert error["text"].startswith("INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': 'ValidationError'")
    _assert_service_refusal(error["json"], "s3://bucket/model", "westeurope")
    assert result["versions"] == []
