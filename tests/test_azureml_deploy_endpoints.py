"""Managed online endpoints on the Azure ML workspace (issue 13, items 3-4): the ARM protocol as
azure-ai-ml 1.35.2 speaks it (raw requests with its shapes, LRO polling like azure-core's
ARMPolling), deployments of registered MLflow models served by their own processes, scoring.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from emulator.pipeline import body_limits
from harness import mlflow_uris
from harness.online_endpoints import EndpointError, OnlineEndpointsClient
from harness.workspaces import Emulator

X = pd.DataFrame({"a": np.linspace(0, 1, 12), "b": np.linspace(2, 5, 12)})
Y = 3 * X["a"] - X["b"] + 1


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("deploy-endpoints")).up()
    yield emu
    emu.down()


@pytest.fixture(scope="module")
def ml(emu):
    return OnlineEndpointsClient.for_workspace(emu.azureml)


@pytest.fixture(scope="module")
def aml_mlflow(emu):
    aml = emu.azureml
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):  # and back, active experiment included
            mlflow.set_experiment("deploy-endpoints")
            yield MlflowClient(aml.tracking_uri, aml.tracking_uri)


def _register_sklearn(name: str, coef: float) -> LinearRegression:
    model = LinearRegression().fit(X, Y * coef)
    with mlflow.start_run():
        mlflow.sklearn.log_model(model, name="model", input_example=X.head(2), registered_model_name=name)
    return model


def _register_code(tmp_path, name: str, code: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=str(path), registered_model_name=name)


@pytest.fixture(scope="module")
def served(ml, aml_mlflow):
    """An endpoint 'ep-main' with deployment 'blue' (model v2) at 100% and 'green' (v1) at 0%."""
    name = f"reg-{uuid.uuid4().hex[:6]}"
    m1 = _register_sklearn(name, 1.0)
    m2 = _register_sklearn(name, 2.0)
    ml.create_endpoint("ep-main")
    blue = ml.create_deployment("ep-main", "blue", ml.model_id(name, 2))
    green = ml.create_deployment("ep-main", "green", f"azureml:{name}:1")
    assert blue["properties"]["provisioningState"] == "Succeeded", blue
    assert green["properties"]["provisioningState"] == "Succeeded", green
    ml.set_traffic("ep-main", {"blue": 100, "green": 0})
    return {"name": name, "v1": m1, "v2": m2}


def _predictions(resp: requests.Response):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return np.ravel(body["predictions"] if isinstance(body, dict) else body)


def test_endpoint_lro_shapes(ml, served):
    ep = ml.get_endpoint("ep-main")
    assert ep["type"] == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert ep["properties"]["provisioningState"] == "Succeeded"
    assert ep["properties"]["scoringUri"] == f"{ml.url}/inference/ep-main/score"
    assert ep["properties"]["traffic"] == {"blue": 100, "green": 0}
    # A create answers 201 in Creating with Azure-AsyncOperation; the operation goes to Succeeded.
    resp = ml.call("PUT", "/onlineEndpoints/ep-lro", {"location": "westeurope",
                                                      "properties": {"authMode": "Key"}})
    assert resp.status_code == 201 and resp.json()["properties"]["provisioningState"] == "Creating"
    operation = resp.headers["Azure-AsyncOperation"]
    assert "/providers/Microsoft.MachineLearningServices/locations/" in operation
    deadline = time.monotonic() + 60
    while (status := requests.get(operation, headers={"Authorization": f"Bearer {ml.token}"}).json())["status"] \
            == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status["status"] == "Succeeded"
    listed = ml.call("GET", "/onlineEndpoints").json()["value"]
    assert {"ep-main", "ep-lro"} <= {e["name"] for e in listed}
    deps = ml.call("GET", "/onlineEndpoints/ep-main/deployments").json()["value"]
    assert {d["name"] for d in deps} == {"blue", "green"}
    blue = ml.get_deployment("ep-main", "blue")
    assert blue["properties"]["model"] == ml.model_id(served["name"], 2)
    assert blue["sku"]["capacity"] == 1 and blue["properties"]["endpointComputeType"] == "Managed"
    ml.delete_endpoint("ep-lro")
    with pytest.raises(EndpointError) as err:
        ml.get_endpoint("ep-lro")
    assert err.value.status == 404


def test_scoring_payload_formats(ml, served):
    expected = served["v2"].predict(X)
    split = json.loads(X.to_json(orient="split"))
    for payload in (
        {"input_data": split},                                           # Azure ML tabular
        {"input_data": {"a": X["a"].tolist(), "b": X["b"].tolist()}},    # named columns
        {"input_data": X.to_dict(orient="records")},                     # records
        {"dataframe_split": split},                                      # MLflow's formats
        {"dataframe_records": X.to_dict(orient="records")},
        {"inputs": {"a": X["a"].tolist(), "b": X["b"].tolist()}},
    ):
        got = _predictions(ml.score("ep-main", payload))
        np.testing.assert_allclose(got, expected, rtol=1e-9, err_msg=str(list(payload)))
    resp = ml.score("ep-main", {"input_data": split})
    assert resp.headers["azureml-model-deployment"] == "blue"
    assert isinstance(resp.json(), list)  # input_data -> a plain list; MLflow formats -> {"predictions"}
    assert "predictions" in ml.score("ep-main", {"dataframe_split": split}).json()


def test_bad_payloads_are_4xx_with_the_reason(ml, served):
    key = ml.keys("ep-main")["primaryKey"]
    missing = ml.score("ep-main", {"input_data": {"columns": ["a"], "data": [[1.0]]}}, credential=key)
    assert missing.status_code == 400, missing.text
    assert "b" in missing.json()["error"]["message"] and "missing" in missing.json()["error"]["message"].lower()
    uri = ml.get_endpoint("ep-main")["properties"]["scoringUri"]
    not_json = requests.post(uri, data=b"{oops", headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]
    wrong_shape = ml.score("ep-main", [1, 2, 3], credential=key)
    assert wrong_shape.status_code == 400
    unknown_key = ml.score("ep-main", {"foo": 1}, credential=key)
    assert 400 <= unknown_key.status_code < 500, unknown_key.text
    strings = ml.score("ep-main", {"input_data": {"columns": ["a", "b"], "data": [["x", "y"]]}}, credential=key)
    assert strings.status_code == 400, strings.text


def test_empty_payload_names_input_data(ml, served):
    key = ml.keys("ep-main")["primaryKey"]
    empty = ml.score("ep-main", {}, credential=key)
    assert empty.status_code == 400, empty.text
    assert "input_data" in empty.json()["error"]["message"]  # before: MLflow's four fields only


def _oversized() -> bytes:
    return b'{"input_data": "' + b"x" * body_limits.MAX_JSON_BODY + b'"}'


def test_oversized_payload_is_413_in_the_scoring_shape(ml, served):
    key = ml.keys("ep-main")["primaryKey"]
    uri = ml.get_endpoint("ep-main")["properties"]["scoringUri"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = _oversized()
    for data in (body, iter([body[i:i + 2**20] for i in range(0, len(body), 2**20)])):  # declared, chunked
        resp = requests.post(uri, data=data, headers=headers, timeout=60)
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"]["code"] == "PayloadTooLarge", resp.text
        assert resp.headers["azureml-model-deployment"] == "blue"
    assert requests.post(uri, data=body, timeout=60).status_code == 401  # no key: not even the limit


def test_oversized_payload_through_the_proxy_gets_the_413(emu, ml, served):
    """Arrangement A: the real host name through the CONNECT proxy. Before: the tunnel was cut as
    soon as the HTTPS listener closed, and the client got a TLS EOF instead of the answer."""
    info = emu.status()["azureml"]
    key = ml.keys("ep-main")["primaryKey"]
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": info["proxy_url"]}
    session.verify = info["ca_file"]
    uri = "https://westeurope.api.azureml.ms/inference/ep-main/score"
    resp = session.post(uri, data=_oversized(), timeout=60,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "PayloadTooLarge", resp.text
    assert resp.headers["azureml-model-deployment"] == "blue"
    ok = session.post(uri, json={"input_data": json.loads(X.head(2).to_json(orient="split"))}, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200, ok.text  # the proxy still serves after such a close


def test_latest_label_deploys_the_newest_version(ml, served):
    dep = ml.create_deployment("ep-main", "newest", f"azureml:{served['name']}@latest")
    try:
        assert dep["properties"]["model"].endswith(f"/models/{served['name']}/versions/2"), dep
    finally:
        ml.delete_deployment("ep-main", "newest")


def test_auth_keys_and_regeneration(ml, served):
    payload = {"input_data": json.loads(X.head(2).to_json(orient="split"))}
    uri = ml.get_endpoint("ep-main")["properties"]["scoringUri"]
    assert requests.post(uri, json=payload).status_code == 401
    assert ml.score("ep-main", payload, credential="not-the-key").status_code == 401
    assert ml.score("ep-main", payload, credential=ml.token).status_code == 401  # the workspace token is not a key
    keys = ml.keys("ep-main")
    assert ml.score("ep-main", payload, credential=keys["secondaryKey"]).status_code == 200
    ml.regenerate_key("ep-main", "Primary")
    new = ml.keys("ep-main")
    assert new["primaryKey"] != keys["primaryKey"] and new["secondaryKey"] == keys["secondaryKey"]
    assert ml.score("ep-main", payload, credential=keys["primaryKey"]).status_code == 401
    assert ml.score("ep-main", payload, credential=new["primaryKey"]).status_code == 200
    assert ml.call("POST", "/onlineEndpoints/ep-main/token", raw=True).status_code == 400


def test_aml_token_endpoint(ml, served):
    ml.create_endpoint("ep-token", auth_mode="AMLToken")
    ml.create_deployment("ep-token", "only", f"azureml:{served['name']}:2")
    ml.set_traffic("ep-token", {"only": 100})
    token = ml.endpoint_token("ep-token")
    assert token["tokenType"] == "Bearer" and token["expiryTimeUtc"] > time.time()
    payload = {"input_data": json.loads(X.head(3).to_json(orient="split"))}
    np.testing.assert_allclose(_predictions(ml.score("ep-token", payload, credential=token["accessToken"])),
                               served["v2"].predict(X.head(3)))
    # A token for another endpoint, a key-style value or a forged signature: 401.
    main_key = ml.keys("ep-main")["primaryKey"]
    assert ml.score("ep-token", payload, credential=main_key).status_code == 401
    forged = token["accessToken"][:-4] + "AAAA"
    assert ml.score("ep-token", payload, credential=forged).status_code == 401
    assert ml.call("POST", "/onlineEndpoints/ep-token/listKeys", raw=True).status_code == 400


def test_traffic_split_and_deployment_header(ml, served):
    ml.set_traffic("ep-main", {"blue": 70, "green": 30})
    key = ml.keys("ep-main")["primaryKey"]
    payload = {"input_data": json.loads(X.head(1).to_json(orient="split"))}
    served_by = Counter()
    for _ in range(200):
        resp = ml.score("ep-main", payload, credential=key)
        assert resp.status_code == 200
        served_by[resp.headers["azureml-model-deployment"]] += 1
        # The answer matches the model of the deployment that served it.
        model = served["v2"] if resp.headers["azureml-model-deployment"] == "blue" else served["v1"]
        np.testing.assert_allclose(_predictions(resp), model.predict(X.head(1)))
    assert 110 <= served_by["blue"] <= 170 and served_by["blue"] + served_by["green"] == 200, served_by
    # Loaded once per deployment, not per request.
    for dep in ("blue", "green"):
        assert ml.logs("ep-main", dep).count("loading model") == 1
    ml.set_traffic("ep-main", {"blue": 100, "green": 0})
    for _ in range(5):
        assert ml.score("ep-main", payload, credential=key, deployment="green").headers[
            "azureml-model-deployment"] == "green"
    unknown = ml.score("ep-main", payload, credential=key, deployment="nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]


def test_broken_model_fails_with_its_error_in_the_logs(ml, served, tmp_path):
    _register_code(tmp_path, "broken-model", """
        import mlflow

        class Broken(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                raise RuntimeError("weights file is corrupt")

            def predict(self, context, model_input):
                return model_input

        mlflow.models.set_model(Broken())
    """)
    with pytest.raises(EndpointError) as err:
        ml.create_deployment("ep-main", "broken", "azureml:broken-model:1")
    assert err.value.code == "DeploymentFailed"
    dep = ml.get_deployment("ep-main", "broken")
    assert dep["properties"]["provisioningState"] == "Failed"
    assert "weights file is corrupt" in ml.logs("ep-main", "broken")
    assert "weights file is corrupt" in ml.logs("ep-main", "broken", tail=200)
    # The endpoint keeps serving its other deployments; the failed one answers 424.
    payload = {"input_data": json.loads(X.head(2).to_json(orient="split"))}
    np.testing.assert_allclose(_predictions(ml.score("ep-main", payload)), served["v2"].predict(X.head(2)))
    assert ml.score("ep-main", payload, deployment="broken").status_code == 424
    ml.delete_deployment("ep-main", "broken")


def test_hanging_and_crashing_models_do_not_take_the_workspace_down(emu, ml, served, tmp_path):
    _register_code(tmp_path, "hanging-model", """
        import time
        import mlflow

        class Hangs(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                time.sleep(3600)

        mlflow.models.set_model(Hangs())
    """)
    _register_code(tmp_path, "crashing-model", """
        import os
        import mlflow

        class Crashes(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                os._exit(3)

        mlflow.models.set_model(Crashes())
    """)
    ml.create_deployment("ep-main", "hangs", "azureml:hanging-model:1", request_timeout="PT8S")
    ml.create_deployment("ep-main", "crashes", "azureml:crashing-model:1")
    payload = {"input_data": [[1.0, 2.0]]}
    key = ml.keys("ep-main")["primaryKey"]
    uri = ml.get_endpoint("ep-main")["properties"]["scoringUri"]

    def call(_):
        return requests.post(uri, json=payload, timeout=120,
                             headers={"Authorization": f"Bearer {key}", "azureml-model-deployment": "hangs"})

    # Six at once: four are held (and time out), the others get 429 instead of more server threads;
    # meanwhile the workspace answers its own API at once.
    with ThreadPoolExecutor(6) as pool:
        pending = [pool.submit(call, i) for i in range(6)]
        time.sleep(2)
        t = time.monotonic()
        assert requests.get(f"{emu.azureml.url}/health", timeout=60).status_code == 200
        assert ml.get_endpoint("ep-main")["properties"]["provisioningState"] == "Succeeded"
        assert time.monotonic() - t < 5
        statuses = Counter(f.result().status_code for f in pending)
    assert statuses == {408: 4, 429: 2}, statuses
    hung = call(0)
    assert hung.status_code == 408 and "8 s" in hung.json()["error"]["message"], hung.text
    crashed = ml.score("ep-main", payload, deployment="crashes")
    assert crashed.status_code == 502, crashed.text
    # The workspace and the other deployments are unaffected.
    assert requests.get(f"{emu.azureml.url}/health", timeout=60).status_code == 200
    good = ml.score("ep-main", {"input_data": json.loads(X.head(2).to_json(orient="split"))})
    np.testing.assert_allclose(_predictions(good), served["v2"].predict(X.head(2)))
    # The crashed inference server is restarted (its log shows a second start).
    deadline = time.monotonic() + 120
    while ml.logs("ep-main", "crashes").count("=== starting inference server") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    ml.delete_deployment("ep-main", "hangs")
    ml.delete_deployment("ep-main", "crashes")


def test_arm_validation_errors(ml, served):
    def put(path, body):
        return ml.call("PUT", path, body, raw=True)

    bad_name = put("/onlineEndpoints/1bad_name", {"location": "westeurope", "properties": {"authMode": "Key"}})
    assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "BadArgument"
    bad_mode = put("/onlineEndpoints/ep-bad", {"location": "westeurope", "properties": {"authMode": "Password"}})
    assert bad_mode.status_code == 400 and "Password" in bad_mode.json()["error"]["message"]
    base = ml.get_endpoint("ep-main")
    body = {"location": base["location"], "properties": {"authMode": "Key", "traffic": {"blue": 90}}}
    assert put("/onlineEndpoints/ep-main", body).status_code == 400
    body["properties"]["traffic"] = {"blue": 50, "ghost": 50}
    ghost = put("/onlineEndpoints/ep-main", body)
    assert ghost.status_code == 400 and "ghost" in ghost.json()["error"]["message"]
    no_model = put("/onlineEndpoints/ep-main/deployments/nomodel", ml.deployment_body("azureml:no-such-model:1"))
    assert no_model.status_code == 400 and "no-such-model" in no_model.json()["error"]["message"]
    scripted = ml.deployment_body(f"azureml:{served['name']}:1")
    scripted["properties"]["codeConfiguration"] = {"codeId": "x", "scoringScript": "score.py"}
    assert put("/onlineEndpoints/ep-main/deployments/scripted", scripted).status_code == 400
    bad_timeout = ml.deployment_body(f"azureml:{served['name']}:1", request_timeout="five seconds")
    assert put("/onlineEndpoints/ep-main/deployments/slow", bad_timeout).status_code == 400
    assert put("/onlineEndpoints/missing-ep/deployments/dep1", ml.deployment_body(f"azureml:{served['name']}:1")
               ).status_code == 404
    short = put("/onlineEndpoints/ep-main/deployments/d1", ml.deployment_body(f"azureml:{served['name']}:1"))
    assert short.status_code == 400 and "d1" in short.json()["error"]["message"]
    with_traffic = ml.call("DELETE", "/onlineEndpoints/ep-main/deployments/blue", raw=True)
    assert with_traffic.status_code == 400 and "traffic" in with_traffic.json()["error"]["message"]
    no_version = requests.get(f"{ml.url}{ml.scope}/onlineEndpoints", headers={"Authorization": f"Bearer {ml.token}"})
    assert no_version.status_code == 400
    assert requests.get(f"{ml.url}{ml.scope}/onlineEndpoints", params={"api-version": "2025-12-01"}).status_code == 401
    for resp in (bad_name, bad_mode, ghost, no_model):
        assert set(resp.json()) == {"error"}


def _parent_pid(pid: str) -> int:
    stat = (Path("/proc") / pid / "stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _private_dirs_of_inference_servers(workspace_pid: int) -> list[Path]:
    """The private directories (parents of their working directories) of a workspace's inference
    servers: its children, or its inference zygote's (emulator.services.azureml.inference_zygote)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"emulator.services.azureml.deployment_runner" not in argv:
                continue
            parent = _parent_pid(proc.name)
            if parent != workspace_pid and _parent_pid(str(parent)) != workspace_pid:
                continue
            cwd = Path(os.readlink(proc / "cwd"))
            if cwd.parent.name.startswith("azureml-deployment-"):
                found.append(cwd.parent)
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_deployments_serve_again_after_a_restart(emu, ml, served):
    from emulator.control import launcher

    private = [p for p in _private_dirs_of_inference_servers(launcher.running(emu.state, "azureml").pid)
               if p.is_dir()]
    assert private, "no inference server is running"
    emu.stop("azureml")
    # The servers outlive nobody: each exits with its workspace and takes its private copy of the
    # model along (they were left in the temp dir).
    deadline = time.monotonic() + 120
    while any(p.exists() for p in private) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in private if p.exists()]
    emu.start("azureml")
    payload = {"input_data": json.loads(X.head(2).to_json(orient="split"))}
    resp = ml.score("ep-main", payload)
    np.testing.assert_allclose(_predictions(resp), served["v2"].predict(X.head(2)))
    assert ml.get_deployment("ep-main", "blue")["properties"]["provisioningState"] == "Succeeded"


def test_model_code_sees_no_emulator_secret_and_its_server_takes_only_the_emulators_calls(emu, ml, aml_mlflow,
                                                                                            tmp_path):
    """Whoever can deploy in Azure ML runs code in the inference server: that code gets no token, no
    state dir path, a working directory holding only the model; the server itself answers only the
    workspace (docs/pages/security.md)."""
    _register_code(tmp_path, "snooping-model", """
        import os, sys
        import mlflow

        class Snoops(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return [{"environ": dict(os.environ), "cwd": os.getcwd(), "listing": sorted(os.listdir(".")),
                         "argv": sys.argv, "home": os.path.expanduser("~")}]

        mlflow.models.set_model(Snoops())
    """)
    ml.create_endpoint("ep-snoop")
    ml.create_deployment("ep-snoop", "snoop", "azureml:snooping-model:1")
    try:
        answer = ml.score("ep-snoop", {"input_data": [[1.0]]}, deployment="snoop")
        assert answer.status_code == 200, answer.text
        seen = answer.json()[0]
        state = str(emu.state.root.resolve())
        secrets = [emu.azureml.token, emu.databricks.token]
        everything = json.dumps(seen)
        assert not any(s in everything for s in secrets), "a workspace token reached the model's code"
        assert state not in everything, "the model's code was told where the state dir is"
        assert not any(k.startswith(("EMULATOR_", "MLFLOW_TRACKING", "DATABRICKS_")) for k in seen["environ"])
        assert "MLmodel" in seen["listing"] and "config.json" not in seen["listing"]
        # Its inference server (the port is in the deployment log) refuses calls without the
        # per-deployment secret only the workspace holds.
        import re

        port = re.findall(r"Listening on 127\.0\.0\.1:(\d+)", ml.logs("ep-snoop", "snoop"))[-1]
        for headers in ({}, {"Authorization": f"Bearer {emu.azureml.token}"},
                        {"Authorization": f"Bearer {ml.keys('ep-snoop')['primaryKey']}"}):
            direct = requests.post(f"http://127.0.0.1:{port}/score", json={"input_data": [[1.0]]},
                                   headers=headers, timeout=60)
            assert direct.status_code == 401 and direct.json()["error"]["code"] == "Unauthorized", direct.text
    finally:
        ml.delete_deployment("ep-snoop", "snoop")
        ml.delete_endpoint("ep-snoop")


def test_the_inference_server_answers_while_connections_sit_unfinished(ml, served):
    """A deployment's inference server (waitress) keeps answering the workspace's scoring calls while
    more unfinished connections than waitress's default limit (100) sit on its port; liveness, not
    speed (the figure for the workspace listeners is python -m bench's slow-clients row)."""
    import re

    from bench import slow_clients

    port = int(re.findall(r"Listening on 127\.0\.0\.1:(\d+)", ml.logs("ep-main", "blue"))[-1])
    inference = slow_clients.Listener("inference server", "127.0.0.1", port, "http", None,
                                      health=lambda: None, api=lambda: None)
    split = json.loads(X.to_json(orient="split"))
    with slow_clients.hold([inference], 150) as held:
        assert held == 150
        for _ in range(3):  # each a new connection to the workspace, then to the inference server
            np.testing.assert_allclose(_predictions(ml.score("ep-main", {"input_data": split})),
                                       served["v2"].predict(X), rtol=1e-9)
