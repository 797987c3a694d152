"""Databricks artifact storage guards: MLflow paths must name what the workspace holds, the
MLflow-managed roots can't be moved, deleted or overwritten, and nothing is written below a file."""

import base64
import hashlib
import http.client
import io
import json
from urllib.parse import urlparse

import mlflow
import pytest
import requests
from databricks.sdk.errors import (
    AlreadyExists,
    NotFound,
    PermissionDenied,
    ResourceAlreadyExists,
)
from mlflow import MlflowClient

FILES = "/api/2.0/fs/files"
MLFLOW = "/WorkspaceInternal/Mlflow/Artifacts"
MADE_UP_RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def run(databricks_ws):
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/guarded")
    with mlflow.start_run() as run:
        mlflow.log_text("kept", "notes.txt")
    return run


@pytest.fixture(scope="module")
def other_experiment(databricks_ws):
    return mlflow.create_experiment(f"/Users/{databricks_ws.user}/guarded-other")


def call(ws, method, path, body=b"", json_body=None):
    """One request, path sent as written; returns (status, parsed JSON or raw bytes)."""
    headers = {"Authorization": f"Bearer {ws.token}"}
    if json_body is not None:
        body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
    conn = http.client.HTTPConnection(urlparse(ws.url).netloc, timeout=60)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(data)
    except ValueError:
        return resp.status, data


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_api_refuses_runs_the_workspace_does_not_hold(databricks_ws, run, other_experiment, emulator, sdk):
    state = emulator.state.root
    before = snapshot(state)
    exp, run_id = run.info.experiment_id, run.info.run_id
    paths = [
        f"{MLFLOW}/99999/Runs/{MADE_UP_RUN}/artifacts/owned.txt",   # neither exists
        f"{MLFLOW}/{exp}/Runs/{MADE_UP_RUN}/artifacts/owned.txt",   # experiment exists, run doesn't
        f"{MLFLOW}/{other_experiment}/Runs/{run_id}/artifacts/owned.txt",  # run of another experiment
        f"{MLFLOW}/99999/Runs/{run_id}/artifacts/owned.txt",
        f"{MLFLOW}/{exp}/LoggedModels/m-{MADE_UP_RUN}/artifacts/owned.txt",
        f"{MLFLOW}/{exp}/Runs/logged_models/m-{MADE_UP_RUN}/owned.txt",  # no aliasing through "Runs"
    ]
    for path in paths:
        for method in ("PUT", "GET", "HEAD"):
            status, body = call(databricks_ws, method, FILES + path, b"owned" if method == "PUT" else b"")
            assert status == 404, (method, path, status, body)
            if method != "HEAD":
                assert body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        folder = path.rsplit("/", 1)[0]
        for method in ("GET", "HEAD", "PUT"):
            assert call(databricks_ws, method, "/api/2.0/fs/directories" + folder)[0] == 404, (method, folder)
    assert snapshot(state) == before  # nothing stored
    with pytest.raises(NotFound):
        sdk.files.upload(f"{MLFLOW}/99999/Runs/{MADE_UP_RUN}/artifacts/sdk.txt", io.BytesIO(b"owned"))
    # The run's own path still works for writes and reads, with the real client too.
    assert call(databricks_ws, "PUT", f"{FILES}{MLFLOW}/{exp}/Runs/{run_id}/artifacts/extra.txt", b"extra")[0] == 204
    assert {f.path for f in MlflowClient().list_artifacts(run_id)} == {"notes.txt", "extra.txt"}
    # A file in place of the run's own folder would hide all of its artifacts.
    assert call(databricks_ws, "PUT", f"{FILES}{MLFLOW}/{exp}/Runs/{run_id}", b"x")[0] in (400, 409)


