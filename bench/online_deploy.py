"""Issue 33 target 5: an online deployment through the real azure-ai-ml client, from the endpoint's
``begin_create_or_update`` until the first score is answered, for a model whose environment is
already present (a scikit-learn model: the inference server's own Python has what it needs).

The user code is the Azure ML docs' (MLClient, ManagedOnlineEndpoint, ManagedOnlineDeployment of a
registered MLflow model, invoke), run in the azureml-clients venv (harness.client_venvs) with
``emulator status``'s ``client_env`` (HTTPS on loopback, managed identity). The clock starts after
MLClient is built (imports and credentials are the client's own cost, not the deployment's).
Several rounds on one emulator, each with a new endpoint: the first is a fresh workspace's first
deployment (it also starts the inference servers' warm parent, and the client builds its schemas
on first use); the figure is the median of the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import mlflow

from emulator.control.state import StateDir
from harness import client_venvs, mlflow_uris
from harness.workspaces import Emulator

SEED_IDENTITY = {"subscription_id": "subscription_id", "resource_group": "resource_group_name",
                 "workspace_name": "workspace_name"}
MODEL_NAME = "bench-online-deploy"

# As the Azure ML docs write it; lines marked # bench only time the steps.
CLIENT_SCRIPT = textwrap.dedent('''
    import json, sys, time                                                # bench
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import ManagedOnlineEndpoint, ManagedOnlineDeployment
    from azure.identity import DefaultAzureCredential

    model, rounds = sys.argv[1], int(sys.argv[2])                         # bench
    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    ml_client.online_endpoints.list()                                     # bench: a first call (token) off the clock
    with open("request.json", "w") as fh:
        json.dump({"input_data": {"columns": [0, 1], "index": [0, 1], "data": [[0.0, 1.0], [3.0, 1.0]]}}, fh)
    out = []                                                              # bench
    for i in range(rounds):                                               # bench
        name = f"bench-ep-{i}"                                            # bench
        t0 = time.monotonic()                                             # bench
        endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key")
        ml_client.online_endpoints.begin_create_or_update(endpoint).result()
        t1 = time.monotonic()                                             # bench
        deployment = ManagedOnlineDeployment(name="blue", endpoint_name=name, model=model,
                                             instance_type="Standard_DS3_v2", instance_count=1)
        ml_client.online_deployments.begin_create_or_update(deployment).result()
        t2 = time.monotonic()                                             # bench
        response = ml_client.online_endpoints.invoke(endpoint_name=name, deployment_name="blue",
                                                     request_file="request.json")
        t3 = time.monotonic()                                             # bench
        out.append({"endpoint_s": t1 - t0, "deployment_s": t2 - t1, "first_score_s": t3 - t2,
                    "total_s": t3 - t0, "response": json.loads(response)})  # bench
        ml_client.online_endpoints.begin_delete(name=name).result()
    print("\\nRESULT " + json.dumps(out))                                  # bench
''')


def _register(aml, work: Path) -> str:
    """An sklearn model registered through MLflow (the emulator's Python has scikit-learn)."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    model = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) + 0.5)
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):  # and back, active experiment included
            mlflow.set_experiment("bench-online-deploy")
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL_NAME)
    return f"azureml:{MODEL_NAME}:{info.registered_model_version}"


def _run_client(python: str, env: dict, work: Path, *args: str) -> list[dict]:
    home = work / "home"
    home.mkdir(exist_ok=True)
    script = work / "online_deploy_client.py"
    script.write_text(CLIENT_SCRIPT)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **env}
    proc = subprocess.run([python, str(script), *args], cwd=work, env=full_env, capture_output=True, text=True,
                          timeout=1800, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the azure-ai-ml client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure(work: Path, rounds: int = 4) -> dict:
    python = str(client_venvs.ensure("azureml-clients", log=lambda line: None))
    state = StateDir(work / "online-deploy-state")
    state.save_config(dict(SEED_IDENTITY))
    emu = Emulator(state.root).up()
    try:
        model = _register(emu.azureml, work)
        env = emu.status()["azureml"]["client_env"]
        runs = _run_client(python, env, work, model, str(rounds))
    finally:
        emu.down()
    want = [0.5 + 2.0 * 0.0 - 1.0, 0.5 + 2.0 * 3.0 - 1.0]
    for run in runs:
        if [round(x, 6) for x in run.pop("response")] != [round(x, 6) for x in want]:
            raise RuntimeError(f"the deployment answered a wrong score: {run}")
    per_round = [{k: round(v, 2) for k, v in run.items()} for run in runs]
    warm = runs[1:] or runs
    return {"client": "azure-ai-ml " + _version(python), "rounds": rounds, "per_round": per_round,
            "first_round_total_s": per_round[0]["total_s"],
            **{f"median_{k}": round(_median([r[k] for r in warm]), 2)
               for k in ("endpoint_s", "deployment_s", "first_score_s", "total_s")}}


def _version(python: str) -> str:
    return subprocess.run([python, "-c", "from importlib.metadata import version; print(version('azure-ai-ml'))"],
                          capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":  # python -m bench.online_deploy [--rounds N]: this figure alone
    import argparse
    import shutil
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.online_deploy")
    parser.add_argument("--rounds", type=int, default=4, help="at least 2: the first is a fresh workspace's")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="emulator-bench-deploy-"))
    try:
        load = os.getloadavg()
        stdout = os.dup(1)
        os.dup2(2, 1)  # MLflow's and the emulator's chatter to stderr: stdout is the JSON document
        try:
            result = measure(folder, max(2, args.rounds))
        finally:
            sys.stdout.flush()
            os.dup2(stdout, 1)
            os.close(stdout)
        print(json.dumps({**result, "load_average": [round(x, 2) for x in (*load, *os.getloadavg())]}, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
