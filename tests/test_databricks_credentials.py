"""``artifacts/credentials-for-write|read`` and the logged-model ``credentials-for-upload|download``:
AZURE_SAS_URI credentials on the workspace's own blob endpoint, as MLflow before 3.4 (and 3.4+
with MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS) moves Databricks artifacts. Real mlflow
3.17.2 client for the transport; raw requests for what a client never sends."""

import hashlib
import os
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import mlflow
import pytest
import requests
from mlflow.azure.client import put_block, put_block_list

from emulator.services.blob import sas

FILES = "/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts"
MiB = 1024**2


def api(ws, path, body=None, token=True):
    headers = {"Authorization": f"Bearer {ws.token}"} if token else {}
    return requests.post(f"{ws.url}/api/2.0/mlflow/{path}", json=body, headers=headers, timeout=60)


def files_get(ws, path):
    return requests.get(f"{ws.url}{FILES}/{path}", headers={"Authorization": f"Bearer {ws.token}"}, timeout=60)


@pytest.fixture(scope="module")
def run(databricks_ws, sdk):
    sdk.workspace.mkdirs("/Users/someone@example.com/creds")
    mlflow.set_experiment("/Users/someone@example.com/creds/exp")
    with mlflow.start_run() as active:
        pass
    return active


def test_client_moves_run_artifacts_through_signed_blob_urls(databricks_ws, run, tmp_path, monkeypatch):
    # Without the routes this client fails at the first artifact (501 on credentials-for-write).
    monkeypatch.setenv("MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(1 * MiB))  # Put Block x4 + Put Block List
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE", str(1 * MiB))  # ranged GETs
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE", str(1 * MiB))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * MiB + 12345))
    (tmp_path / "folder" / "sub").mkdir(parents=True)
    (tmp_path / "folder" / "sub" / "a.txt").write_text("nested")
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_artifact(str(big), "data")
        mlflow.log_artifacts(str(tmp_path / "folder"), "folder")
        mlflow.log_text("hello", "notes.txt")
    exp, run_id = run.info.experiment_id, run.info.run_id
    # The same files the Files API serves (one storage for both transports).
    assert files_get(databricks_ws, f"{exp}/Runs/{run_id}/artifacts/data/big.bin").content == big.read_bytes()
    assert files_get(databricks_ws, f"{exp}/Runs/{run_id}/artifacts/folder/sub/a.txt").text == "nested"
    back = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "dl"))
    assert hashlib.sha256(open(f"{back}/data/big.bin", "rb").read()).digest() == hashlib.sha256(big.read_bytes()).digest()
    assert open(f"{back}/folder/sub/a.txt").read() == "nested"
    assert open(f"{back}/notes.txt").read() == "hello"


def test_credentials_answer_azure_sas_uris(databricks_ws, run):
    answer = api(databricks_ws, "artifacts/credentials-for-write", {"run_id": run.info.run_id, "path": ["x/y.txt"]})
    assert answer.status_code == 200, answer.text
    (info,) = answer.json()["credential_infos"]
    assert info["type"] == "AZURE_SAS_URI" and info["run_id"] == run.info.run_id and info["path"] == "x/y.txt"
    url = urlsplit(info["signed_uri"])
    # The configured address, path-style under the storage account's blob host.
    assert f"{url.scheme}://{url.netloc}" == databricks_ws.url
    assert ".blob.core.windows.net/mlflow-tracking/" in url.path and url.path.endswith("/artifacts/x/y.txt")
    query = dict(parse_qsl(url.query))
    assert query["sp"] == sas.WRITE and query["se"] and query["sig"]


