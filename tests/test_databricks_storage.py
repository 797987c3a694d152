"""Databricks file storage: Files API and DBFS paths can't escape, DBFS via the SDK, big uploads."""

import base64
import hashlib
import http.client
import io
import json
import logging
import os
from urllib.parse import urlparse

import mlflow
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import NotFound
from mlflow import MlflowClient


@pytest.fixture(scope="module")
def run(databricks_ws):
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/storage")
    with mlflow.start_run() as run:
        mlflow.log_text("inside", "notes.txt")
    return run


def raw(databricks_ws, method, path, body=b""):
    """A request with the path sent exactly as written (requests/urllib3 would normalize dots)."""
    netloc = urlparse(databricks_ws.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=60)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {databricks_ws.token}"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_api_paths_cannot_escape(databricks_ws, run, emulator):
    state = emulator.state.root
    before = snapshot(state)
    base = f"/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/{run.info.experiment_id}/Runs/{run.info.run_id}/artifacts"
    attacks = [
        f"{base}/../../../../../../escape.txt",
        f"{base}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/escape.txt",
        f"{base}/%252e%252e/%252e%252e/escape.txt",
        f"{base}/..%2f..%2f..%2f..%2f..%2fescape.txt",
        "/api/2.0/fs/files//etc/passwd",
        "/api/2.0/fs/files/Volumes/../../../../config.json",
        "/api/2.0/fs/files/Volumes/cat/%2e%2e/%2e%2e/%2e%2e/%2e%2e/config.json",
        "/api/2.0/fs/files/etc/passwd",
        "/api/2.0/fs/directories/Volumes/../../..",
    ]
    for path in attacks:
        for method in ("PUT", "GET", "HEAD"):
            status, data = raw(databricks_ws, method, path, b"owned" if method == "PUT" else b"")
            assert status == 400, (method, path, status, data)
            if method != "HEAD":
                assert json.loads(data)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert snapshot(state) == before  # nothing written anywhere in the state dir
    assert not (state.parent / "escape.txt").exists()
    # The legitimate path next to them works.
    assert raw(databricks_ws, "GET", f"{base}/notes.txt") == (200, b"inside")


