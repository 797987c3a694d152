"""The seed's AML-only code with the REAL Azure client stack: azureml-mlflow, azureml-core, azure-ai-ml.

The clients run unmodified in their own venv (harness.client_venvs: the plugin needs mlflow 3.15),
as subprocesses whose environment is only PATH, a temporary HOME and what ``emulator status --json``
gives (``azureml.client_env``: loopback, arrangement B; ``azureml.client_env_proxy``: the real Azure
host names through the emulator's CONNECT proxy, arrangement A). The emulated workspace carries the
seed's literal placeholder ids, so its cells run exactly as published.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
import time

import mlflow
import pytest
from mlflow import MlflowClient

from emulator.control.state import StateDir
from harness import client_venvs, links
from harness.workspaces import Emulator

# The seed's placeholders, used as the emulated workspace's identity.
SEED_IDENTITY = {"subscription_id": "subscription_id", "resource_group": "resource_group_name",
                 "workspace_name": "workspace_name"}
SEED_EXPERIMENT = "/Users/{user_name}/{experiment_folder}/{experiment_name}"
BIG_BYTES = 70 * 1024**2  # over azure-storage-blob's 64 MiB single-put limit: Put Block + Put Block List

# The seed's cells (shared/seed, "Rilevamento MLflow nelle aree di lavoro" onwards) as published,
# except `import mlflow.azureml` (gone since MLflow 2). Its tracking cell ("include the following
# code in your script") goes right after Workspace.get, before the experiment is set. Marked lines
# (# harness) only build the model the seed assumes, and report what happened.
SEED_SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys                                         # harness
    import numpy as np                                                    # harness
    from sklearn.linear_model import LinearRegression                    # harness

    import mlflow
    import azureml.mlflow
    import azureml.core

    from azureml.core import Workspace

    subscription_id = 'subscription_id'

    # Azure Machine Learning resource group NOT the managed resource group
    resource_group = 'resource_group_name'

    #Azure Machine Learning workspace name, NOT Azure Databricks workspace
    workspace_name = 'workspace_name'

    # Instantiate Azure Machine Learning workspace
    ws = Workspace.get(name=workspace_name,
                       subscription_id=subscription_id,
                       resource_group=resource_group)

    uri = ws.get_mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)

    #Set MLflow experiment.
    experimentName = "/Users/{user_name}/{experiment_folder}/{experiment_name}"
    mlflow.set_experiment(experimentName)

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])     # harness
    y = X @ np.array([2.0, -1.0]) + 0.5                                   # harness
    model = LinearRegression().fit(X, y)                                  # harness
    loss = np.float64(0.125)                                              # harness

    import mlflow
    mlflow.log_metric('epoch_loss', loss.item())

    mlflow.log_param("alpha", "0.5")                                      # harness
    mlflow.log_metrics({"async_loss": 0.5}, synchronous=False).wait()     # harness
    with open("note.txt", "w") as fh:                                     # harness
        fh.write("written through the azureml-mlflow plugin")            # harness
    mlflow.log_artifact("note.txt", artifact_path="notes")                # harness
    big = int(os.environ.get("SEED_BIG_BYTES", "0"))                      # harness
    if big:                                                               # harness
        with open("big.bin", "wb") as fh:                                 # harness
            for i in range(big // 2**20):                                 # harness
                fh.write(hashlib.sha256(str(i).encode()).digest() * 32768)  # harness
        mlflow.log_artifact("big.bin", artifact_path="big")               # harness

    v1 = mlflow.sklearn.log_model(model, artifact_path = "model",
                                  registered_model_name = 'model_name')
    v2 = mlflow.sklearn.log_model(model, artifact_path = "model",
                                  registered_model_name = 'model_name')

    run_id = mlflow.active_run().info.run_id                              # harness
    mlflow.end_run()                                                      # harness
    result = {"uri": uri, "run_id": run_id,                               # harness
              "versions": [v1.registered_model_version, v2.registered_model_version]}
    for key, model_uri in (("v1", f"models:/model_name/{v1.registered_model_version}"),  # harness
                           ("v2", f"models:/model_name/{v2.registered_model_version}"),  # harness
                           ("run", f"runs:/{run_id}/model")):             # harness
        result[key] = mlflow.pyfunc.load_model(model_uri).predict(X).tolist()  # harness
    if big:                                                               # harness
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="big/big.bin")  # harness
        result["big_sha256"] = hashlib.sha256(open(local, "rb").read()).hexdigest()  # harness
        result["big_sent_sha256"] = hashlib.sha256(open("big.bin", "rb").read()).hexdigest()  # harness
    print("RESULT " + json.dumps(result))                                 # harness
''')

MLCLIENT_SCRIPT = textwrap.dedent('''
    import json
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    print("RESULT " + json.dumps({"uri": ml_client.workspaces.get('workspace_name').mlflow_tracking_uri}))
''')

# Reads a run (id in argv) that another client logged, through the plugin.
READ_SCRIPT = textwrap.dedent('''
    import json, sys
    import mlflow
    from azureml.core import Workspace

    ws = Workspace.get(name='workspace_name', subscription_id='subscription_id',
                       resource_group='resource_group_name')
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    run = mlflow.get_run(sys.argv[1])
    listed = [f.path for f in mlflow.MlflowClient().list_artifacts(sys.argv[1], sys.argv[2])]
    local = mlflow.artifacts.download_artifacts(run_id=sys.argv[1], artifact_path=sys.argv[3])
    print("RESULT " + json.dumps({"artifact_uri": run.info.artifact_uri, "metrics": run.data.metrics,
                                  "listed": listed, "content": open(local).read()}))
''')


@pytest.fixture(scope="session")
def client_python():
    """The real Azure client stack's python (built once, cached under ~/.cache/mlflow-azure-emulator/venvs)."""
    try:
        return str(client_venvs.ensure("azureml-clients", log=lambda line: print(line, flush=True)))
    except client_venvs.ClientVenvError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def seed_emulator(tmp_path_factory):
    """Both workspaces; the Azure ML one named with the seed's placeholder ids."""
    yield from seed_identity_emulator(tmp_path_factory, "aml-real-clients")


