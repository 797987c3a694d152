"""azure-ai-ml with a local model folder (issue 31, item 2): ``Model(path=<dir>)`` uploads through the
default datastore (``workspaceblobstore``: ARM datastores + listSecrets, azure-storage-blob uploads
with the upload-confirmation metadata) and registers a version pointing at it; a deployment of
``Model(path=...)`` serves it. The real clients run in the client venv with the real Azure host
names through the emulator's CONNECT proxy (arrangement A: azure-ai-ml builds the blob URL from the
account name and the cloud's storage suffix, so it needs the real name). Refusals are checked raw.
"""

from __future__ import annotations

import textwrap

import pytest
import requests

from tests.test_azureml_real_clients import (  # noqa: F401
    SEED_IDENTITY,
    client_python,
    run_client,
    seed_identity_emulator,
)

# Saves an MLflow model folder locally (no tracking server), as a user has one on disk.
MAKE_MODEL = '''
def make_model(folder, coef):
    import numpy as np, mlflow, sklearn
    from sklearn.linear_model import LinearRegression
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    model = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) * coef + 0.5)
    # Requirements given, not inferred (inferring loads the model in a subprocess: ~20 s a save).
    mlflow.sklearn.save_model(model, folder, pip_requirements=[f"mlflow=={mlflow.__version__}",
                                                               f"scikit-learn=={sklearn.__version__}"])
    return folder
'''

# The Azure ML docs' form: register a local MLflow model folder, twice (versions 1 and 2), read it back.
REGISTER_LOCAL = textwrap.dedent('''
    import json, os, sys, time                                             # harness
    t0, took = time.monotonic(), {}                                        # harness
''') + MAKE_MODEL + textwrap.dedent('''
    from azure.ai.ml import MLClient
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    name = sys.argv[1]                                                     # harness
    took["imports"] = time.monotonic() - t0                                # harness
    v1 = ml_client.models.create_or_update(Model(path=make_model("model-a", 1.0), name=name,
                                                 type=AssetTypes.MLFLOW_MODEL, description="first",
                                                 tags={"team": "a"}))
    took["v1"] = time.monotonic() - t0                                     # harness
    v2 = ml_client.models.create_or_update(Model(path=make_model("model-b", 2.0), name=name,
                                                 type=AssetTypes.MLFLOW_MODEL))
    took["v2"] = time.monotonic() - t0                                     # harness
    again = ml_client.models.create_or_update(Model(path="model-a", name=name, type=AssetTypes.MLFLOW_MODEL))
    took["v3"] = time.monotonic() - t0                                     # harness
    got = ml_client.models.get(name=name, version=v1.version)
    ml_client.models.download(name=name, version=v2.version, download_path="downloaded")
    files = sorted(os.path.relpath(os.path.join(d, f), "downloaded")              # harness
                   for d, _, fs in os.walk("downloaded") for f in fs)              # harness
    took["download"] = time.monotonic() - t0                               # harness
    same = open(f"downloaded/{name}/model-b/MLmodel").read() == open("model-b/MLmodel").read()  # harness
    default = ml_client.datastores.get_default()
    print("RESULT " + json.dumps({
        "versions": [v1.version, v2.version, again.version], "paths": [v1.path, v2.path, again.path],
        "got": {"path": got.path, "type": got.type, "description": got.description, "tags": got.tags},
        "files": files, "same": same, "took": took, "datastore": {"name": default.name, "container": default.container_name,
                                      "account": default.account_name}}))
''')

