"""Registering a model from a local folder with the REAL azureml-mlflow plugin (issue 31, item 1).

``mlflow.register_model("file:///dir", name)`` and ``MlflowClient().create_model_version(name,
source="file:///dir")`` make the plugin upload the folder through Azure ML's artifact service
(``/artifact/v2.0/<scope>/artifacts/LocalUpload/<container>/batch/metadata``, then blob PUTs with
the write SAS) and register ``azureml://artifacts/LocalUpload/<container>/<folder>``; loading
``models:/name/N`` reads the container back (listing, contentinfo, blob GETs). The clients run in
their own venv (tests/test_azureml_real_clients.py), loopback (arrangement B) and through the
CONNECT proxy by the real host names (arrangement A). The refusals are asserted over plain HTTP.
"""

from __future__ import annotations

import textwrap

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from harness.online_endpoints import OnlineEndpointsClient
from tests.test_azureml_real_clients import client_python, run_client  # noqa: F401

EXPECTED = [0.5 + 2.0 * a - b for a, b in ((0, 1), (1, 0), (2, 3), (3, 1))]

REGISTER_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    from sklearn.linear_model import LinearRegression

    import mlflow
    from mlflow import MlflowClient
    from azureml.core import Workspace

    sub, rg, ws_name, name = sys.argv[1:5]
    ws = Workspace.get(name=ws_name, subscription_id=sub, resource_group=rg)
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    y = X @ np.array([2.0, -1.0]) + 0.5
    mlflow.sklearn.save_model(LinearRegression().fit(X, y), "local_model")
    with open(os.path.join("local_model", "notes.txt"), "w") as fh:   # a non-model file rides along
        fh.write("uploaded from a local folder")
    folder = os.path.abspath("local_model")

    v1 = mlflow.register_model(f"file://{folder}", name)
    v2 = MlflowClient().create_model_version(name, source=f"file://{folder}")
    client = MlflowClient()
    result = {"versions": [v1.version, v2.version], "sources": [v1.source, v2.source],
              "download_uri": client.get_model_version_download_uri(name, v2.version)}
    for v in (v1.version, v2.version):
        result[f"v{v}"] = mlflow.pyfunc.load_model(f"models:/{name}/{v}").predict(X).tolist()
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/{v2.version}")
    result["files"] = sorted(os.listdir(local))
    result["saved"] = sorted(os.listdir(folder))
    result["notes"] = open(os.path.join(local, "notes.txt")).read()
    print("RESULT " + json.dumps(result))
