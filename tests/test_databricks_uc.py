"""The Unity Catalog model registry (``databricks-uc``, MLflow 3's default) through the real clients:
mlflow 3.17.2 (UC registry store, OptimizedS3ArtifactRepository over boto3), databricks-sdk, boto3."""

import json
import os
import subprocess
import sys
import textwrap

import boto3
import mlflow
import numpy as np
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from databricks.sdk.errors import NotFound
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

from emulator.services.databricks.uc.store import BAD_NAME

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

UC = "/api/2.0/mlflow/unity-catalog"

SEED = textwrap.dedent(
    """
    import json
    import mlflow, numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression
    X = np.random.default_rng(0).random((30, 3)); y = X @ [1.0, 2.0, 3.0]
    model = LinearRegression().fit(X, y)
    from databricks.sdk import WorkspaceClient
    WorkspaceClient().workspace.mkdirs("/Users/someone@example.com/uc")
    mlflow.set_tracking_uri("databricks")          # the registry is left at MLflow 3's default
    mlflow.set_experiment("/Users/someone@example.com/uc/exp")
    versions = []
    for _ in range(2):
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name="main.default.seed_model",
                                            signature=infer_signature(X, model.predict(X)))
            versions.append(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("main.default.seed_model", "champion", 1)
    print("RESULT " + json.dumps({
        "registry_uri": mlflow.get_registry_uri(),
        "versions": versions,
        "expected": y.tolist(),
        "v1": mlflow.pyfunc.load_model("models:/main.default.seed_model/1").predict(X).tolist(),
        "v2": mlflow.pyfunc.load_model("models:/main.default.seed_model/2").predict(X).tolist(),
        "alias": mlflow.pyfunc.load_model("models:/main.default.seed_model@champion").predict(X).tolist(),
        "status": [client.get_model_version("main.default.seed_model", v).status for v in (1, 2)],
        "location": client.get_model_version_download_uri("main.default.seed_model", 1),
    }))
    """
)


@pytest.fixture(scope="module")
def uc_client(databricks_ws):
    return MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc")


@pytest.fixture(scope="module")
def model_and_data():
    X = np.random.default_rng(1).random((20, 3))
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    return model, X


def _headers(ws):
    return {"Authorization": f"Bearer {ws.token}"}


def _register(model, X, name, **kwargs):
    mlflow.set_registry_uri("databricks-uc")
    try:
        with mlflow.start_run():
            return mlflow.sklearn.log_model(model, name="model", registered_model_name=name, **kwargs)
    finally:
        mlflow.set_registry_uri("databricks")


@pytest.fixture(scope="module")
def experiment(databricks_ws, sdk):
    sdk.workspace.mkdirs(f"/Users/{databricks_ws.user}/uc-tests")
    mlflow.set_experiment(f"/Users/{databricks_ws.user}/uc-tests/exp")


