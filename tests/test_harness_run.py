"""`harness run`: a script runs with an older real MLflow client (the version matrix's cached venv)
against the running workspaces, and the harness exits with the script's exit code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from harness import client_run, client_venvs

OLD = "2.9.2"  # a pin set of client_venvs.MATRIX: its venv is reused, nothing is downloaded

REPRO = """
import os, sys
import mlflow
mlflow.set_tracking_uri("databricks")
mlflow.set_experiment("/Shared/harness-run")
with mlflow.start_run() as run:
    mlflow.log_param("client", mlflow.__version__)
    mlflow.set_tag("python", sys.executable)
print("RUN", run.info.run_id)
sys.exit(int(os.environ.get("REPRO_EXIT", "0")))
"""


ROOT = Path(__file__).resolve().parent.parent


def invoke(*args, **env):
    """The real `harness` command in a process of its own (the script inherits its stdout and stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "harness.cli", "run", *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False)


def test_old_mlflow_logs_a_run_to_databricks_and_the_exit_code_passes_through(emulator, tmp_path, monkeypatch):
    script = tmp_path / "repro.py"
    script.write_text(REPRO)
    result = invoke("--state-dir", str(emulator.state.root), "--mlflow", OLD, "--json",
                    "--", "python", str(script), REPRO_EXIT="3")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)  # with --json stdout is the report; the script's output went to stderr
    venv = client_venvs.venv_dir(f"mlflow-{OLD}")
    assert report["venv"] == str(venv) and report["venv_cached"] is True
    assert report["command"][0] == str(venv / "bin" / "python") and report["exit_code"] == 3
    run_id = next(line.split()[1] for line in result.stderr.splitlines() if line.startswith("RUN "))
    ws = emulator.databricks
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ws.token)
    run = MlflowClient("databricks").get_run(run_id)
    assert run.data.params["client"] == OLD  # the old client logged it, not the project's own
    assert run.data.tags["python"].startswith(str(venv))


def test_the_azureml_tracking_uri_and_environment_reach_the_command(emulator, tmp_path, monkeypatch):
    script = tmp_path / "env.py"
    # The old client logs to Azure ML with nothing but what `harness run` set (MLFLOW_TRACKING_URI, token).
    script.write_text("import json, os, mlflow\n"
                      "mlflow.set_experiment('harness-run-aml')\n"
                      "with mlflow.start_run() as run:\n"
                      "    mlflow.log_metric('m', 1.5)\n"
                      "print(json.dumps({'run_id': run.info.run_id, 'env': dict(os.environ)}))\n")
    result = invoke("--state-dir", str(emulator.state.root), "--mlflow", OLD, "--tracking-uri", "azureml",
                    "--", "python", str(script))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    env = out["env"]
    aml, db = emulator.azureml, emulator.databricks
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)  # the project's own client reads it back
    assert MlflowClient(aml.tracking_uri).get_run(out["run_id"]).data.metrics == {"m": 1.5}
    assert env["MLFLOW_TRACKING_URI"] == aml.tracking_uri
    assert env["MLFLOW_TRACKING_TOKEN"] == aml.token
    assert (env["DATABRICKS_HOST"], env["DATABRICKS_TOKEN"]) == (db.url, db.token)
    assert env["IDENTITY_ENDPOINT"].startswith(aml.url)  # azureml-core / azure-ai-ml find the emulated ARM
    assert env["PATH"].startswith(str(client_venvs.venv_dir(f"mlflow-{OLD}") / "bin"))


def test_a_missing_command_exits_127(emulator):
    result = invoke("--state-dir", str(emulator.state.root), "--mlflow", OLD, "--", "no-such-command-here")
    assert result.returncode == 127 and "no-such-command-here" in result.stderr


def test_no_emulator_exits_125_before_building_anything(tmp_path):
    result = invoke("--state-dir", str(tmp_path), "--mlflow", "0.0.1", "--", sys.executable, "-c", "")
    assert result.returncode == 125 and "not running" in result.stderr
    assert not client_venvs.venv_dir("mlflow-0.0.1", ("mlflow==0.0.1",)).exists()


def test_without_a_client_pin_it_is_a_usage_error(tmp_path):
    result = invoke("--state-dir", str(tmp_path), "--", "python", "-V")
    assert result.returncode == 2 and "--mlflow" in result.stderr


@pytest.mark.parametrize("args, pins", [
    # A known MLflow: the matrix's pins (its cached venv), the named package replacing its own.
    ({"mlflow": OLD}, client_venvs.MATRIX[OLD]),
    ({"mlflow": OLD, "databricks_sdk": "0.20.0"},
     tuple(p if not p.startswith("databricks-sdk") else "databricks-sdk==0.20.0" for p in client_venvs.MATRIX[OLD])),
    ({"mlflow": "2.8.0", "azureml_mlflow": "1.55.0", "extra": ("Scikit_Learn==1.3.2",)},
     ("mlflow==2.8.0", "azureml-mlflow==1.55.0", "Scikit_Learn==1.3.2")),
])
def test_pins(args, pins):
    assert client_run.stack(**args).pins == pins


def test_a_bad_with_is_refused():
    with pytest.raises(client_run.PinError, match="not a requirement"):
        client_run.stack(extra=("==1.0",))