''')


def _scope(info: dict) -> str:
    return (f"subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{info['workspace_name']}")


@pytest.mark.parametrize("arrangement", ["loopback", "proxy"])
def test_register_model_from_local_folder_with_real_plugin(emulator, client_python, tmp_path, monkeypatch,
                                                           arrangement):
    info = emulator.status()["azureml"]
    env = info["client_env"] if arrangement == "loopback" else info["client_env_proxy"]
    name = f"local-folder-{arrangement}"
    result = run_client(client_python, REGISTER_SCRIPT, env, tmp_path, info["subscription_id"],
                        info["resource_group"], info["workspace_name"], name)

    assert [int(v) for v in result["versions"]] == [1, 2]
    for source in result["sources"]:
        # The plugin's own location for the upload: origin LocalUpload, a fresh container each time.
        assert source.startswith("azureml://artifacts/LocalUpload/") and source.endswith("/local_model")
    assert result["sources"][0] != result["sources"][1]
    assert result["download_uri"] == result["sources"][1]
    for v in ("v1", "v2"):
        assert result[v] == pytest.approx(EXPECTED), v
    # Every uploaded file comes back (MLflow adds registered_model_meta when downloading models:/).
    assert set(result["files"]) - {"registered_model_meta"} == set(result["saved"])
    assert {"MLmodel", "notes.txt"} <= set(result["saved"])
    assert result["notes"] == "uploaded from a local folder"

    # Vanilla MLflow over http:// (3.17.2 here) reads the same version from the same bytes.
    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    version = MlflowClient(aml.tracking_uri, registry_uri=aml.tracking_uri).get_model_version(name, "2")
    assert version.source == result["sources"][1].replace("azureml://artifacts/", "mlflow-artifacts:/")
    mlflow.set_tracking_uri(aml.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/2")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.predict([[0.0, 1.0]]).tolist() == pytest.approx([-0.5])

    if arrangement == "loopback":  # once: an online endpoint serves the uploaded version too
        endpoints = OnlineEndpointsClient.for_workspace(aml)
        endpoints.create_endpoint("ep-local-folder")
        deployment = endpoints.create_deployment("ep-local-folder", "blue", f"azureml:{name}:2")
        assert deployment["properties"]["provisioningState"] == "Succeeded", deployment
        endpoints.set_traffic("ep-local-folder", {"blue": 100})
        scored = endpoints.score("ep-local-folder", {"input_data": {"columns": ["a", "b"], "data": [[0.0, 1.0]]}})
        assert scored.status_code == 200, scored.text
        assert scored.json() == pytest.approx([-0.5])


def test_local_upload_refusals(emulator):
    """Bad input to the artifact service: Azure's error shape, 4xx, and nothing is written."""
    aml = emulator.azureml
    base = f"{aml.url}/artifact/v2.0/{_scope(emulator.status()['azureml'])}/artifacts"
    auth = {"Authorization": f"Bearer {aml.token}"}

    def call(method, url, **kw):
        answer = requests.request(method, url, headers=kw.pop("headers", auth), timeout=60, **kw)
        return answer.status_code, answer.json()

    # A write SAS per valid path; a path that escapes gets a per-path error, not a SAS.
    status, body = call("POST", f"{base}/LocalUpload/c-1/batch/metadata",
                        json={"paths": [{"path": "m/MLmodel"}, {"path": "../escape"}, {"path": "/abs"}]})
    assert status == 200
    assert set(body["artifactContentInformation"]) == {"m/MLmodel"}
    assert set(body["errors"]) == {"../escape", "/abs"}
    assert body["errors"]["../escape"]["error"]["code"] == "ValidationError"
    sas_url = body["artifactContentInformation"]["m/MLmodel"]["contentUri"]
    assert "sig=" in sas_url and "sp=" in sas_url
    assert body["artifacts"]["m/MLmodel"] == {"artifactId": "LocalUpload/c-1/m/MLmodel", "origin": "LocalUpload",
                                              "container": "c-1", "path": "m/MLmodel"}

    # The blob PUT needs the SAS; with it the file is stored and listed, read back with a read SAS.
    unsigned = sas_url.split("?", 1)[0]
    put = requests.put(unsigned, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert put.status_code == 403 and put.headers["x-ms-error-code"] == "AuthenticationFailed"
    assert call("GET", f"{base}/LocalUpload/c-1")[1]["value"] == []
    put = requests.put(sas_url, data=b"flavors: {}\n", headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert put.status_code == 201
    status, listed = call("GET", f"{base}/LocalUpload/c-1", params={"path": "m"})
    assert status == 200 and [a["path"] for a in listed["value"]] == ["m/MLmodel"]
    status, info = call("GET", f"{base}/LocalUpload/c-1/contentinfo", params={"path": "m/MLmodel"})
    assert status == 200 and requests.get(info["contentUri"], timeout=60).content == b"flavors: {}\n"

    # Unknown artifact / container: 404 on contentinfo; an unknown container lists empty.
    status, body = call("GET", f"{base}/LocalUpload/c-1/contentinfo", params={"path": "m/nope"})
    assert status == 404 and body["error"]["code"] == "NotFound"
    status, body = call("GET", f"{base}/LocalUpload/never-made/contentinfo", params={"path": "m/MLmodel"})
    assert status == 404 and body["error"]["code"] == "NotFound"
    assert call("GET", f"{base}/LocalUpload/never-made") == (200, {"value": [], "continuationToken": None,
                                                                   "nextLink": None})
    # Paths and containers that could climb out of the container.
    status, body = call("GET", f"{base}/LocalUpload/c-1/contentinfo", params={"path": "../c-1/m/MLmodel"})
    assert status == 400 and body["error"]["code"] == "ValidationError"
    status, body = call("POST", f"{base}/LocalUpload/..%2E/batch/metadata", json={"paths": [{"path": "a"}]})
    assert status in (400, 404) and "error" in body
    status, body = call("POST", f"{base}/LocalUpload/.hidden/batch/metadata", json={"paths": [{"path": "a"}]})
    assert status == 400 and body["error"]["code"] == "ValidationError"
    # Other origins, other workspaces, a bad body, no token.
    status, body = call("GET", f"{base}/ExperimentRun/dcid.x/contentinfo", params={"path": "a"})
    assert status == 404 and body["error"]["code"] == "NotFound"
    other = base.replace(f"workspaces/{aml.workspace_name}", "workspaces/someone-else")
    status, body = call("GET", f"{other}/LocalUpload/c-1")
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    status, body = call("POST", f"{base}/LocalUpload/c-1/batch/metadata", json={"paths": []})
    assert status == 400 and body["error"]["code"] == "ValidationError"
    status, body = call("GET", f"{base}/LocalUpload/c-1", headers={})
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"


def test_registering_an_upload_location(emulator, monkeypatch):
    """model-versions/create with a LocalUpload source (what the plugin sends, as the store names it)."""
    aml = emulator.azureml
    base = f"{aml.url}/artifact/v2.0/{_scope(emulator.status()['azureml'])}/artifacts/LocalUpload/reg-1"
    auth = {"Authorization": f"Bearer {aml.token}"}
    answer = requests.post(f"{base}/batch/metadata", headers=auth, timeout=60,
                           json={"paths": [{"path": "m/MLmodel"}, {"path": "m/data.txt"}]}).json()
    for path, data in (("m/MLmodel", b"flavors: {}\n"), ("m/data.txt", b"d")):
        sas = answer["artifactContentInformation"][path]["contentUri"]
        assert requests.put(sas, data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60).status_code == 201
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    client = MlflowClient(aml.tracking_uri, registry_uri=aml.tracking_uri)
    client.create_registered_model("from-upload")
    create = f"{aml.tracking_uri}/api/2.0/mlflow/model-versions/create"

    def register(source, **extra):
        reply = requests.post(create, headers=auth, json={"name": "from-upload", "source": source, **extra}, timeout=60)
        return reply.status_code, reply.json()

    status, body = register("mlflow-artifacts:/LocalUpload/reg-1/m", tags=[{"key": "k", "value": "v"}])
    assert status == 200 and body["model_version"]["version"] == "1"
    assert client.get_model_version("from-upload", "1").tags == {"k": "v"}
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_registry_uri(aml.tracking_uri)
    local = mlflow.artifacts.download_artifacts("models:/from-upload/1")
    assert open(f"{local}/data.txt").read() == "d"
    # No MLmodel there, a location that climbs out, a run or model id alongside, an unknown model.
    status, body = register("mlflow-artifacts:/LocalUpload/reg-1/nothing")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for bad in ("mlflow-artifacts:/LocalUpload/reg-1/../reg-1/m", "mlflow-artifacts:/LocalUpload/reg-1",
                "mlflow-artifacts:/LocalUpload/%2e%2e/1"):
        status, body = register(bad)
        assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", bad
    status, body = register("mlflow-artifacts:/LocalUpload/reg-1/m", run_id="0" * 32)
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    reply = requests.post(create, headers=auth, json={"name": "never-created",
                                                      "source": "mlflow-artifacts:/LocalUpload/reg-1/m"}, timeout=60)
    assert reply.status_code == 404 and reply.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert [v.version for v in client.search_model_versions("name='from-upload'")] == ["1"]


ACI_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    from sklearn.linear_model import LinearRegression

    import mlflow
    from azureml.core import Workspace
    from mlflow.deployments import get_deploy_client

    sub, rg, ws_name, name = sys.argv[1:5]
    ws = Workspace.get(name=ws_name, subscription_id=sub, resource_group=rg)
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0]])
    mlflow.sklearn.save_model(LinearRegression().fit(X, X @ np.array([2.0, -1.0])), "local_model")
    version = mlflow.register_model("file://" + os.path.abspath("local_model"), name).version
    try:
        # No endpoint, no config: the v1 (ACI) webservice path of azureml-mlflow's deployment client.
        get_deploy_client(mlflow.get_tracking_uri()).create_deployment("aci-svc", model_uri=f"models:/{name}/{version}")
        outcome = "deployed"
    except Exception as exc:
        chain = []
        while exc is not None and len(chain) < 5:  # the plugin wraps the service's error
            chain.append(f"{type(exc).__name__}: {exc}")
            exc = exc.__cause__ or exc.__context__
        outcome = " <- ".join(chain)
    print("RESULT " + json.dumps({"outcome": outcome}))
''')