def test_symlinks_are_not_followed(databricks_ws, emulator, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    volumes = emulator.state.root / "databricks" / "volumes" / "cat" / "schema" / "vol"
    volumes.mkdir(parents=True, exist_ok=True)
    (volumes / "link.txt").symlink_to(secret)
    (volumes / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    for path in ("/api/2.0/fs/files/Volumes/cat/schema/vol/link.txt",
                 "/api/2.0/fs/files/Volumes/cat/schema/vol/linkdir/secret.txt"):
        assert raw(databricks_ws, "GET", path)[0] == 400
        assert raw(databricks_ws, "PUT", path, b"overwritten")[0] == 400
    status, data = raw(databricks_ws, "GET", "/api/2.0/dbfs/read?path=/databricks/mlflow-tracking/../volumes/cat/schema/vol/link.txt")
    assert status == 400
    dbfs_root = emulator.state.root / "databricks" / "dbfs"
    dbfs_root.mkdir(exist_ok=True)
    (dbfs_root / "dbfs-link.txt").symlink_to(secret)
    assert raw(databricks_ws, "GET", "/api/2.0/dbfs/read?path=/dbfs-link.txt")[0] == 400
    assert raw(databricks_ws, "GET", "/dbfs/dbfs-link.txt")[0] == 400
    assert secret.read_text() == "outside"
    # Listings skip links.
    sdk = WorkspaceClient(host=databricks_ws.url, token=databricks_ws.token)
    assert [e.name for e in sdk.files.list_directory_contents("/Volumes/cat/schema/vol")] == []


def test_dbfs_paths_cannot_escape(databricks_ws, emulator):
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    state = emulator.state.root
    before = snapshot(state)
    bad = ["/../config.json", "dbfs:/../../config.json", "relative/path", "/databricks/mlflow-tracking/../../config.json",
           "/a/%2e%2e/%2e%2e/%2e%2e/config.json", "/a//../b", "/a/..\\..\\config.json", ""]
    for path in bad:
        for url, kwargs in [
            ("get-status", {"params": {"path": path}}),
            ("list", {"params": {"path": path}}),
            ("read", {"params": {"path": path}}),
        ]:
            resp = requests.get(f"{databricks_ws.url}/api/2.0/dbfs/{url}", headers=headers, timeout=60, **kwargs)
            assert resp.status_code == 400, (url, path, resp.text)
            assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        for url, body in [
            ("put", {"path": path, "contents": base64.b64encode(b"owned").decode(), "overwrite": True}),
            ("create", {"path": path, "overwrite": True}),
            ("mkdirs", {"path": path}),
            ("delete", {"path": path, "recursive": True}),
        ]:
            resp = requests.post(f"{databricks_ws.url}/api/2.0/dbfs/{url}", json=body, headers=headers, timeout=60)
            assert resp.status_code == 400, (url, path, resp.text)
    # MLflow's raw /dbfs/<path> transport too.
    for path in ("/dbfs/../config.json", "/dbfs/a/%2e%2e/%2e%2e/%2e%2e/config.json"):
        assert raw(databricks_ws, "GET", path)[0] == 400
        assert raw(databricks_ws, "POST", path, b"owned")[0] == 400
    assert snapshot(state) == before


def test_dbfs_api_with_the_sdk(databricks_ws, sdk, run):
    sdk.dbfs.mkdirs("/tmp/emu/dir")
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MB blocks: create / add-block / close
    with sdk.dbfs.open("/tmp/emu/dir/data.bin", write=True, overwrite=True) as fh:
        fh.write(payload)
    assert sdk.dbfs.get_status("/tmp/emu/dir/data.bin").file_size == len(payload)
    with sdk.dbfs.download("dbfs:/tmp/emu/dir/data.bin") as fh:
        assert fh.read() == payload
    sdk.dbfs.upload("/tmp/emu/small.txt", io.BytesIO(b"small"), overwrite=True)
    sdk.dbfs.put("/tmp/emu/put.txt", contents=base64.b64encode(b"put").decode(), overwrite=True)
    assert base64.b64decode(sdk.dbfs.read("/tmp/emu/put.txt").data) == b"put"
    names = sorted(f.path for f in sdk.dbfs.list("/tmp/emu"))
    assert names == ["/tmp/emu/dir", "/tmp/emu/put.txt", "/tmp/emu/small.txt"]
    assert sdk.dbfs.exists("/tmp/emu/small.txt") and not sdk.dbfs.exists("/tmp/emu/nope")
    with pytest.raises(Exception, match="already exists"):
        sdk.dbfs.put("/tmp/emu/put.txt", contents=base64.b64encode(b"again").decode(), overwrite=False)
    sdk.dbfs.delete("/tmp/emu", recursive=True)
    with pytest.raises(NotFound):
        sdk.dbfs.get_status("/tmp/emu")
    # MLflow's artifacts are the same files on DBFS, as in a workspace.
    notes = f"dbfs:/databricks/mlflow-tracking/{run.info.experiment_id}/{run.info.run_id}/artifacts/notes.txt"
    assert base64.b64decode(sdk.dbfs.read(notes).data) == b"inside"


def test_dbfs_artifact_location_outside_the_tracking_root(databricks_ws):
    exp_id = mlflow.create_experiment(f"/Users/{databricks_ws.user}/custom-location", artifact_location="dbfs:/custom/loc")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_text("hello", "d/x.txt")
    assert [f.path for f in MlflowClient().list_artifacts(run.info.run_id, "d")] == ["d/x.txt"]
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="d/x.txt")
    with open(path) as fh:
        assert fh.read() == "hello"


def test_signed_model_download_urls_are_checked(databricks_ws, run):
    from sklearn.linear_model import LinearRegression

    mlflow.set_experiment(f"/Users/{databricks_ws.user}/storage")
    with mlflow.start_run():
        mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="m",
                                 registered_model_name="signed-model")
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    params = {"name": "signed-model", "version": "1", "path": "MLmodel"}
    signed = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/model-versions/get-signed-download-uri", params=params,
                          headers=headers, timeout=60).json()["signed_uri"]
    assert requests.get(signed, timeout=60).status_code == 200  # no token needed: it is signed
    assert requests.get(signed.replace("path=MLmodel", "path=model.pkl"), timeout=60).status_code == 403
    assert requests.get(signed[:-4] + "0000", timeout=60).status_code == 403
    listing = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/model-versions/list-artifacts",
                           params={**params, "path": "../../.."}, headers=headers, timeout=60)
    assert listing.status_code == 400
    missing = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/model-versions/list-artifacts",
                           params={"name": "signed-model", "version": "9"}, headers=headers, timeout=60)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_55_mb_artifact_uploads_through_the_client(databricks_ws, tmp_path):
    big = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(big, "wb") as fh:
        for i in range(55):
            block = chunk[i:] + chunk[:i]
            fh.write(block)
            digest.update(block)
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/big-files")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(big))  # >= 50 MiB: the SDK tries a multipart upload first
    (info,) = MlflowClient().list_artifacts(run.info.run_id)
    assert info.path == "big.bin" and info.file_size == 55 * 1024 * 1024
    out = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="big.bin",
                                              dst_path=str(tmp_path / "out"))
    check = hashlib.sha256()
    with open(out, "rb") as fh:
        while block := fh.read(1024 * 1024):
            check.update(block)
    assert check.hexdigest() == digest.hexdigest()


