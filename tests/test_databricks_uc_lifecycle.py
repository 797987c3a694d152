"""Unity Catalog model files over time: credentials that expire (and the client's refresh path),
files that survive `emulator down` / `up` although moto keeps S3 in memory, and reset in place.

Its own emulator: the workspace issues credentials that live TTL seconds (EMULATOR_UC_CREDENTIAL_TTL).
"""

import json
import subprocess
import sys
import time
from types import SimpleNamespace

import boto3
import mlflow
import numpy as np
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

from harness.workspaces import Emulator

TTL = 3
UC = "/api/2.0/mlflow/unity-catalog"
X = np.random.default_rng(2).random((20, 3))
MODEL = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def uc_emu(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMULATOR_UC_CREDENTIAL_TTL", str(TTL))
        emu = Emulator(tmp_path_factory.mktemp("uc-state")).up()
        yield emu
        emu.down()


@pytest.fixture(scope="module")
def ws(uc_emu):
    workspace = uc_emu.databricks
    with pytest.MonkeyPatch.context() as mp:
        for key, value in workspace.env.items():
            mp.setenv(key, value)
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks-uc")
        from databricks.sdk import WorkspaceClient

        WorkspaceClient(host=workspace.url, token=workspace.token).workspace.mkdirs(f"/Users/{workspace.user}/uc")
        mlflow.set_experiment(f"/Users/{workspace.user}/uc/lifecycle")
        yield workspace
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


def _post(ws, path, body):
    resp = requests.post(f"{ws.url}{UC}/{path}", json=body, headers={"Authorization": f"Bearer {ws.token}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_status_json_prints_the_clients_environment(uc_emu):
    out = subprocess.run([sys.executable, "-m", "emulator.control.cli", "status", "--json", "--state-dir", str(uc_emu.state.root)],
                         capture_output=True, text=True, timeout=120)
    info = json.loads(out.stdout)
    env = info["databricks"]["client_env"]
    assert env == {"DATABRICKS_HOST": info["databricks"]["url"], "DATABRICKS_TOKEN": info["databricks"]["token"],
                   "MLFLOW_S3_ENDPOINT_URL": uc_emu.databricks.s3_url}
    assert info["s3"]["healthy"] is True


def test_expired_credentials_are_refused_and_the_clients_refresh_recovers(ws, tmp_path):
    client = MlflowClient()
    client.create_registered_model("main.default.ttl")
    mv = _post(ws, "model-versions/create", {"name": "main.default.ttl", "source": "local"})["model_version"]
    mlflow.sklearn.save_model(MODEL, tmp_path / "model", signature=infer_signature(X, MODEL.predict(X)))

    # The UC store's own upload repository, with its own credential-refresh function.
    store = client._get_registry_client().store
    repo = store._get_artifact_repo(SimpleNamespace(version=mv["version"], storage_location=mv["storage_location"]),
                                    "main.default.ttl")
    first = (repo._access_key_id, repo._secret_access_key, repo._session_token)
    time.sleep(TTL + 1.5)
    stale = boto3.client("s3", endpoint_url=ws.s3_url, aws_access_key_id=first[0], aws_secret_access_key=first[1],
                         aws_session_token=first[2], region_name="us-east-1", config=Config(signature_version="s3v4"))
    bucket, prefix = mv["storage_location"][5:].split("/", 1)
    with pytest.raises(ClientError) as err:
        stale.put_object(Bucket=bucket, Key=f"{prefix}/probe", Body=b"x")
    assert err.value.response["Error"]["Code"] == "ExpiredToken"

    repo.log_artifacts(str(tmp_path / "model"), "")  # first try refused as expired -> refreshed -> uploaded
    assert repo._session_token != first[2]
    _post(ws, "model-versions/finalize", {"name": "main.default.ttl", "version": mv["version"]})
    client.set_registered_model_alias("main.default.ttl", "champion", mv["version"])
    loaded = mlflow.pyfunc.load_model("models:/main.default.ttl@champion")
    assert np.allclose(loaded.predict(X), X @ [1.0, 2.0, 3.0])


def test_model_files_survive_down_and_up(ws, uc_emu):
    info = mlflow.sklearn.log_model(MODEL, name="model", registered_model_name="main.default.durable",
                                    signature=infer_signature(X, MODEL.predict(X)))
    version = str(info.registered_model_version)
    MlflowClient().set_registered_model_alias("main.default.durable", "prod", version)
    uc_emu.down()
    uc_emu.up()
    assert uc_emu.databricks.s3_url == ws.s3_url  # same address: MLFLOW_S3_ENDPOINT_URL stays valid
    for uri in (f"models:/main.default.durable/{version}", "models:/main.default.durable@prod", "models:/main.default.ttl/1"):
        assert np.allclose(mlflow.pyfunc.load_model(uri).predict(X), X @ [1.0, 2.0, 3.0]), uri
    # Still sealed after the restart: a new read-write credential is refused for a READY version.
    resp = requests.post(f"{ws.url}{UC}/model-versions/generate-temporary-credentials",
                         json={"name": "main.default.durable", "version": version,
                               "operation": "MODEL_VERSION_OPERATION_READ_WRITE"},
                         headers={"Authorization": f"Bearer {ws.token}"}, timeout=30)
    assert resp.status_code == 400


def test_registration_faults_apply_to_unity_catalog_versions(ws):
    """Pending between create and finalize; fault rules on create decide what finalize gives."""
    from harness.faults import inject_fault

    client, signature = MlflowClient(), infer_signature(X, MODEL.predict(X))
    client.create_registered_model("main.default.faulted")
    raw = _post(ws, "model-versions/create", {"name": "main.default.faulted", "source": "local"})["model_version"]
    assert client.get_model_version("main.default.faulted", raw["version"]).status == "PENDING_REGISTRATION"
    with inject_fault(ws, "POST", f"{UC}/model-versions/create", fail_registration="Model files failed checks.", times=1):
        failed = mlflow.sklearn.log_model(MODEL, name="model", registered_model_name="main.default.faulted",
                                          signature=signature)
    mv = client.get_model_version("main.default.faulted", str(failed.registered_model_version))
    assert (mv.status, mv.status_message) == ("FAILED_REGISTRATION", "Model files failed checks.")
    with inject_fault(ws, "POST", f"{UC}/model-versions/create", hold_pending_s=3, times=1):
        held = mlflow.sklearn.log_model(MODEL, name="model", registered_model_name="main.default.faulted",
                                        signature=signature)
    version = str(held.registered_model_version)
    assert client.get_model_version("main.default.faulted", version).status == "PENDING_REGISTRATION"
    deadline = time.monotonic() + 60
    while client.get_model_version("main.default.faulted", version).status != "READY":
        assert time.monotonic() < deadline, "the held version never became READY"
        time.sleep(0.5)
    loaded = mlflow.pyfunc.load_model(f"models:/main.default.faulted/{version}")
    assert np.allclose(loaded.predict(X), X @ [1.0, 2.0, 3.0])


def test_reset_in_place_empties_unity_catalog_and_its_files(ws, uc_emu):
    requests.post(f"{ws.url}/__emulator/reset", json={}, headers={"Authorization": f"Bearer {ws.token}"},
                  timeout=60).raise_for_status()
    with pytest.raises(MlflowException) as err:
        MlflowClient().get_registered_model("main.default.durable")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not any((uc_emu.state.root / "s3" / "objects").rglob("*"))
    # main.default is there again, and registering starts at version 1.
    mlflow.set_experiment(f"/Users/{ws.user}/after-reset")  # the reset emptied the tracking store too
    info = mlflow.sklearn.log_model(MODEL, name="model", registered_model_name="main.default.durable",
                                    signature=infer_signature(X, MODEL.predict(X)))
    assert str(info.registered_model_version) == "1"