def test_v1_webservice_deployment_uploads_then_meets_the_retired_api(emulator, client_python, tmp_path):
    """azureml-mlflow's ACI/AKS path: its entry script goes up through LocalUpload (served), then
    ``POST /modelmanagement/v1.0/.../services`` (SDK v1 webservices, retired): refused, not served."""
    info = emulator.status()["azureml"]
    uploads = emulator.state.role_dir("azureml") / "artifacts" / "LocalUpload"
    before = set(uploads.iterdir()) if uploads.is_dir() else set()
    result = run_client(client_python, ACI_SCRIPT, info["client_env"], tmp_path, info["subscription_id"],
                        info["resource_group"], info["workspace_name"], "aci-model")
    print(result["outcome"])
    assert "No API found for 'POST /modelmanagement/v1.0/" in result["outcome"]
    assert "Code: InvalidResourceType" in result["outcome"]  # Azure's error shape, parsed by azure-core
    # The model folder and the deployment client's entry script were both uploaded.
    added = set(uploads.iterdir()) - before
    assert any((c / "local_model" / "MLmodel").is_file() for c in added)
    assert any(f.name.endswith(".py") for c in added for f in c.iterdir())


def test_local_upload_listing_is_paged(emulator):
    """``list_in_container`` pages by ``nextLink`` (azure-core's ItemPaged follows it)."""
    aml = emulator.azureml
    base = f"{aml.url}/artifact/v2.0/{_scope(emulator.status()['azureml'])}/artifacts/LocalUpload/paged"
    auth = {"Authorization": f"Bearer {aml.token}"}
    paths = [f"m/f{i:03d}.txt" for i in range(101)]
    answer = requests.post(f"{base}/batch/metadata", headers=auth, timeout=60,
                           json={"paths": [{"path": p} for p in paths]}).json()
    with requests.Session() as blobs:
        for path in paths:
            sas = answer["artifactContentInformation"][path]["contentUri"]
            assert blobs.put(sas, data=path.encode(), headers={"x-ms-blob-type": "BlockBlob"},
                             timeout=60).status_code == 201
    first = requests.get(base, headers=auth, timeout=60).json()
    assert [a["path"] for a in first["value"]] == paths[:100] and first["nextLink"]
    second = requests.get(first["nextLink"], headers=auth, timeout=60).json()
    assert [a["path"] for a in second["value"]] == paths[100:] and second["nextLink"] is None
