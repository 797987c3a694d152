"""Databricks error text parity: a missing or non-string experiment name gets MLflow's own
missing/type message (not the path rule's message about 'None'), and ``create-promptlab-run``
obeys run ownership like ``runs/create``. Raw requests: a client never sends these bodies."""

import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)


def post(ws, route, body, api="api"):
    return requests.post(f"{ws.url}/{api}/2.0/mlflow/{route}", json=body,
                         headers={"Authorization": f"Bearer {ws.token}"}, timeout=60)


def test_missing_or_non_string_experiment_name_gets_mlflows_message(databricks_ws):
    missing = post(databricks_ws, "experiments/create", {})
    assert missing.status_code == 400, missing.text
    assert missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert missing.json()["message"] == ("Missing value for required parameter 'name'. See the API docs for more "
                                         "information about request parameters.")
    for body in ({"name": 123}, {"name": ["/Users/x"]}, {"name": None}, {"name": ""}):
        answer = post(databricks_ws, "experiments/create", body)
        assert answer.status_code == 400, (body, answer.text)
        message = answer.json()["message"]
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "parameter 'name'" in message and "Got an invalid experiment name" not in message, (body, message)
    exp = post(databricks_ws, "experiments/create", {"name": "/Users/someone@example.com/err-text"}).json()
    renamed = post(databricks_ws, "experiments/update", {"experiment_id": exp["experiment_id"], "new_name": 7})
    assert renamed.status_code == 400 and "'None'" not in renamed.text and "'7'" not in renamed.text, renamed.text
    # A string name still gets the workspace's path rule.
    relative = post(databricks_ws, "experiments/create", {"name": "exp"})
    assert relative.status_code == 400 and "Got an invalid experiment name 'exp'" in relative.json()["message"]


def test_promptlab_run_is_owned_by_the_tokens_user(databricks_ws):
    exp = post(databricks_ws, "experiments/create", {"name": "/Users/someone@example.com/promptlab"}).json()
    answer = post(databricks_ws, "runs/create-promptlab-run", {
        "experiment_id": exp["experiment_id"], "prompt_template": "Say {{ x }}",
        "prompt_parameters": [{"key": "x", "value": "hi"}], "model_route": "chat",
        "model_input": "Say hi", "mlflow_version": "3.17.2", "user_id": "mallory@example.com",
        "tags": [{"key": "mlflow.user", "value": "mallory@example.com"}],
    }, api="ajax-api")  # MLflow serves it only under /ajax-api (the UI's prompt lab)
    assert answer.status_code == 200, answer.text
    run = answer.json()["run"]
    assert run["info"]["user_id"] == databricks_ws.user
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags.get("mlflow.user") in (None, databricks_ws.user), tags
    # Other tags: MLflow's handler would fail with a 500; here a clear 400.
    tagged = post(databricks_ws, "runs/create-promptlab-run", {
        "experiment_id": exp["experiment_id"], "prompt_template": "Say {{ x }}",
        "prompt_parameters": [{"key": "x", "value": "hi"}], "model_route": "chat",
        "model_input": "Say hi", "mlflow_version": "3.17.2", "tags": [{"key": "team", "value": "a"}],
    }, api="ajax-api")
    assert tagged.status_code == 400 and tagged.json()["error_code"] == "INVALID_PARAMETER_VALUE", tagged.text


WORKSPACE_NAME_RULE = ("A workspace registered model name must be a non-empty UTF-8 string and cannot contain "
                       "forward slashes(/), periods(.), or colons(:).")


def test_unity_catalog_name_in_the_workspace_registry_is_refused_as_databricks_does(databricks_ws, tmp_path):
    """databricks/mlops-stacks#135: a three-level name with registry URI 'databricks' (not
    'databricks-uc') is refused by the workspace registry, naming the fix; nothing is stored."""
    import mlflow
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.exceptions import RestException
    from sklearn.linear_model import LinearRegression

    mlflow.set_experiment(f"/Users/{databricks_ws.user}/names")
    X = np.arange(6, dtype=float).reshape(-1, 1)
    with mlflow.start_run():
        with pytest.raises(RestException) as refused:
            mlflow.sklearn.log_model(LinearRegression().fit(X, X.ravel()), name="model",
                                     registered_model_name="ml-ops.prometheus-model.staging-model")
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    assert WORKSPACE_NAME_RULE in str(refused.value)
    assert "mlflow.set_registry_uri('databricks-uc')" in str(refused.value)
    client = MlflowClient()
    assert client.search_registered_models(filter_string="name LIKE 'ml-ops%'") == []
    for name in ("/Shared/YOLOv8", "a:b"):
        with pytest.raises(RestException, match="cannot contain forward slashes"):
            client.create_registered_model(name)
    with pytest.raises(RestException, match=r"Invalid name 'cat\.schema\.m'"):  # reading one, as load_model does
        client.get_model_version("cat.schema.m", "1")
    client.create_registered_model("plain_name")
    with pytest.raises(RestException, match="cannot contain forward slashes"):
        client.rename_registered_model("plain_name", "main.default.plain")
    assert client.get_registered_model("plain_name").name == "plain_name"