# A deployment whose model is a local folder (an anonymous model asset), scored.
DEPLOY_LOCAL = textwrap.dedent('''
    import json, sys                                                       # harness
''') + MAKE_MODEL + textwrap.dedent('''
    from azure.ai.ml import MLClient
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint, Model
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    ml_client.online_endpoints.begin_create_or_update(ManagedOnlineEndpoint(name="local-ep", auth_mode="key")).result()
    deployment = ManagedOnlineDeployment(
        name="blue", endpoint_name="local-ep",
        model=Model(path=make_model("model-c", 3.0), type=AssetTypes.MLFLOW_MODEL),
        instance_type="Standard_DS3_v2", instance_count=1)
    done = ml_client.online_deployments.begin_create_or_update(deployment).result()
    with open("request.json", "w") as fh:
        json.dump({"input_data": {"columns": [0, 1], "index": [0, 1], "data": [[0.0, 1.0], [3.0, 1.0]]}}, fh)
    answer = ml_client.online_endpoints.invoke(endpoint_name="local-ep", deployment_name="blue",
                                               request_file="request.json")
    print("\\nRESULT " + json.dumps({"state": done.provisioning_state, "model": done.model,
                                    "answer": json.loads(answer)}))
''')


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    yield from seed_identity_emulator(tmp_path_factory, "aml-datastores")


def expected(coef: float, rows) -> list:
    return [(2.0 * a - b) * coef + 0.5 for a, b in rows]


def test_local_model_folder_is_uploaded_and_registered(emulator, client_python, tmp_path):
    env = emulator.status()["azureml"]["client_env_proxy"]
    result = run_client(client_python, REGISTER_LOCAL, env, tmp_path, "local-model")
    print("azure-ai-ml steps, seconds since start:", result["took"])
    assert result["versions"][:2] == ["1", "2"]
    ds = result["datastore"]
    assert ds["name"] == "workspaceblobstore" and ds["container"].startswith("azureml-blobstore-")
    prefix = ("azureml://subscriptions/subscription_id/resourcegroups/resource_group_name/workspaces/"
              "workspace_name/datastores/workspaceblobstore/paths/LocalUpload/")
    assert all(p.startswith(prefix) for p in result["paths"]), result["paths"]
    assert result["paths"][0].endswith("/model-a") and result["paths"][1].endswith("/model-b")
    # The same folder again: its confirmation metadata says it is there, so no new upload, same path.
    assert result["paths"][2] == result["paths"][0] and result["versions"][2] == "3"
    assert result["got"] == {"path": result["paths"][0], "type": "mlflow_model", "description": "first",
                             "tags": {"team": "a"}}
    # models.download: the datastore listed (List Blobs) and read back, byte for byte.
    assert "local-model/model-b/MLmodel" in result["files"] and result["same"]


def test_deployment_of_a_local_model_folder_serves_it(emulator, client_python, tmp_path):
    env = emulator.status()["azureml"]["client_env_proxy"]
    result = run_client(client_python, DEPLOY_LOCAL, env, tmp_path)
    assert result["state"] == "Succeeded"
    assert result["answer"] == pytest.approx(expected(3.0, [(0.0, 1.0), (3.0, 1.0)]))


# -- the same routes raw: shapes and refusals ------------------------------------------------------
API = {"api-version": "2024-10-01-preview"}


def _scope(aml) -> str:
    return (f"/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")


def _arm(aml, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{aml.url}{_scope(aml)}{path}", params={**API, **kwargs.pop("params", {})},
                            headers={"Authorization": f"Bearer {aml.token}"}, timeout=60, **kwargs)