def seed_identity_emulator(tmp_path_factory, name: str):
    """Both workspaces up (the Azure ML one named with the seed's placeholder ids) for a fixture to yield."""
    state = StateDir(tmp_path_factory.mktemp(name))
    state.save_config(dict(SEED_IDENTITY))
    emu = Emulator(state.root).up()
    try:
        yield emu
    finally:
        emu.down()


def run_client(python: str, script: str, env: dict, tmp_path, *args: str, timeout: float = 900) -> dict:
    """Run ``script`` in the client venv with only ``env`` (plus PATH and a throwaway HOME)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    path = tmp_path / "client.py"
    path.write_text(script)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **env}
    started = time.monotonic()
    proc = subprocess.run([python, str(path), *args], cwd=tmp_path, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    print(f"client script took {time.monotonic() - started:.1f}s")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"client failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def scope() -> str:
    return ("subscriptions/subscription_id/resourceGroups/resource_group_name/providers/"
            "Microsoft.MachineLearningServices/workspaces/workspace_name")


def check_seed_result(result: dict, netloc: str) -> None:
    # azureml-core's get_mlflow_tracking_uri appends "?" (it formats an empty query string).
    assert result["uri"].rstrip("?") == f"azureml://{netloc}/mlflow/v2.0/{scope()}"
    v1, v2 = (int(v) for v in result["versions"])
    assert v2 == v1 + 1
    expected = [0.5 + 2.0 * a - b for a, b in ((0, 1), (1, 0), (2, 3), (3, 1))]
    for key in ("v1", "v2", "run"):
        assert result[key] == pytest.approx(expected), key


@pytest.fixture
def vanilla_token(seed_emulator, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", seed_emulator.azureml.token)
    return seed_emulator.azureml.token


def test_seed_with_real_clients_loopback(seed_emulator, client_python, tmp_path, vanilla_token):
    """Arrangement B: ARM_CLOUD_METADATA_URL, everything at 127.0.0.1:<tls port>; a 70 MiB artifact."""
    info = seed_emulator.status()["azureml"]
    tls_netloc = info["tls_url"].removeprefix("https://")
    result = run_client(client_python, SEED_SCRIPT, {**info["client_env"], "SEED_BIG_BYTES": str(BIG_BYTES)},
                        tmp_path)
    check_seed_result(result, tls_netloc)
    assert result["big_sha256"] == result["big_sent_sha256"]

    mlc = run_client(client_python, MLCLIENT_SCRIPT, info["client_env"], tmp_path)
    assert mlc["uri"] == f"azureml://{tls_netloc}/mlflow/v2.0/{scope()}"

    # The same run through the vanilla http:// URI (MLflow 3.17.2 here): same params, metrics, files.
    client = MlflowClient(seed_emulator.azureml.tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"epoch_loss": 0.125, "async_loss": 0.5}
    assert run.info.experiment_id == client.get_experiment_by_name(SEED_EXPERIMENT).experiment_id
    note = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notes/note.txt",
                                               tracking_uri=seed_emulator.azureml.tracking_uri,
                                               dst_path=str(tmp_path / "vanilla"))
    assert open(note).read() == "written through the azureml-mlflow plugin"
    big = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="big/big.bin",
                                              tracking_uri=seed_emulator.azureml.tracking_uri,
                                              dst_path=str(tmp_path / "vanilla"))
    digest = hashlib.sha256()
    with open(big, "rb") as fh:
        while chunk := fh.read(2**20):
            digest.update(chunk)
    assert digest.hexdigest() == result["big_sent_sha256"]
    mlflow.set_tracking_uri(seed_emulator.azureml.tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/model_name/{result['versions'][1]}")
    finally:
        mlflow.set_tracking_uri(None)
    assert model.predict([[0.0, 1.0]]).tolist() == pytest.approx([-0.5])


def test_seed_with_real_clients_through_proxy(seed_emulator, client_python, tmp_path):
    """Arrangement A: the real Azure host names, tunnelled by the emulator's CONNECT proxy."""
    info = seed_emulator.status()["azureml"]
    result = run_client(client_python, SEED_SCRIPT, info["client_env_proxy"], tmp_path)
    check_seed_result(result, "westeurope.api.azureml.ms")
    mlc = run_client(client_python, MLCLIENT_SCRIPT, info["client_env_proxy"], tmp_path)
    assert mlc["uri"] == f"azureml://westeurope.api.azureml.ms/mlflow/v2.0/{scope()}"


