"""Deploying to Azure ML with the REAL clients (issue 13, item 5): unmodified azure-ai-ml user code
(MLClient, ManagedOnlineEndpoint, ManagedOnlineDeployment of a registered MLflow model, traffic,
invoke, keys, logs, delete) and azureml-mlflow's MLflow deployments client, run in the client venv
(harness.client_venvs) as subprocesses with a temporary HOME and ``emulator status --json``'s
``azureml.client_env`` (arrangement B, loopback). The client is the judge of the server's shapes.
"""

from __future__ import annotations

import textwrap

import pytest

from emulator.state import StateDir
from harness.workspaces import Emulator
from tests.test_azureml_real_clients import SEED_IDENTITY, client_python, run_client  # noqa: F401

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


@pytest.fixture(scope="module")
def deploy_emulator(tmp_path_factory):
    state = StateDir(tmp_path_factory.mktemp("aml-deploy-real-clients"))
    state.save_config(dict(SEED_IDENTITY))
    emu = Emulator(state.root).up()
    yield emu
    emu.down()


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
