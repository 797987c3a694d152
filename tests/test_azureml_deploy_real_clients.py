"""Deploying to Azure ML with the REAL clients (issue 13, item 5): unmodified azure-ai-ml user code
(MLClient, ManagedOnlineEndpoint, ManagedOnlineDeployment of a registered MLflow model, traffic,
invoke, keys, logs, delete) and azureml-mlflow's MLflow deployments client, run in the client venv
(harness.client_venvs) as subprocesses with a temporary HOME and ``emulator status --json``'s
``azureml.client_env`` (arrangement B, loopback). The client is the judge of the server's shapes.
"""

from __future__ import annotations

import os
import textwrap
import time
from unittest import mock

import mlflow
import pytest
import requests

from harness import mlflow_uris
from harness.online_endpoints import OnlineEndpointsClient
from tests.test_azureml_real_clients import (  # noqa: F401
    SEED_IDENTITY,
    client_python,
    run_client,
    seed_identity_emulator,
)

# Registers an sklearn model through the plugin (azureml:// tracking URI from azureml-core).
REGISTER_SCRIPT = textwrap.dedent('''
    import json, sys
    import numpy as np
    import mlflow
    import azureml.mlflow
    from azureml.core import Workspace
    from sklearn.linear_model import LinearRegression

    ws = Workspace.get(name='workspace_name', subscription_id='subscription_id',
                       resource_group='resource_group_name')
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    mlflow.set_experiment("deploy-real-clients")
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    coef = float(sys.argv[2])
    model = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) * coef + 0.5)
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name=sys.argv[1])
    print("RESULT " + json.dumps({"version": info.registered_model_version,
                                  "uri": ws.get_mlflow_tracking_uri()}))
''')

# The user code as the Azure ML docs write it (azure-ai-ml v2, MLflow model: no scoring script,
# no environment). Lines marked # harness only report what happened.
AZURE_AI_ML_SCRIPT = textwrap.dedent('''
    import json, sys, time                                                # harness
    t0, took = time.monotonic(), {}                                       # harness
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import ManagedOnlineEndpoint, ManagedOnlineDeployment
    from azure.identity import DefaultAzureCredential

    model_name, model_version = sys.argv[1], sys.argv[2]                  # harness
    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')

    endpoint = ManagedOnlineEndpoint(name="my-endpoint", auth_mode="key",
                                     description="an MLflow model, no scoring script")
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    took["endpoint"] = time.monotonic() - t0                              # harness

    deployment = ManagedOnlineDeployment(
        name="blue",
        endpoint_name="my-endpoint",
        model=f"azureml:{model_name}:{model_version}",
        instance_type="Standard_DS3_v2",
        instance_count=1,
    )
    ml_client.online_deployments.begin_create_or_update(deployment).result()
    took["deployment"] = time.monotonic() - t0                            # harness

    endpoint = ml_client.online_endpoints.get(name="my-endpoint")
    endpoint.traffic = {"blue": 100}
    ml_client.online_endpoints.begin_create_or_update(endpoint).result()
    took["traffic"] = time.monotonic() - t0                               # harness

    with open("request.json", "w") as fh:
        json.dump({"input_data": {"columns": [0, 1], "index": [0, 1],
                                  "data": [[0.0, 1.0], [3.0, 1.0]]}}, fh)
    response = ml_client.online_endpoints.invoke(endpoint_name="my-endpoint",
                                                 request_file="request.json")
    by_name = ml_client.online_endpoints.invoke(endpoint_name="my-endpoint", deployment_name="blue",
                                                request_file="request.json")
    keys = ml_client.online_endpoints.get_keys(name="my-endpoint")
    logs = ml_client.online_deployments.get_logs(name="blue", endpoint_name="my-endpoint", lines=50)
    endpoint = ml_client.online_endpoints.get(name="my-endpoint")
    deployments = [d.name for d in ml_client.online_deployments.list(endpoint_name="my-endpoint")]
    endpoints = [e.name for e in ml_client.online_endpoints.list()]

    ml_client.online_endpoints.begin_delete(name="my-endpoint").result()
    after = [e.name for e in ml_client.online_endpoints.list()]
    took["deleted"] = time.monotonic() - t0                               # harness
    print("\\nRESULT " + json.dumps({                                      # harness
        "response": json.loads(response), "by_name": json.loads(by_name),  # harness
        "primary_key": keys.primary_key, "secondary_key": keys.secondary_key,  # harness
        "logs": logs, "traffic": endpoint.traffic, "scoring_uri": endpoint.scoring_uri,  # harness
        "state": endpoint.provisioning_state, "deployments": deployments,  # harness
        "endpoints": endpoints, "after": after, "took": took}))                         # harness
''')

