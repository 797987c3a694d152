"""Databricks workspace behaviour through the real mlflow and databricks-sdk clients."""


import mlflow
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, Unauthenticated
from databricks.sdk.service.workspace import ObjectType
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from emulator.services.databricks.uc.store import BAD_NAME


def home(databricks_ws, *parts):
    return "/".join([f"/Users/{databricks_ws.user}", *parts])


def test_missing_or_wrong_token_is_401_unauthenticated(databricks_ws):
    url = f"{databricks_ws.url}/api/2.0/mlflow/experiments/search"
    for headers in ({}, {"Authorization": "Bearer dapi-wrong"}):
        resp = requests.post(url, json={"max_results": 1}, headers=headers, timeout=60)
        assert resp.status_code == 401
        assert resp.json()["error_code"] == "UNAUTHENTICATED"
        assert resp.json()["message"]
    with pytest.raises(Unauthenticated):
        WorkspaceClient(host=databricks_ws.url, token="dapi-wrong").current_user.me()
    ok = requests.post(url, json={"max_results": 1}, headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60)
    assert ok.status_code == 200
    # What the SDK asks before its calls is public, as on Databricks.
    cfg = requests.get(f"{databricks_ws.url}/.well-known/databricks-config", timeout=60)
    assert cfg.status_code == 200 and cfg.json()["workspace_id"]


def test_runs_are_owned_by_the_tokens_user(databricks_ws):
    mlflow.set_experiment(home(databricks_ws, "owned"))
    with mlflow.start_run() as run:
        pass
    info = MlflowClient().get_run(run.info.run_id)
    assert info.info.user_id == databricks_ws.user
    assert info.data.tags["mlflow.user"] == databricks_ws.user
    # Even a client that claims another user gets the token's user.
    resp = requests.post(
        f"{databricks_ws.url}/api/2.0/mlflow/runs/create",
        json={"experiment_id": run.info.experiment_id, "user_id": "intruder",
              "tags": [{"key": "mlflow.user", "value": "intruder"}]},
        headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60,
    ).json()["run"]
    assert resp["info"]["user_id"] == databricks_ws.user
    assert {"key": "mlflow.user", "value": databricks_ws.user} in resp["data"]["tags"]


def test_relative_experiment_name_is_invalid(databricks_ws):
    with pytest.raises(MlflowException) as err:
        mlflow.set_experiment("exp")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert (
        "Got an invalid experiment name 'exp'. An experiment name must be an absolute path within the "
        "Databricks workspace, e.g. '/Users/<some-username>/my-experiment'."
    ) in str(err.value)


def test_parent_folder_must_exist_unless_made_with_the_workspace_api(databricks_ws, sdk):
    folder = home(databricks_ws, "not-yet")
    with pytest.raises(MlflowException) as err:
        mlflow.create_experiment(f"{folder}/exp")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"Parent directory {folder} does not exist." in str(err.value)
    sdk.workspace.mkdirs(folder)
    assert mlflow.create_experiment(f"{folder}/exp")
    # The user's home folder always exists; other users' homes and made-up roots don't.
    assert mlflow.create_experiment(home(databricks_ws, "in-home"))
    for name in ("/Users/nobody@example.com/exp", "/Nowhere/exp"):
        with pytest.raises(MlflowException, match="Parent directory .* does not exist"):
            mlflow.create_experiment(name)


def test_workspace_prefix_is_stripped_and_workspace_tags_are_added(databricks_ws):
    first = mlflow.set_experiment(f"/Workspace{home(databricks_ws, 'databricks_ws-prefixed')}")
    again = mlflow.set_experiment(f"/Workspace{home(databricks_ws, 'databricks_ws-prefixed')}")
    assert first.experiment_id == again.experiment_id
    exp = MlflowClient().get_experiment(first.experiment_id)
    assert exp.name == home(databricks_ws, "databricks_ws-prefixed")
    assert exp.artifact_location == f"dbfs:/databricks/mlflow-tracking/{exp.experiment_id}"
    assert exp.tags["mlflow.ownerEmail"] == databricks_ws.user
    assert exp.tags["mlflow.ownerId"].isdigit()
    assert exp.tags["mlflow.experiment.sourceName"] == exp.name
    assert exp.tags["mlflow.experimentType"] == "MLFLOW_EXPERIMENT"


