"""Databricks file storage: Files API and DBFS paths can't escape, DBFS via the SDK, big uploads."""

import base64
import hashlib
import http.client
import io
import json
import os
from urllib.parse import urlparse

import mlflow
import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import NotFound
from mlflow import MlflowClient


@pytest.fixture(scope="module")
def ws(emulator):
    ws = emulator.databricks
    saved = {k: os.environ.get(k) for k in ("DATABRICKS_HOST", "DATABRICKS_TOKEN")}
    os.environ.update(ws.env)
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")
    yield ws
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def w(ws):
    # A short retry budget: a workspace that is down fails the test in a minute, not five per call.
    return WorkspaceClient(config=Config(host=ws.url, token=ws.token, retry_timeout_seconds=60))


@pytest.fixture(scope="module")
def run(ws):
    mlflow.set_experiment(f"/Users/{ws.user}/storage")
    with mlflow.start_run() as run:
        mlflow.log_text("inside", "notes.txt")
    return run


def raw(ws, method, path, body=b""):
    """A request with the path sent exactly as written (requests/urllib3 would normalize dots)."""
    netloc = urlparse(ws.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=10)
    conn.request(method, path, body=body, headers={"Authorization": f"Bearer {ws.token}"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_files_api_paths_cannot_escape(ws, run, emulator):
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
            status, data = raw(ws, method, path, b"owned" if method == "PUT" else b"")
            assert status == 400, (method, path, status, data)
            if method != "HEAD":
                assert json.loads(data)["error_code"] == "INVALID_PARAMETER_VALUE"
    assert snapshot(state) == before  # nothing written anywhere in the state dir
    assert not (state.parent / "escape.txt").exists()
    # The legitimate path next to them works.
    assert raw(ws, "GET", f"{base}/notes.txt") == (200, b"inside")


def test_symlinks_are_not_followed(ws, emulator, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    volumes = emulator.state.root / "databricks" / "volumes" / "cat" / "schema" / "vol"
    volumes.mkdir(parents=True, exist_ok=True)
    (volumes / "link.txt").symlink_to(secret)
    (volumes / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    for path in ("/api/2.0/fs/files/Volumes/cat/schema/vol/link.txt",
                 "/api/2.0/fs/files/Volumes/cat/schema/vol/linkdir/secret.txt"):
        assert raw(ws, "GET", path)[0] == 400
        assert raw(ws, "PUT", path, b"overwritten")[0] == 400
    status, data = raw(ws, "GET", "/api/2.0/dbfs/read?path=/databricks/mlflow-tracking/../volumes/cat/schema/vol/link.txt")
    assert status == 400
    dbfs_root = emulator.state.root / "databricks" / "dbfs"
    dbfs_root.mkdir(exist_ok=True)
    (dbfs_root / "dbfs-link.txt").symlink_to(secret)
    assert raw(ws, "GET", "/api/2.0/dbfs/read?path=/dbfs-link.txt")[0] == 400
    assert raw(ws, "GET", "/dbfs/dbfs-link.txt")[0] == 400
    assert secret.read_text() == "outside"
    # Listings skip links.
    w = WorkspaceClient(host=ws.url, token=ws.token)
    assert [e.name for e in w.files.list_directory_contents("/Volumes/cat/schema/vol")] == []


def test_dbfs_paths_cannot_escape(ws, emulator):
    headers = {"Authorization": f"Bearer {ws.token}"}
    state = emulator.state.root
    before = snapshot(state)
    bad = ["/../config.json", "dbfs:/../../config.json", "relative/path", "/databricks/mlflow-tracking/../../config.json",
           "/a/%2e%2e/%2e%2e/%2e%2e/config.json", "/a//b", "/a/..\\..\\config.json", ""]
    for path in bad:
        for url, kwargs in [
            ("get-status", {"params": {"path": path}}),
            ("list", {"params": {"path": path}}),
            ("read", {"params": {"path": path}}),
        ]:
            resp = requests.get(f"{ws.url}/api/2.0/dbfs/{url}", headers=headers, timeout=10, **kwargs)
            assert resp.status_code == 400, (url, path, resp.text)
            assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        for url, body in [
            ("put", {"path": path, "contents": base64.b64encode(b"owned").decode(), "overwrite": True}),
            ("create", {"path": path, "overwrite": True}),
            ("mkdirs", {"path": path}),
            ("delete", {"path": path, "recursive": True}),
        ]:
            resp = requests.post(f"{ws.url}/api/2.0/dbfs/{url}", json=body, headers=headers, timeout=10)
            assert resp.status_code == 400, (url, path, resp.text)
    # MLflow's raw /dbfs/<path> transport too.
    for path in ("/dbfs/../config.json", "/dbfs/a/%2e%2e/%2e%2e/%2e%2e/config.json"):
        assert raw(ws, "GET", path)[0] == 400
        assert raw(ws, "POST", path, b"owned")[0] == 400
    assert snapshot(state) == before


def test_dbfs_api_with_the_sdk(ws, w, run):
    w.dbfs.mkdirs("/tmp/emu/dir")
    payload = os.urandom(3 * 1024 * 1024 + 17)  # several 1 MB blocks: create / add-block / close
    with w.dbfs.open("/tmp/emu/dir/data.bin", write=True, overwrite=True) as fh:
        fh.write(payload)
    assert w.dbfs.get_status("/tmp/emu/dir/data.bin").file_size == len(payload)
    with w.dbfs.download("dbfs:/tmp/emu/dir/data.bin") as fh:
        assert fh.read() == payload
    w.dbfs.upload("/tmp/emu/small.txt", io.BytesIO(b"small"), overwrite=True)
    w.dbfs.put("/tmp/emu/put.txt", contents=base64.b64encode(b"put").decode(), overwrite=True)
    assert base64.b64decode(w.dbfs.read("/tmp/emu/put.txt").data) == b"put"
    names = sorted(f.path for f in w.dbfs.list("/tmp/emu"))
    assert names == ["/tmp/emu/dir", "/tmp/emu/put.txt", "/tmp/emu/small.txt"]
    assert w.dbfs.exists("/tmp/emu/small.txt") and not w.dbfs.exists("/tmp/emu/nope")
    with pytest.raises(Exception, match="already exists"):
        w.dbfs.put("/tmp/emu/put.txt", contents=base64.b64encode(b"again").decode(), overwrite=False)
    w.dbfs.delete("/tmp/emu", recursive=True)
    with pytest.raises(NotFound):
        w.dbfs.get_status("/tmp/emu")
    # MLflow's artifacts are the same files on DBFS, as in a workspace.
    notes = f"dbfs:/databricks/mlflow-tracking/{run.info.experiment_id}/{run.info.run_id}/artifacts/notes.txt"
    assert base64.b64decode(w.dbfs.read(notes).data) == b"inside"


def test_dbfs_artifact_location_outside_the_tracking_root(ws):
    exp_id = mlflow.create_experiment(f"/Users/{ws.user}/custom-location", artifact_location="dbfs:/custom/loc")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_text("hello", "d/x.txt")
    assert [f.path for f in MlflowClient().list_artifacts(run.info.run_id, "d")] == ["d/x.txt"]
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="d/x.txt")
    with open(path) as fh:
        assert fh.read() == "hello"


def test_signed_model_download_urls_are_checked(ws, run):
    from sklearn.linear_model import LinearRegression

    mlflow.set_experiment(f"/Users/{ws.user}/storage")
    with mlflow.start_run():
        mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="m",
                                 registered_model_name="signed-model")
    headers = {"Authorization": f"Bearer {ws.token}"}
    params = {"name": "signed-model", "version": "1", "path": "MLmodel"}
    signed = requests.get(f"{ws.url}/api/2.0/mlflow/model-versions/get-signed-download-uri", params=params,
                          headers=headers, timeout=10).json()["signed_uri"]
    assert requests.get(signed, timeout=10).status_code == 200  # no token needed: it is signed
    assert requests.get(signed.replace("path=MLmodel", "path=model.pkl"), timeout=10).status_code == 403
    assert requests.get(signed[:-4] + "0000", timeout=10).status_code == 403
    listing = requests.get(f"{ws.url}/api/2.0/mlflow/model-versions/list-artifacts",
                           params={**params, "path": "../../.."}, headers=headers, timeout=10)
    assert listing.status_code == 400
    missing = requests.get(f"{ws.url}/api/2.0/mlflow/model-versions/list-artifacts",
                           params={"name": "signed-model", "version": "9"}, headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_55_mb_artifact_uploads_through_the_client(ws, tmp_path):
    big = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(big, "wb") as fh:
        for i in range(55):
            block = chunk[i:] + chunk[:i]
            fh.write(block)
            digest.update(block)
    mlflow.set_experiment(f"/Users/{ws.user}/big-files")
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


def test_server_side_artifact_routes_read_dbfs_locations(ws):
    """Routes a stock server answers with a 500 for dbfs:/ roots (client fallback, UI)."""
    from sklearn.linear_model import LinearRegression

    headers = {"Authorization": f"Bearer {ws.token}"}
    mlflow.set_experiment(f"/Users/{ws.user}/server-routes")
    with mlflow.start_run() as run:
        mlflow.log_text("viewed", "docs/readme.txt")
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="m",
                                        registered_model_name="ui-model")
    get = lambda route, **params: requests.get(f"{ws.url}{route}", params=params, headers=headers, timeout=10)
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