# azureml-mlflow's MLflow deployments plugin (target "azureml"), as its docs use it: the tracking
# URI is the target; a deployment config file gives the instance type (without one,
# create_deployment(..., endpoint=...) fails inside the plugin: TypeError on a None config).
MLFLOW_DEPLOY_SCRIPT = textwrap.dedent('''
    import json, sys                                                      # harness
    import pandas as pd
    import mlflow
    from mlflow.deployments import get_deploy_client
    from azureml.core import Workspace

    model_name, model_version = sys.argv[1], sys.argv[2]                  # harness
    ws = Workspace.get(name='workspace_name', subscription_id='subscription_id',
                       resource_group='resource_group_name')
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    client = get_deploy_client(mlflow.get_tracking_uri())

    with open("deployment_config.json", "w") as fh:
        json.dump({"instance_type": "Standard_DS2_v2", "instance_count": 1}, fh)
    config = {"deploy-config-file": "deployment_config.json"}
    df = pd.DataFrame([[0.0, 1.0], [3.0, 1.0]], columns=[0, 1])

    # An endpoint, then a deployment in it, scored by deployment name.
    endpoint = client.create_endpoint("mlflow-endpoint")
    deployment = client.create_deployment("green", model_uri=f"models:/{model_name}/{model_version}",
                                          config=config, endpoint="mlflow-endpoint")
    by_name = client.predict(deployment_name="green", endpoint="mlflow-endpoint", df=df)
    listed = [d["name"] for d in client.list_deployments(endpoint="mlflow-endpoint")]

    # No endpoint given: the plugin creates one named after the deployment, with all its traffic.
    implicit = client.create_deployment("implicit-dep", model_uri=f"models:/{model_name}/{model_version}",
                                        config=config)
    by_traffic = client.predict(deployment_name="implicit-dep", df=df)
    implicit_endpoint = client.get_endpoint("implicit-dep")

    client.delete_deployment("green", endpoint="mlflow-endpoint")
    client.delete_endpoint("mlflow-endpoint")
    client.delete_endpoint("implicit-dep")
    remaining = [e["name"] for e in client.list_endpoints()]
    print("\\nRESULT " + json.dumps({                                      # harness
        "endpoint": endpoint, "deployment": deployment, "implicit": implicit,  # harness
        "by_name": pd.DataFrame(by_name).values.ravel().tolist(),         # harness
        "by_traffic": pd.DataFrame(by_traffic).values.ravel().tolist(),   # harness
        "listed": listed, "implicit_endpoint": implicit_endpoint,         # harness
        "remaining": remaining}, default=str))                            # harness
''')


# label="latest" and "<name>@latest": azure-ai-ml lists versions with $orderBy=createdtime desc&$top=1
# and takes the first item; models.list pages through every version.
LATEST_SCRIPT = textwrap.dedent('''
    import json, sys                                                      # harness
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    latest = ml_client.models.get(name=sys.argv[1], label="latest")
    versions = [m.version for m in ml_client.models.list(name=sys.argv[1])]
    print("\\nRESULT " + json.dumps({"latest": latest.version, "versions": versions}))  # harness
''')


@pytest.fixture(scope="module")
def deploy_emulator(tmp_path_factory):
    yield from seed_identity_emulator(tmp_path_factory, "aml-deploy-real-clients")


def expected(coef: float, rows) -> list:
    return [(2.0 * a - b) * coef + 0.5 for a, b in rows]