def _arm_error(resp: requests.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code, error
    return error["message"]


@pytest.fixture(scope="module")
def store(emulator):
    """(aml, container URL on the plain listener, container SAS) of the default datastore."""
    aml = emulator.azureml
    listed = _arm(aml, "GET", "/datastores", params={"isDefault": "true"}).json()["value"]
    props = listed[0]["properties"]
    secrets = _arm(aml, "POST", "/datastores/workspaceblobstore/listSecrets",
                   json={"expirableSecret": True, "expireAfterHours": 1}).json()
    assert secrets["secretsType"] == "Sas"
    base = f"{aml.url}/{props['accountName']}.blob.core.windows.net/{props['containerName']}"
    return aml, base, secrets["sasToken"]


def test_default_datastore_shapes_and_refusals(store):
    aml, _, sas = store
    listed = _arm(aml, "GET", "/datastores", params={"isDefault": "true"}).json()
    assert [d["name"] for d in listed["value"]] == ["workspaceblobstore"] and listed["nextLink"] is None
    ds = listed["value"][0]
    assert ds["properties"]["isDefault"] is True and ds["properties"]["datastoreType"] == "AzureBlob"
    assert ds["properties"]["credentials"] == {"credentialsType": "AccountKey"}  # no secret in a GET
    assert _arm(aml, "GET", "/datastores", params={"isDefault": "false"}).json()["value"] == []
    assert _arm(aml, "GET", "/datastores/workspaceblobstore").json() == ds
    assert "sp=racwdl" in sas and "sr=c" in sas
    assert _arm_error(_arm(aml, "GET", "/datastores/nope"), 404, "UserError") == "Could not find datastore: nope."
    _arm_error(_arm(aml, "POST", "/datastores/nope/listSecrets", json={}), 404, "UserError")
    _arm_error(_arm(aml, "POST", "/datastores/workspaceblobstore/listSecrets", json={"expireAfterHours": 0}),
               400, "UserError")
    _arm_error(_arm(aml, "DELETE", "/datastores/workspaceblobstore"), 405, "MethodNotAllowed")
    _arm_error(_arm(aml, "GET", "/datastores", params={"api-version": ""}), 400, "MissingApiVersionParameter")
    no_token = requests.post(f"{aml.url}{_scope(aml)}/datastores/workspaceblobstore/listSecrets", params=API,
                             json={}, timeout=30)
    assert no_token.status_code == 401 and "sasToken" not in no_token.text


def test_blob_plane_of_the_datastore(store):
    aml, base, sas = store
    blob = f"{base}/LocalUpload/raw/m/MLmodel"
    put = requests.put(f"{blob}?{sas}", data=b"flavors: {}\n", timeout=30,
                       headers={"x-ms-blob-type": "BlockBlob", "x-ms-meta-upload_status": "partial"})
    assert put.status_code == 201, put.text
    head = requests.head(f"{blob}?{sas}", timeout=30)
    assert head.status_code == 200 and head.headers["x-ms-meta-upload_status"] == "partial"
    # Set Blob Metadata replaces what was there (azure-ai-ml's upload confirmation).
    meta = requests.put(f"{blob}?comp=metadata&{sas}", timeout=30,
                        headers={"x-ms-meta-upload_status": "completed", "x-ms-meta-name": "m"})
    assert meta.status_code == 200, meta.text
    head = requests.head(f"{blob}?{sas}", timeout=30)
    assert head.headers["x-ms-meta-upload_status"] == "completed" and head.headers["x-ms-meta-name"] == "m"
    assert requests.put(f"{base}/LocalUpload/raw/none?comp=metadata&{sas}", timeout=30).status_code == 404
    # If-None-Match: * (azure-ai-ml uploads with overwrite=False) keeps the first bytes.
    again = requests.put(f"{blob}?{sas}", data=b"other", timeout=30,
                         headers={"x-ms-blob-type": "BlockBlob", "If-None-Match": "*"})
    assert again.status_code == 409 and again.headers["x-ms-error-code"] == "BlobAlreadyExists"
    assert requests.get(f"{blob}?{sas}", timeout=30).content == b"flavors: {}\n"
    # List Blobs: flat with metadata, and one level with a delimiter.
    listing = requests.get(f"{base}?restype=container&comp=list&prefix=LocalUpload/raw/&include=metadata&{sas}",
                           timeout=30)
    assert listing.status_code == 200 and "<Name>LocalUpload/raw/m/MLmodel</Name>" in listing.text
    assert "<upload_status>completed</upload_status>" in listing.text
    walk = requests.get(f"{base}?restype=container&comp=list&prefix=LocalUpload/&delimiter=/&{sas}", timeout=30)
    assert "<BlobPrefix><Name>LocalUpload/raw/</Name></BlobPrefix>" in walk.text
    # "<folder>/" is a legal blob name that names nothing: 404, as azure-ai-ml's exists() expects.
    assert requests.head(f"{base}/LocalUpload/raw/?{sas}", timeout=30).status_code == 404
    # Refusals: no SAS, a forged one, the container SAS on another container, a path that escapes.
    assert requests.get(blob, timeout=30).status_code == 403
    forged = sas.replace("sig=", "sig=A")
    assert requests.put(f"{base}/LocalUpload/raw/forged?{forged}", data=b"x", timeout=30,
                        headers={"x-ms-blob-type": "BlockBlob"}).status_code == 403
    other = base.rsplit("/", 1)[0] + "/azureml"
    stolen = requests.get(f"{other}?restype=container&comp=list&{sas}", timeout=30)
    assert stolen.status_code == 403 and stolen.headers["x-ms-error-code"] == "AuthenticationFailed"
    escape = requests.put(f"{base}/LocalUpload/%2E%2E/%2E%2E/escaped?{sas}", data=b"x", timeout=30,
                          headers={"x-ms-blob-type": "BlockBlob"})
    assert escape.status_code == 400 and escape.headers["x-ms-error-code"] == "InvalidResourceName"
    wrong_md5 = requests.put(f"{blob}?{sas}", data=b"changed", timeout=30,
                             headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="})
    assert wrong_md5.status_code == 400 and wrong_md5.headers["x-ms-error-code"] == "Md5Mismatch"
    assert requests.get(f"{blob}?{sas}", timeout=30).content == b"flavors: {}\n"
    bad_meta = requests.put(f"{base}/LocalUpload/raw/bad?{sas}", data=b"x", timeout=30,
                            headers={"x-ms-blob-type": "BlockBlob", "x-ms-meta-1bad": "v"})
    assert bad_meta.status_code == 400 and bad_meta.headers["x-ms-error-code"] == "InvalidMetadata"


def test_model_version_put_refusals(store):
    aml, base, sas = store
    for name in ("MLmodel", "model.txt"):
        requests.put(f"{base}/LocalUpload/refusals/m/{name}?{sas}", data=b"x", timeout=30,
                     headers={"x-ms-blob-type": "BlockBlob"}).raise_for_status()
    long_uri = (f"azureml://subscriptions/{aml.subscription_id}/resourcegroups/{aml.resource_group}/workspaces/"
                f"{aml.workspace_name}/datastores/workspaceblobstore/paths/")

    def put(version: str, uri: str, name: str = "raw-model") -> requests.Response:
        return _arm(aml, "PUT", f"/models/{name}/versions/{version}",
                    json={"properties": {"modelUri": uri, "modelType": "custom_model"}})

    created = put("1", long_uri + "LocalUpload/refusals/m")
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["modelUri"] == long_uri + "LocalUpload/refusals/m"
    assert created.json()["properties"]["modelType"] == "custom_model"
    assert put("1", long_uri + "LocalUpload/refusals/m").status_code == 200  # the same again: unchanged
    assert _arm_error(put("1", long_uri + "LocalUpload/refusals"), 400, "UserError") == \
        "Asset paths cannot be updated."
    _arm_error(put("5", long_uri + "LocalUpload/refusals/m"), 400, "BadArgument")
    _arm_error(put("2", long_uri + "LocalUpload/../../mlflow.db"), 400, "UserError")
    _arm_error(put("2", long_uri + "LocalUpload/%2e%2e/%2e%2e/x"), 400, "UserError")
    _arm_error(put("2", long_uri + "LocalUpload/never-uploaded"), 400, "UserError")
    assert "Could not find datastore: other" in _arm_error(
        put("2", "azureml://datastores/other/paths/LocalUpload/refusals/m"), 400, "UserError")
    _arm_error(put("2", long_uri.replace(aml.workspace_name, "another-ws") + "LocalUpload/refusals/m"),
               400, "UserError")
    _arm_error(put("2", "file:///etc/passwd"), 400, "UserError")
    _arm_error(put("1", long_uri + "LocalUpload/refusals/m", name="bad name!"), 400, "BadArgument")
    versions = _arm(aml, "GET", "/models/raw-model/versions").json()["value"]
    assert [v["name"] for v in versions] == ["1"]  # nothing else was stored