def test_logged_model_credentials_round_trip(databricks_ws, run):
    model = mlflow.MlflowClient().create_logged_model(experiment_id=run.info.experiment_id)
    up = api(databricks_ws, f"logged-models/{model.model_id}/artifacts/credentials-for-upload", {"paths": ["m/w.bin"]})
    assert up.status_code == 200, up.text
    cred = up.json()["credentials"][0]["credential_info"]
    assert cred["type"] == "AZURE_SAS_URI"
    put_block(cred["signed_uri"], "YmxvY2sx", b"model-bytes", headers={})
    put_block_list(cred["signed_uri"], ["YmxvY2sx"], headers={})
    stored = files_get(databricks_ws, f"{run.info.experiment_id}/LoggedModels/{model.model_id}/artifacts/m/w.bin")
    assert stored.content == b"model-bytes"
    down = api(databricks_ws, f"logged-models/{model.model_id}/artifacts/credentials-for-download", {"paths": ["m/w.bin"]})
    read = down.json()["credentials"][0]["credential_info"]["signed_uri"]
    ranged = requests.get(read, headers={"x-ms-range": "bytes=6-10"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == b"bytes"
    assert api(databricks_ws, "logged-models/m-0000/artifacts/credentials-for-upload", {"paths": ["a"]}).status_code == 404


def test_bad_credential_requests_get_clear_4xx(databricks_ws, run):
    run_id = run.info.run_id
    assert api(databricks_ws, "artifacts/credentials-for-write", {"run_id": run_id, "path": ["a"]},
               token=False).status_code == 401
    missing = api(databricks_ws, "artifacts/credentials-for-read", {"run_id": "0" * 32, "path": ["a"]})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for body in ({"path": ["a"]}, {"run_id": run_id, "path": [1]}, {"run_id": run_id, "path": ["../../etc/passwd"]},
                 {"run_id": run_id, "path": ["a/%2e%2e/b", "../x"]}, {"run_id": run_id, "path": ["a//b"]}):
        answer = api(databricks_ws, "artifacts/credentials-for-write", body)
        assert answer.status_code == 400, (body, answer.status_code, answer.text)
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def _signed(ws, run, path, kind="write"):
    answer = api(ws, f"artifacts/credentials-for-{kind}", {"run_id": run.info.run_id, "path": [path]})
    return answer.json()["credential_infos"][0]["signed_uri"]


def test_blob_urls_grant_only_what_they_sign(databricks_ws, run, emulator):
    url = _signed(databricks_ws, run, "guarded.txt")
    parts = urlsplit(url)
    # Another blob under the same signature (path swap), with only the bearer token, or no SAS.
    swapped = urlunsplit(parts._replace(path=parts.path.replace("guarded.txt", "other.txt")))
    bare = urlunsplit(parts._replace(query=""))
    for target, headers in ((swapped, {}), (bare, {"Authorization": f"Bearer {databricks_ws.token}"})):
        answer = requests.put(target, data=b"x", headers={"x-ms-blob-type": "BlockBlob", **headers}, timeout=60)
        assert answer.status_code == 403 and answer.headers["x-ms-error-code"] == "AuthenticationFailed", answer.text
    # A read credential cannot write; an expired one is refused.
    read = _signed(databricks_ws, run, "guarded.txt", "read")
    answer = requests.put(read, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert answer.status_code == 403 and answer.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"
    account = parts.path.split("/")[1].split(".")[0]
    blob = parts.path.split("/mlflow-tracking/", 1)[1]
    expired = sas.sign(databricks_ws.token, account, "mlflow-tracking", blob, sas.WRITE, ttl=-60)
    answer = requests.put(urlunsplit(parts._replace(query=expired)), data=b"x",
                          headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert answer.status_code == 403
    # Signed by the workspace key for a run that does not exist: the owner check still refuses it.
    ghost = blob.replace(run.info.run_id, "f" * 32)
    query = sas.sign(databricks_ws.token, account, "mlflow-tracking", ghost, sas.WRITE)
    ghost_url = urlunsplit(parts._replace(path=parts.path.replace(blob, ghost), query=query))
    answer = requests.put(ghost_url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert answer.status_code == 404 and answer.headers["x-ms-error-code"] == "ResourceNotFound", answer.text
    assert not any("f" * 32 in str(p) for p in emulator.state.root.rglob("*"))
    # The granted one works, and the file is the run's artifact.
    assert requests.put(url, data=b"ok", headers={"x-ms-blob-type": "BlockBlob"}, timeout=60).status_code == 201
    assert mlflow.MlflowClient().download_artifacts(run.info.run_id, "guarded.txt")