def test_server_side_artifact_routes_read_dbfs_locations(databricks_ws):
    """Routes a stock server answers with a 500 for dbfs:/ roots (client fallback, UI)."""
    from sklearn.linear_model import LinearRegression

    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/server-routes")
    with mlflow.start_run() as run:
        mlflow.log_text("viewed", "docs/readme.txt")
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="m",
                                        registered_model_name="ui-model")
    get = lambda route, **params: requests.get(f"{databricks_ws.url}{route}", params=params, headers=headers, timeout=60)
    listing = get("/api/2.0/mlflow/artifacts/list", run_id=run.info.run_id, path="docs").json()
    assert listing["files"] == [{"path": "docs/readme.txt", "is_dir": False, "file_size": 6}]
    assert get("/get-artifact", run_uuid=run.info.run_id, path="docs/readme.txt").content == b"viewed"
    model_files = get(f"/api/2.0/mlflow/logged-models/{info.model_id}/artifacts/directories").json()["files"]
    assert "MLmodel" in {f["path"] for f in model_files}
    mlmodel = get(f"/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts/files", artifact_file_path="MLmodel")
    assert mlmodel.status_code == 200 and b"sklearn" in mlmodel.content
    version = get("/model-versions/get-artifact", name="ui-model", version="1", path="MLmodel")
    assert version.status_code == 200 and version.content == mlmodel.content
    assert get("/get-artifact", run_uuid=run.info.run_id, path="../../x").status_code == 400


@pytest.mark.parametrize("discovery", [False, True], ids=["default-order", "endpoints-api"])
def test_files_sdk_takes_the_plain_path_without_warnings(databricks_ws, caplog, discovery):
    """The SDK's transfers reach the workspace's Files API without warnings or presigned-URL detours."""
    cfg = Config(host=databricks_ws.url, token=databricks_ws.token, retry_timeout_seconds=60)
    cfg.experimental_files_ext_enable_endpoints_api = discovery  # no env var or kwarg sets it
    files = WorkspaceClient(config=cfg).files
    caplog.set_level(logging.DEBUG, logger="databricks.sdk")
    files.upload("/Volumes/cat/schema/vol/plain.txt", io.BytesIO(b"plain"), overwrite=True)
    assert files.download("/Volumes/cat/schema/vol/plain.txt").contents.read() == b"plain"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    detours = [m for m in caplog.messages if "create-download-url" in m]
    walks = [m for m in caplog.messages if "trying the next endpoint" in m]
    if discovery:
        # The workspace lists only its own Files API 2.0, so the SDK never asks for presigned URLs.
        assert detours == [] and walks == []
    else:
        # The built-in order tries presigned URLs first; the 404 names the file and the SDK moves on at once.
        assert len(walks) == 1 and "not found: /Volumes/cat/schema/vol/plain.txt" in walks[0]


def test_dbfs_repeated_slashes_name_one_separator(databricks_ws, sdk):
    """MLflow writes 'tmp-external-source//<run>/...' (its root ends with '/'): DBFS takes '//' as '/'."""
    sdk.dbfs.put("/databricks/mlflow/tmp-external-source//r1//MLmodel", contents=base64.b64encode(b"x").decode(),
                 overwrite=True)
    assert sdk.dbfs.get_status("/databricks/mlflow/tmp-external-source/r1/MLmodel").file_size == 1
    assert [f.path for f in sdk.dbfs.list("dbfs:/databricks//mlflow/tmp-external-source/r1")] == [
        "/databricks/mlflow/tmp-external-source/r1/MLmodel"]
    for path in ("/databricks/mlflow//../../escape.txt", "/databricks/./x"):  # still refused
        status, _ = raw(databricks_ws, "POST", "/api/2.0/dbfs/put",
                        json.dumps({"path": path, "contents": "eA==", "overwrite": True}).encode())
        assert status == 400, path


def test_model_tracked_in_azureml_registers_in_the_databricks_registry(emulator, databricks_ws, monkeypatch,
                                                                      tmp_path):
    """MlflowClient(tracking=Azure ML, registry=databricks).create_model_version copies the files to
    DBFS (MLflow's _upload_artifacts_to_databricks) and the workspace registry serves the version.
    It was refused: the client's DBFS paths hold '//'."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_experiment("tracked-in-azureml")
    X = np.arange(8, dtype=float).reshape(-1, 1)
    mlflow.sklearn.save_model(LinearRegression().fit(X, X.ravel() * 3), tmp_path / "model")
    with mlflow.start_run() as aml_run:  # the run's own artifacts, as MLflow 2.x log_model lays them out
        mlflow.log_artifacts(str(tmp_path / "model"), "model")
    client = MlflowClient(tracking_uri=aml.tracking_uri, registry_uri="databricks")
    client.create_registered_model("tracked_in_azureml")
    version = client.create_model_version("tracked_in_azureml", f"{aml_run.info.artifact_uri}/model",
                                          run_id=aml_run.info.run_id)
    assert version.source.startswith("dbfs:/databricks/mlflow/tmp-external-source/")
    assert client.get_model_version("tracked_in_azureml", version.version).status == "READY"
    mlflow.set_tracking_uri("databricks")
    model = mlflow.pyfunc.load_model(f"models:/tracked_in_azureml/{version.version}")
    assert model.predict(np.array([[2.0]]))[0] == pytest.approx(6.0)