def test_azure_ai_ml_deploys_registered_mlflow_model(deploy_emulator, client_python, tmp_path):
    env = deploy_emulator.status()["azureml"]["client_env"]
    registered = run_client(client_python, REGISTER_SCRIPT, env, tmp_path, "deployed-model", "1.0")
    result = run_client(client_python, AZURE_AI_ML_SCRIPT, env, tmp_path, "deployed-model",
                        str(registered["version"]))
    print("azure-ai-ml steps, seconds since start:", result["took"])
    want = expected(1.0, [(0.0, 1.0), (3.0, 1.0)])
    assert result["response"] == pytest.approx(want)
    assert result["by_name"] == pytest.approx(want)
    assert result["primary_key"] and result["secondary_key"] and result["primary_key"] != result["secondary_key"]
    assert result["traffic"] == {"blue": 100}
    assert result["state"] == "Succeeded"
    assert result["scoring_uri"].endswith("/my-endpoint/score")
    assert result["deployments"] == ["blue"]
    assert "my-endpoint" in result["endpoints"] and "my-endpoint" not in result["after"]
    assert isinstance(result["logs"], str) and result["logs"]


def test_azure_ai_ml_latest_label_is_the_newest_version(deploy_emulator, client_python, tmp_path):
    env = deploy_emulator.status()["azureml"]["client_env"]
    for coef in ("1.0", "2.0", "3.0"):
        registered = run_client(client_python, REGISTER_SCRIPT, env, tmp_path, "latest-model", coef)
    result = run_client(client_python, LATEST_SCRIPT, env, tmp_path, "latest-model")
    assert result["latest"] == str(registered["version"]) == "3"  # before the fix: "1", the oldest
    assert sorted(result["versions"], key=int) == ["1", "2", "3"]


def test_mlflow_deployments_client_for_azureml(deploy_emulator, client_python, tmp_path):
    env = deploy_emulator.status()["azureml"]["client_env"]
    registered = run_client(client_python, REGISTER_SCRIPT, env, tmp_path, "mlflow-deployed", "2.0")
    result = run_client(client_python, MLFLOW_DEPLOY_SCRIPT, env, tmp_path, "mlflow-deployed",
                        str(registered["version"]))
    want = expected(2.0, [(0.0, 1.0), (3.0, 1.0)])
    assert result["by_name"] == pytest.approx(want)
    assert result["by_traffic"] == pytest.approx(want)
    assert result["endpoint"]["name"] == "mlflow-endpoint"
    assert result["endpoint"]["properties"]["provisioningState"] == "Succeeded"
    for dep in (result["deployment"], result["implicit"]):
        assert dep["properties"]["provisioningState"] == "Succeeded"
        assert dep["properties"]["model"].endswith(f"/models/mlflow-deployed/versions/{registered['version']}")
        assert dep["properties"]["instanceType"] == "Standard_DS2_v2"
    assert result["listed"] == ["green"]
    assert result["implicit_endpoint"]["properties"]["traffic"] == {"implicit-dep": 100}
    assert not {"mlflow-endpoint", "implicit-dep"} & set(result["remaining"])


SLOW_LOADING_MODEL = """
    import time
    import mlflow

    class SlowToLoad(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            time.sleep(20)

        def predict(self, context, model_input):
            return model_input

    mlflow.models.set_model(SlowToLoad())
"""


def test_operation_status_says_when_to_poll_again(deploy_emulator, tmp_path):
    """azure-core's ARMPolling sleeps the Retry-After of the last status it read, else its default
    (30 s for endpoints): without the header every endpoint create or traffic change took 30 s."""
    aml = deploy_emulator.azureml
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_LOADING_MODEL))
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):  # and back, active experiment included
            mlflow.set_experiment("slow-to-load")
            with mlflow.start_run():
                mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "slow.py"),
                                        registered_model_name="slow-to-load")
    ml = OnlineEndpointsClient.for_workspace(aml)
    ml.create_endpoint("ep-slow")
    resp = ml.call("PUT", "/onlineEndpoints/ep-slow/deployments/slow",
                   ml.deployment_body("azureml:slow-to-load:1"))
    operation = resp.headers["Azure-AsyncOperation"]
    status = requests.get(operation, headers={"Authorization": f"Bearer {ml.token}"}, timeout=60)
    # The model sleeps 20 s while loading, so the deployment is still being provisioned.
    assert status.json()["status"] == "InProgress"
    assert status.headers["Retry-After"] == "1"
    deadline = time.monotonic() + 600
    while (status := requests.get(operation, headers={"Authorization": f"Bearer {ml.token}"},
                                  timeout=60)).json()["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status.json()["status"] == "Succeeded" and "Retry-After" not in status.headers
    ml.delete_endpoint("ep-slow")
