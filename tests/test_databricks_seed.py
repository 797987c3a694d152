"""The issue's notebook snippet, unmodified, against a workspace started with `emulator up`.

The snippet runs in a fresh interpreter (as a notebook would: only DATABRICKS_HOST/TOKEN set), once
with ``artifact_path=`` and once with MLflow 3's ``name=``; the second run registers version 2.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import requests

from emulator.control import launcher

EMULATOR = [sys.executable, "-m", "emulator.control.cli"]

SNIPPET = textwrap.dedent(
    """
    import json, os, sys
    import mlflow, numpy as np
    from sklearn.linear_model import LinearRegression
    X = np.random.default_rng(0).random((30, 3)); y = X @ [1.0, 2.0, 3.0]
    model = LinearRegression().fit(X, y)
    with open("notes.txt", "w") as fh:
        fh.write("seed notes")

    from databricks.sdk import WorkspaceClient
    WorkspaceClient().workspace.mkdirs("/Users/someone@example.com/folder")   # as on Databricks
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")          # the workspace model registry of the seed
    mlflow.set_experiment("/Users/someone@example.com/folder/exp")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        for epoch in range(5): mlflow.log_metric("epoch_loss", 1.0 / (epoch + 1), step=epoch)
        mlflow.log_artifact("notes.txt")
        mlflow.sklearn.log_model(model, {KWARG}="model", registered_model_name="model_name")
    p_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(X)
    p_v1 = mlflow.pyfunc.load_model("models:/model_name/1").predict(X)
    notes = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notes.txt")

    client = mlflow.MlflowClient()
    versions = sorted(int(v.version) for v in client.search_model_versions("name='model_name'"))
    latest = mlflow.pyfunc.load_model(f"models:/model_name/{versions[-1]}").predict(X)
    r = client.get_run(run.info.run_id)
    print("RESULT " + json.dumps({
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "artifact_uri": r.info.artifact_uri,
        "params": r.data.params,
        "history": [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "epoch_loss")],
        "notes": open(notes).read(),
        "expected": (X @ [1.0, 2.0, 3.0]).tolist(),
        "p_run": p_run.tolist(), "p_v1": p_v1.tolist(), "p_latest": latest.tolist(),
        "versions": versions,
        "user": r.info.user_id,
    }))
    """
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Both workspaces started by the `emulator up` CLI on free ports."""
    state = tmp_path_factory.mktemp("seed-state")
    env = dict(os.environ)
    env["EMULATOR_DATABRICKS_PORT"] = str(launcher.free_port())
    env["EMULATOR_AZUREML_PORT"] = str(launcher.free_port())
    subprocess.run([*EMULATOR, "up", "--state-dir", str(state)], env=env, check=True, capture_output=True, timeout=180)
    try:
        info = json.loads(
            subprocess.run([*EMULATOR, "status", "--json", "--state-dir", str(state)], env=env,
                           capture_output=True, text=True, timeout=60).stdout
        )["databricks"]
        yield {"url": info["url"], "token": info["token"], "user": info["user"], "state": state}
    finally:
        subprocess.run([*EMULATOR, "down", "--state-dir", str(state)], env=env, capture_output=True, timeout=60)


def run_snippet(workspace, tmp_path, kwarg: str) -> dict:
    script = tmp_path / "notebook.py"
    script.write_text(SNIPPET.replace("{KWARG}", kwarg))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_"))}
    env.update(DATABRICKS_HOST=workspace["url"], DATABRICKS_TOKEN=workspace["token"])
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def check(result: dict, workspace) -> None:
    assert result["params"] == {"alpha": "0.5"}
    assert result["history"] == [[s, 1.0 / (s + 1)] for s in range(5)]
    assert result["notes"] == "seed notes"
    assert result["artifact_uri"] == (
        f"dbfs:/databricks/mlflow-tracking/{result['experiment_id']}/{result['run_id']}/artifacts"
    )
    for key in ("p_run", "p_v1", "p_latest"):
        assert result[key] == pytest.approx(result["expected"])
    assert result["user"] == workspace["user"]


def test_seed_snippet_with_artifact_path_registers_version_1(workspace, tmp_path):
    result = run_snippet(workspace, tmp_path, "artifact_path")
    check(result, workspace)
    assert result["versions"] == [1]
    # The server copied the version's files from the logged model, as Databricks does.
    copy = workspace["state"] / "databricks" / "artifacts" / "model-registry" / "n-model_name" / "v-1"
    assert {p.name for p in copy.iterdir()} >= {"MLmodel", "model.pkl"}


def test_seed_snippet_with_name_registers_version_2(workspace, tmp_path):
    result = run_snippet(workspace, tmp_path, "name")
    check(result, workspace)
    assert result["versions"] == [1, 2]
    # MLflow 3 logged models sit under <experiment>/logged_models/<id>/artifacts.
    headers = {"Authorization": f"Bearer {workspace['token']}"}
    mv = requests.get(f"{workspace['url']}/api/2.0/mlflow/model-versions/get",
                      params={"name": "model_name", "version": "2"}, headers=headers, timeout=60).json()
    assert "/logged_models/m-" in mv["model_version"]["source"]