def test_seed_log_model_on_mlflow3_default_registry_gives_v1_then_v2_and_loads(databricks_ws):
    # A fresh interpreter with only the three variables `emulator status` prints (client_env).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_"))}
    env.update(databricks_ws.env)
    assert set(databricks_ws.env) == {"DATABRICKS_HOST", "DATABRICKS_TOKEN", "MLFLOW_S3_ENDPOINT_URL"}
    out = subprocess.run([sys.executable, "-c", SEED], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["registry_uri"] == "databricks-uc"
    assert result["versions"] == ["1", "2"] or result["versions"] == [1, 2]
    for key in ("v1", "v2", "alias"):
        assert np.allclose(result[key], result["expected"]), key
    assert result["status"] == ["READY", "READY"]
    assert result["location"].startswith("s3://uc-models/models/")


def test_two_level_name_is_the_real_bad_model_name_with_the_clients_hint(uc_client, databricks_ws):
    with pytest.raises(MlflowException) as err:
        uc_client.create_registered_model("default.model_name")
    assert BAD_NAME in str(err.value) and "set the Model Registry URI to 'databricks'" in str(err.value)
    raw = requests.get(f"{databricks_ws.url}{UC}/registered-models/get", params={"name": "a.b.c.d"},
                       headers=_headers(databricks_ws), timeout=60)
    assert raw.status_code == 400 and raw.json() == {"error_code": "INVALID_PARAMETER_VALUE", "message": BAD_NAME}


def test_catalog_and_schema_must_exist_and_come_from_the_catalog_api(uc_client, sdk):
    with pytest.raises(MlflowException) as err:
        uc_client.create_registered_model("nocat.default.m")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "Catalog 'nocat' does not exist." in str(err.value)
    with pytest.raises(MlflowException) as err:
        uc_client.create_registered_model("main.noschema.m")
    assert "Schema 'main.noschema' does not exist." in str(err.value)

    assert "main" in [c.name for c in sdk.catalogs.list()]
    assert sdk.schemas.get("main.default").full_name == "main.default"
    sdk.catalogs.create(name="ml")
    with pytest.raises(NotFound):
        sdk.schemas.get("ml.prod")
    sdk.schemas.create(name="prod", catalog_name="ml")
    assert [s.name for s in sdk.schemas.list(catalog_name="ml")] == ["prod"]
    created = uc_client.create_registered_model("ML.Prod.Churn", description="d")
    assert created.name == "ml.prod.churn"  # Unity Catalog keeps names lowercase
    with pytest.raises(MlflowException) as err:
        uc_client.get_registered_model("ml.prod.missing")
    assert "Routine or Model 'ml.prod.missing' does not exist." in str(err.value)


def test_model_without_signature_is_refused_as_unity_catalog_does(experiment, model_and_data, uc_client):
    model, X = model_and_data
    with pytest.raises(MlflowException) as err:
        _register(model, X, "main.default.no_signature")
    assert "Model passed for registration did not contain any signature metadata" in str(err.value)
    assert uc_client.search_model_versions("name='main.default.no_signature'") == []


def test_stages_are_refused_aliases_work(experiment, model_and_data, uc_client):
    model, X = model_and_data
    _register(model, X, "main.default.staged", signature=infer_signature(X, model.predict(X)))
    with pytest.raises(MlflowException) as err:
        uc_client.transition_model_version_stage("main.default.staged", 1, "Production")
    assert "Method 'transition_model_version_stage' is unsupported for models in the Unity Catalog" in str(err.value)
    mlflow.set_registry_uri("databricks-uc")
    try:
        with pytest.raises(MlflowException) as err:
            mlflow.pyfunc.load_model("models:/main.default.staged/Production")
        assert "unsupported in Unity Catalog" in str(err.value)
        uc_client.set_registered_model_alias("main.default.staged", "prod", 1)
        assert uc_client.get_model_version_by_alias("main.default.staged", "prod").version == "1"
        assert uc_client.get_registered_model("main.default.staged").aliases == {"prod": "1"}
        assert np.allclose(mlflow.pyfunc.load_model("models:/main.default.staged@prod").predict(X), X @ [1.0, 2.0, 3.0])
        uc_client.delete_registered_model_alias("main.default.staged", "prod")
        with pytest.raises(MlflowException) as err:
            uc_client.get_model_version_by_alias("main.default.staged", "prod")
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    finally:
        mlflow.set_registry_uri("databricks")


def test_registry_crud_tags_rename_search_delete(experiment, model_and_data, uc_client):
    model, X = model_and_data
    sig = infer_signature(X, model.predict(X))
    for _ in range(2):
        _register(model, X, "main.default.crud", signature=sig)
    uc_client.set_registered_model_tag("main.default.crud", "team", "ml")
    uc_client.set_model_version_tag("main.default.crud", 2, "validated", "yes")
    uc_client.update_model_version("main.default.crud", 2, description="second")
    mv = uc_client.get_model_version("main.default.crud", 2)
    assert mv.tags == {"validated": "yes"} and mv.description == "second" and mv.status == "READY"
    assert uc_client.get_registered_model("main.default.crud").tags == {"team": "ml"}
    uc_client.delete_model_version_tag("main.default.crud", "2", "validated")  # the client needs a str here
    uc_client.delete_registered_model_tag("main.default.crud", "team")
    assert uc_client.get_model_version("main.default.crud", 2).tags == {}
    assert sorted(v.version for v in uc_client.search_model_versions("name='main.default.crud'")) == ["1", "2"]
    run_id = uc_client.get_model_version("main.default.crud", 1).run_id
    assert [v.version for v in uc_client.search_model_versions(f"run_id='{run_id}'")] == ["1"]
    assert "main.default.crud" in [m.name for m in uc_client.search_registered_models()]
    uc_client.create_registered_model("main.default.crud_other")
    page = uc_client.search_registered_models(max_results=1)
    assert len(page) == 1 and page.token

    uc_client.rename_registered_model("main.default.crud", "main.default.crud2")
    mlflow.set_registry_uri("databricks-uc")
    try:
        assert np.allclose(mlflow.pyfunc.load_model("models:/main.default.crud2/2").predict(X), X @ [1.0, 2.0, 3.0])
    finally:
        mlflow.set_registry_uri("databricks")
    uc_client.delete_model_version("main.default.crud2", 1)
    with pytest.raises(MlflowException) as err:
        uc_client.get_model_version("main.default.crud2", 1)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    # A deleted number is not handed out again: the next registration is version 3.
    assert _register(model, X, "main.default.crud2", signature=sig).registered_model_version in (3, "3")
    uc_client.delete_registered_model("main.default.crud2")
    with pytest.raises(MlflowException):
        uc_client.get_registered_model("main.default.crud2")


def _s3(ws, creds):
    aws = creds["aws_temp_credentials"]
    return boto3.client("s3", endpoint_url=ws.s3_url, aws_access_key_id=aws["access_key_id"],
                        aws_secret_access_key=aws["secret_access_key"], aws_session_token=aws.get("session_token"),
                        region_name="us-east-1", config=Config(signature_version="s3v4"))


def _credentials(ws, name, version, operation):
    return requests.post(f"{ws.url}{UC}/model-versions/generate-temporary-credentials",
                         json={"name": name, "version": str(version), "operation": operation},
                         headers=_headers(ws), timeout=60)


def test_files_are_written_once_by_the_holder_of_the_versions_credentials(databricks_ws, uc_client):
    ws = databricks_ws
    uc_client.create_registered_model("main.default.raw")
    created = []
    for _ in range(2):
        resp = requests.post(f"{ws.url}{UC}/model-versions/create", json={"name": "main.default.raw", "source": "x"},
                             headers=_headers(ws), timeout=60)
        assert resp.status_code == 200, resp.text
        created.append(resp.json()["model_version"])
    assert created[0]["status"] == "PENDING_REGISTRATION"
    bucket, prefix = created[0]["storage_location"][5:].split("/", 1)
    other_prefix = created[1]["storage_location"][5:].split("/", 1)[1]

    rw = _credentials(ws, "main.default.raw", 1, "MODEL_VERSION_OPERATION_READ_WRITE")
    assert rw.status_code == 200 and rw.json()["credentials"]["storage_mode"] == "CUSTOMER_HOSTED"
    s3 = _s3(ws, rw.json()["credentials"])
    s3.put_object(Bucket=bucket, Key=f"{prefix}/MLmodel", Body=b"v1")
    with pytest.raises(ClientError) as err:  # another version's prefix
        s3.put_object(Bucket=bucket, Key=f"{other_prefix}/MLmodel", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"

    read = _s3(ws, _credentials(ws, "main.default.raw", 1, "MODEL_VERSION_OPERATION_READ").json()["credentials"])
    assert read.get_object(Bucket=bucket, Key=f"{prefix}/MLmodel")["Body"].read() == b"v1"
    with pytest.raises(ClientError) as err:
        read.put_object(Bucket=bucket, Key=f"{prefix}/MLmodel", Body=b"changed")
    assert err.value.response["Error"]["Code"] == "AccessDenied"

    forged = {"aws_temp_credentials": dict(rw.json()["credentials"]["aws_temp_credentials"], secret_access_key="x" * 40)}
    with pytest.raises(ClientError) as err:
        _s3(ws, forged).get_object(Bucket=bucket, Key=f"{prefix}/MLmodel")
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    anonymous = requests.get(f"{ws.s3_url}/{bucket}/{prefix}/MLmodel", timeout=60)
    assert anonymous.status_code == 403 and b"AccessDenied" in anonymous.content

    finalized = requests.post(f"{ws.url}{UC}/model-versions/finalize", json={"name": "main.default.raw", "version": "1"},
                              headers=_headers(ws), timeout=60)
    assert finalized.json()["model_version"]["status"] == "READY"
    # fidelity: immutable after finalize, even with a read-write credential that has not expired
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/MLmodel", Body=b"changed")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key=f"{prefix}/MLmodel")
    assert read.get_object(Bucket=bucket, Key=f"{prefix}/MLmodel")["Body"].read() == b"v1"
    again = _credentials(ws, "main.default.raw", 1, "MODEL_VERSION_OPERATION_READ_WRITE")
    assert again.status_code == 400 and "PENDING_REGISTRATION" in again.json()["message"]


def test_bad_input_is_4xx_never_5xx(databricks_ws):
    ws = databricks_ws
    cases = [
        ("post", "registered-models/create", {"json": {"name": 5}}),
        ("post", "registered-models/create", {"data": "not json", "headers": {"Content-Type": "application/json"}}),
        ("post", "registered-models/create", {"json": ["a"]}),
        ("post", "model-versions/create", {"json": {"name": "main.default.none", "source": "x"}}),
        ("get", "model-versions/get", {"params": {"name": "main.default.none", "version": "abc"}}),
        ("post", "model-versions/generate-temporary-credentials", {"json": {"name": "main.default.none", "version": "1", "operation": "X"}}),
        ("get", "model-versions/search", {"params": {"filter": "name LIKE 'x%'"}}),
        ("get", "registered-models/search", {"params": {"max_results": "-1"}}),
    ]
    for method, path, kwargs in cases:
        headers = {**_headers(ws), **kwargs.pop("headers", {})}
        resp = getattr(requests, method)(f"{ws.url}{UC}/{path}", headers=headers, timeout=60, **kwargs)
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text)
        assert set(resp.json()) == {"error_code", "message"}, resp.text
    assert requests.get(f"{ws.url}{UC}/registered-models/search", timeout=60).status_code == 401


def test_registry_increments_check_accepts_uc_version_and_alias_uris(experiment, model_and_data, uc_client):
    from harness.checks import check_registry_increments

    model, X = model_and_data
    _register(model, X, "main.default.source_model", signature=infer_signature(X, model.predict(X)))
    uc_client.set_registered_model_alias("main.default.source_model", "champion", 1)
    # The process-wide registry stays "databricks" (the fixture's): the check resolves the models:/ URI in
    # the registry it checks, Unity Catalog.
    assert mlflow.get_registry_uri() == "databricks"
    for name, source in (("main.default.copy_by_version", "models:/main.default.source_model/1"),
                         ("main.default.copy_by_alias", "models:/main.default.source_model@champion")):
        result = check_registry_increments(uc_client, name, source, registrations=2)
        assert result.passed, result.summary()
        assert result.details["versions"] == [1, 2]
    assert mlflow.get_registry_uri() == "databricks"


def test_logged_model_of_another_tracking_server_is_refused(databricks_ws, uc_client, tmp_path):
    """MLflow 3.1 (as 3.0-3.4) sends the model_id of a model logged to a local tracking server."""
    from harness.fault_scenarios import run_locally_tracked

    result = run_locally_tracked(databricks_ws, "main.default.locally_tracked", tmp_path)
    assert result.get("error_code") == "RESOURCE_DOES_NOT_EXIST", result
    assert f"Logged model with ID '{result['model_id']}' does not exist" in result["message"]
    assert uc_client.search_model_versions("name = 'main.default.locally_tracked'") == []
    # Raw: a run that claims this workspace but is not in it; a run of another server is recorded.
    uc_client.create_registered_model("main.default.lineage_raw")
    create = f"{databricks_ws.url}{UC}/model-versions/create"
    org_id = requests.get(f"{databricks_ws.url}/api/2.0/mlflow/experiments/search?max_results=1",
                          headers=_headers(databricks_ws), timeout=60).headers["x-databricks-org-id"]
    claimed = requests.post(create, json={"name": "main.default.lineage_raw", "source": "x", "run_id": "f" * 32,
                                          "run_tracking_server_id": org_id}, headers=_headers(databricks_ws), timeout=60)
    assert claimed.status_code == 404 and claimed.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", claimed.text
    foreign = requests.post(create, json={"name": "main.default.lineage_raw", "source": "x", "run_id": "f" * 32},
                            headers=_headers(databricks_ws), timeout=60)
    assert foreign.status_code == 200 and foreign.json()["model_version"]["version"] in ("1", 1), foreign.text