def test_vanilla_logged_run_and_linked_databricks_mirror_read_through_plugin(
        seed_emulator, client_python, tmp_path, monkeypatch):
    """What vanilla clients log (here: the Databricks mirror's copy of a linked run) the plugin reads."""
    db, aml = seed_emulator.databricks, seed_emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)  # for reading Azure ML with the vanilla client
    links.link(db, aml)
    try:
        for key, value in db.env.items():
            monkeypatch.setenv(key, value)
        mlflow.set_tracking_uri("databricks")
        mlflow.set_experiment(f"/Users/{db.user}/linked-for-plugin")
        with mlflow.start_run() as run:
            mlflow.log_metric("db_loss", 0.75)
            (tmp_path / "db.txt").write_text("logged in Databricks")
            mlflow.log_artifact(str(tmp_path / "db.txt"), artifact_path="from_db")
        deadline = time.monotonic() + 120
        while not (mirror := links.mirror_of(db, run.info.run_id)) or not _mirrored(aml, mirror):
            assert time.monotonic() < deadline, f"the run was not mirrored: {mirror}"
            time.sleep(0.2)
    finally:
        mlflow.set_tracking_uri(None)
        links.unlink(db)
    info = seed_emulator.status()["azureml"]
    result = run_client(client_python, READ_SCRIPT, info["client_env"], tmp_path,
                        mirror["azureml_run_id"], "from_db", "from_db/db.txt")
    assert result["artifact_uri"].startswith("azureml://experiments/")
    assert result["metrics"] == {"db_loss": 0.75}
    assert result["listed"] == ["from_db/db.txt"]
    assert result["content"] == "logged in Databricks"


def _mirrored(aml, mirror: dict) -> bool:
    files = MlflowClient(aml.tracking_uri).list_artifacts(mirror["azureml_run_id"], "from_db")
    return [f.path for f in files] == ["from_db/db.txt"]