def test_rename_obeys_the_same_rules(databricks_ws, sdk):
    client = MlflowClient()
    exp_id = client.create_experiment(home(databricks_ws, "to-rename"))
    with pytest.raises(MlflowException) as err:
        client.rename_experiment(exp_id, "relative-name")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as err:
        client.rename_experiment(exp_id, home(databricks_ws, "missing-folder", "renamed"))
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    sdk.workspace.mkdirs(home(databricks_ws, "target"))
    client.rename_experiment(exp_id, f"/Workspace{home(databricks_ws, 'target', 'renamed')}")
    assert client.get_experiment(exp_id).name == home(databricks_ws, "target", "renamed")


def test_workspace_api_folders_via_the_sdk(databricks_ws, sdk, emulator):
    root = home(databricks_ws, "proj")
    sdk.workspace.mkdirs(f"{root}/sub/deeper")
    status = sdk.workspace.get_status(root)
    assert status.object_type == ObjectType.DIRECTORY and status.path == root
    exp_id = mlflow.create_experiment(f"{root}/exp")
    listed = {o.path: o.object_type for o in sdk.workspace.list(root)}
    # The SDK's ObjectType enum has no MLFLOW_EXPERIMENT (it reads None); the wire value is checked raw.
    assert listed.keys() == {f"{root}/sub", f"{root}/exp"}
    assert listed[f"{root}/sub"] == ObjectType.DIRECTORY
    raw = requests.get(f"{databricks_ws.url}/api/2.0/workspace/list", params={"path": root},
                       headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60).json()["objects"]
    assert {o["path"]: o["object_type"] for o in raw}[f"{root}/exp"] == "MLFLOW_EXPERIMENT"
    assert sdk.workspace.get_status(f"{root}/exp").object_id == int(exp_id)
    with pytest.raises(NotFound, match="doesn't exist"):
        sdk.workspace.get_status(f"{root}/missing")
    with pytest.raises(Exception, match="not empty"):
        sdk.workspace.delete(root)

    # Folders are durable: they survive a restart of the workspace.
    emulator.stop("databricks")
    emulator.start("databricks")
    assert sdk.workspace.get_status(f"{root}/sub/deeper").object_type == ObjectType.DIRECTORY

    sdk.workspace.delete(root, recursive=True)
    with pytest.raises(NotFound):
        sdk.workspace.get_status(root)
    assert MlflowClient().get_experiment(exp_id).lifecycle_stage == "deleted"


def test_scim_me_returns_the_tokens_user(databricks_ws, sdk):
    me = sdk.current_user.me()
    assert me.user_name == databricks_ws.user
    assert me.emails[0].value == databricks_ws.user
    mlflow.login(interactive=False)  # validates the credentials with /Me
    assert mlflow.get_tracking_uri() == "databricks"


def test_default_unity_catalog_registry_answers_like_databricks(databricks_ws):
    client = MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc")
    with pytest.raises(MlflowException) as err:
        client.create_registered_model("model_name")
    assert "INVALID_PARAMETER_VALUE" in str(err.value)
    assert BAD_NAME in str(err.value)
    raw = requests.post(f"{databricks_ws.url}/api/2.0/mlflow/unity-catalog/registered-models/create",
                        json={"name": "two.levels"}, headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60)
    assert raw.status_code == 400 and raw.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": BAD_NAME}


def test_unknown_api_is_501_naming_the_path(databricks_ws):
    resp = requests.get(f"{databricks_ws.url}/api/2.0/pipelines", headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60)
    assert resp.status_code == 501
    assert resp.json()["error_code"] == "NOT_IMPLEMENTED"
    assert "/api/2.0/pipelines" in resp.json()["message"]
    # The artifact listing MLflow's fallback repository uses never answers 5xx for dbfs:/ runs.
    mlflow.set_experiment(home(databricks_ws, "listing"))
    with mlflow.start_run() as run:
        mlflow.log_text("x", "dir/a.txt")
    listing = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/artifacts/list", params={"run_id": run.info.run_id},
                           headers={"Authorization": f"Bearer {databricks_ws.token}"}, timeout=60)
    assert listing.status_code == 200
    assert listing.json()["files"] == [{"path": "dir", "is_dir": True}]
