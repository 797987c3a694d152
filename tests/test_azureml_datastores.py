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

from emulator.control.state import StateDir
from harness.workspaces import Emulator
from tests.test_azureml_real_clients import SEED_IDENTITY, client_python, run_client  # noqa: F401

# Saves an MLflow model folder locally (no tracking server), as a user has one on disk.
MAKE_MODEL = '''
def make_model(folder, coef):
    import numpy as np, mlflow
    from sklearn.linear_model import LinearRegression
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    model = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) * coef + 0.5)
    mlflow.sklearn.save_model(model, folder)
    return folder
'''

# The Azure ML docs' form: register a local MLflow model folder, twice (versions 1 and 2), read it back.
REGISTER_LOCAL = textwrap.dedent('''
    import json, os, sys                                                   # harness
''') + MAKE_MODEL + textwrap.dedent('''
    from azure.ai.ml import MLClient
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    name = sys.argv[1]                                                     # harness
    v1 = ml_client.models.create_or_update(Model(path=make_model("model-a", 1.0), name=name,
                                                 type=AssetTypes.MLFLOW_MODEL, description="first",
                                                 tags={"team": "a"}))
    v2 = ml_client.models.create_or_update(Model(path=make_model("model-b", 2.0), name=name,
                                                 type=AssetTypes.MLFLOW_MODEL))
    again = ml_client.models.create_or_update(Model(path="model-a", name=name, type=AssetTypes.MLFLOW_MODEL))
    got = ml_client.models.get(name=name, version=v1.version)
    ml_client.models.download(name=name, version=v2.version, download_path="downloaded")
    files = sorted(os.path.relpath(os.path.join(d, f), "downloaded")              # harness
                   for d, _, fs in os.walk("downloaded") for f in fs)              # harness
    same = open(f"downloaded/{name}/model-b/MLmodel").read() == open("model-b/MLmodel").read()  # harness
    default = ml_client.datastores.get_default()
    print("RESULT " + json.dumps({
        "versions": [v1.version, v2.version, again.version], "paths": [v1.path, v2.path, again.path],
        "got": {"path": got.path, "type": got.type, "description": got.description, "tags": got.tags},
        "files": files, "same": same, "datastore": {"name": default.name, "container": default.container_name,
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
    state = StateDir(tmp_path_factory.mktemp("aml-datastores"))
    state.save_config(dict(SEED_IDENTITY))
    emu = Emulator(state.root).up()
    yield emu
    emu.down()


def expected(coef: float, rows) -> list:
    return [(2.0 * a - b) * coef + 0.5 for a, b in rows]


def test_local_model_folder_is_uploaded_and_registered(emulator, client_python, tmp_path):
    env = emulator.status()["azureml"]["client_env_proxy"]
    result = run_client(client_python, REGISTER_LOCAL, env, tmp_path, "local-model")
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