def test_dbfs_views_of_the_tracking_root_show_only_what_exists(databricks_ws, run, emulator):
    exp, run_id = run.info.experiment_id, run.info.run_id
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    get = lambda route, path: requests.get(f"{databricks_ws.url}/api/2.0/dbfs/{route}", params={"path": path},
                                           headers=headers, timeout=60)
    for path in (f"dbfs:/databricks/mlflow-tracking/99999/{MADE_UP_RUN}/artifacts/notes.txt",
                 f"dbfs:/databricks/mlflow-tracking/{exp}/{MADE_UP_RUN}/artifacts/notes.txt",
                 "dbfs:/databricks/mlflow-tracking/99999"):
        for route in ("get-status", "list", "read"):
            resp = get(route, path)
            assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (route, path)
    assert call(databricks_ws, "GET", f"/dbfs/databricks/mlflow-tracking/99999/{MADE_UP_RUN}/artifacts/x")[0] == 404
    notes = f"dbfs:/databricks/mlflow-tracking/{exp}/{run_id}/artifacts/notes.txt"
    assert base64.b64decode(get("read", notes).json()["data"]) == b"kept"
    # The root lists experiments only, not the registry's copies kept beside them.
    listed = {f["path"] for f in get("list", "dbfs:/databricks/mlflow-tracking").json()["files"]}
    assert f"/databricks/mlflow-tracking/{exp}" in listed
    assert all(p.rsplit("/", 1)[1].isdigit() for p in listed), listed


def test_mlflow_managed_roots_cannot_be_moved_deleted_or_overwritten(databricks_ws, run, sdk, emulator):
    from sklearn.linear_model import LinearRegression

    mlflow.set_experiment(f"/Users/{databricks_ws.user}/guarded")
    with mlflow.start_run():
        mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="m",
                                 registered_model_name="guarded-model")
    copy = emulator.state.root / "databricks" / "artifacts" / "model-registry" / "n-guarded-model" / "v-1"
    assert (copy / "MLmodel").is_file()
    digests = {p.name: sha(p) for p in copy.iterdir() if p.is_file()}
    artifacts = emulator.state.root / "databricks" / "artifacts"
    before = snapshot(artifacts)
    exp, run_id = run.info.experiment_id, run.info.run_id
    run_dir = f"dbfs:/databricks/mlflow-tracking/{exp}/{run_id}"
    registry = "dbfs:/databricks/mlflow-tracking/model-registry/n-guarded-model/v-1"
    dbfs = lambda route, body: call(databricks_ws, "POST", f"/api/2.0/dbfs/{route}", json_body=body)
    owned = base64.b64encode(b"owned").decode()
    attempts = [
        ("move", {"source_path": "dbfs:/databricks/mlflow-tracking", "destination_path": "dbfs:/stolen"}),
        ("move", {"source_path": "dbfs:/databricks", "destination_path": "dbfs:/stolen2"}),
        ("move", {"source_path": run_dir, "destination_path": "dbfs:/stolen3"}),
        ("delete", {"path": "dbfs:/databricks/mlflow-tracking", "recursive": True}),
        ("delete", {"path": "dbfs:/databricks", "recursive": True}),
        ("delete", {"path": run_dir, "recursive": True}),
        ("delete", {"path": f"{run_dir}/artifacts/notes.txt"}),
        ("put", {"path": f"{run_dir}/artifacts/notes.txt", "contents": owned, "overwrite": True}),
        ("put", {"path": f"{registry}/MLmodel", "contents": owned, "overwrite": True}),
        ("delete", {"path": registry, "recursive": True}),
        ("create", {"path": f"{registry}/MLmodel", "overwrite": True}),
        ("mkdirs", {"path": f"{run_dir}/artifacts/new"}),
        ("put", {"path": "dbfs:/databricks/mlflow-registry/x", "contents": owned}),
    ]
    for route, body in attempts:
        status, answer = dbfs(route, body)
        assert status == 403 and answer["error_code"] == "PERMISSION_DENIED", (route, body, status, answer)
    # Moving something else INTO the managed root is refused as well.
    sdk.dbfs.put("/tmp/guard/payload.txt", contents=owned, overwrite=True)
    with pytest.raises(PermissionDenied):
        sdk.dbfs.move("/tmp/guard/payload.txt", f"{run_dir}/artifacts/payload.txt")
    assert call(databricks_ws, "POST", f"/dbfs/databricks/mlflow-tracking/{exp}/{run_id}/artifacts/notes.txt",
                b"owned")[0] == 403
    # The Files API can't reach the registry's copies, nor delete run artifacts.
    copy_via_files = f"{FILES}{MLFLOW}/model-registry/Runs/n-guarded-model/v-1/MLmodel"
    assert call(databricks_ws, "PUT", copy_via_files, b"owned")[0] == 404
    assert call(databricks_ws, "DELETE", copy_via_files)[0] == 404
    status, answer = call(databricks_ws, "DELETE", f"{FILES}{MLFLOW}/{exp}/Runs/{run_id}/artifacts/notes.txt")
    assert status == 403 and answer["error_code"] == "PERMISSION_DENIED"
    assert call(databricks_ws, "DELETE", f"/api/2.0/fs/directories{MLFLOW}/{exp}/Runs/{run_id}/artifacts")[0] == 403

    assert snapshot(artifacts) == before  # nothing moved, deleted or overwritten
    assert {p.name: sha(p) for p in copy.iterdir() if p.is_file()} == digests
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "kept"
    assert mlflow.pyfunc.load_model("models:/guarded-model/1").predict([[2.0]])[0] == pytest.approx(2.0)


def test_writes_below_a_file_are_4xx_and_write_nothing(databricks_ws, sdk, emulator):
    volume = "/Volumes/cat/schema/guard"
    assert call(databricks_ws, "PUT", f"{FILES}{volume}/a.txt", b"a file")[0] == 204
    for method, path in (("PUT", f"{FILES}{volume}/a.txt/b.txt"), ("PUT", f"{FILES}{volume}/a.txt/deeper/b.txt"),
                         ("PUT", f"/api/2.0/fs/directories{volume}/a.txt/sub")):
        status, answer = call(databricks_ws, method, path, b"below")
        assert status == 409 and answer["error_code"] == "ALREADY_EXISTS", (path, status, answer)
        assert f"{volume}/a.txt" in answer["message"]
    with pytest.raises(AlreadyExists):
        sdk.files.upload(f"{volume}/a.txt/c.txt", io.BytesIO(b"below"))

    sdk.dbfs.put("/tmp/under/file.txt", contents=base64.b64encode(b"dbfs file").decode(), overwrite=True)
    sdk.dbfs.put("/tmp/under/other.txt", contents=base64.b64encode(b"other").decode(), overwrite=True)
    dbfs = lambda route, body: call(databricks_ws, "POST", f"/api/2.0/dbfs/{route}", json_body=body)
    below = "dbfs:/tmp/under/file.txt/sub/x.txt"
    for route, body in [
        ("mkdirs", {"path": "dbfs:/tmp/under/file.txt/sub"}),
        ("put", {"path": below, "contents": base64.b64encode(b"x").decode(), "overwrite": True}),
        ("create", {"path": below, "overwrite": True}),
        ("move", {"source_path": "dbfs:/tmp/under/other.txt", "destination_path": below}),
    ]:
        status, answer = dbfs(route, body)
        assert status == 400 and answer["error_code"] == "RESOURCE_ALREADY_EXISTS", (route, status, answer)
        assert "/tmp/under/file.txt" in answer["message"]
    assert call(databricks_ws, "POST", "/dbfs/tmp/under/file.txt/y.txt", b"y")[0] == 400
    with pytest.raises(ResourceAlreadyExists):
        sdk.dbfs.mkdirs("/tmp/under/file.txt/sdk")
    # Nothing was written or lost.
    assert base64.b64decode(sdk.dbfs.read("/tmp/under/file.txt").data) == b"dbfs file"
    assert base64.b64decode(sdk.dbfs.read("/tmp/under/other.txt").data) == b"other"
    assert sorted(f.path for f in sdk.dbfs.list("/tmp/under")) == ["/tmp/under/file.txt", "/tmp/under/other.txt"]
    volume_dir = emulator.state.root / "databricks" / "volumes" / "cat" / "schema" / "guard"
    assert [p.name for p in volume_dir.iterdir()] == ["a.txt"] and (volume_dir / "a.txt").read_bytes() == b"a file"
