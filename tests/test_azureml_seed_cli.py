"""`emulator up`, then the seed's AML-only code as a separate script, unmodified apart from the
import: it finds the workspace through the state dir (no URL or token in its environment)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from emulator.control import launcher

SEED = textwrap.dedent("""
    import json, sys
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression
    from harness.azureml import Workspace   # instead of: from azureml.core import Workspace

    subscription_id, resource_group, workspace_name = sys.argv[1:4]
    ws = Workspace.get(name=workspace_name, subscription_id=subscription_id,
                       resource_group=resource_group)
    uri = ws.get_mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("/Users/someone@example.com/seed_folder/seed_exp")
    for loss in (0.8, 0.4):
        mlflow.log_metric('epoch_loss', loss)
    X = np.array([[0.0], [1.0], [2.0]]); y = np.array([1.0, 3.0, 5.0])
    model = LinearRegression().fit(X, y)
    info = mlflow.sklearn.log_model(model, artifact_path="model", registered_model_name="model_name")
    info2 = mlflow.sklearn.log_model(model, artifact_path="model2", registered_model_name="model_name")
    run_id = mlflow.active_run().info.run_id
    mlflow.end_run()
    pred = mlflow.pyfunc.load_model("models:/model_name/2").predict(X).tolist()
    print(json.dumps({"uri": uri, "run_id": run_id, "versions": [info.registered_model_version,
                      info2.registered_model_version], "pred": pred}))
""")


def test_seed_script_against_emulator_up(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI", "EMULATOR_AZUREML_TOKEN",
                        "AZUREML_EMULATOR_URL", "IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    env.update(EMULATOR_STATE_DIR=str(state), EMULATOR_DATABRICKS_PORT=str(launcher.free_port()),
               EMULATOR_AZUREML_PORT=str(launcher.free_port()),
               EMULATOR_AZUREML_IDENTITY_HEADER="configured-identity-secret")
    cli = [sys.executable, "-m", "emulator.control.cli"]
    up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        info = json.loads(subprocess.run([*cli, "status", "--json"], env=env, capture_output=True,
                                         text=True, timeout=60).stdout)["azureml"]
        script = tmp_path / "seed.py"
        script.write_text(SEED)
        run = subprocess.run(
            [sys.executable, str(script), info["subscription_id"], info["resource_group"],
             info["workspace_name"]],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["uri"] == info["tracking_uri"]
        assert [str(v) for v in result["versions"]] == ["1", "2"]
        assert result["pred"] == pytest.approx([1.0, 3.0, 5.0])
        # The metrics landed in the Azure ML workspace, under the seed's experiment path.
        check = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from mlflow import MlflowClient
            c = MlflowClient({info['tracking_uri']!r})
            e = c.get_experiment_by_name("/Users/someone@example.com/seed_folder/seed_exp")
            print([m.value for m in c.get_metric_history({result['run_id']!r}, "epoch_loss")], e.experiment_id)
        """)], env={**env, "MLFLOW_TRACKING_TOKEN": info["token"]}, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stderr[-2000:]
        assert check.stdout.startswith("[0.8, 0.4]")

        # The same code with a managed identity: IDENTITY_HEADER is the configured secret.
        assert info["identity_header"] == "configured-identity-secret"
        msi = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import mlflow
            from harness.azureml import Workspace, MsiAuthentication
            ws = Workspace.get(name={info['workspace_name']!r}, subscription_id={info['subscription_id']!r},
                               resource_group={info['resource_group']!r})
            assert isinstance(ws._auth, MsiAuthentication)
            mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
            mlflow.set_experiment("/Users/someone@example.com/seed_folder/msi_exp")
            mlflow.log_metric("epoch_loss", 0.1)
            print("ok")
        """)], env={**env, "IDENTITY_ENDPOINT": info["identity_endpoint"],
                    "IDENTITY_HEADER": "configured-identity-secret"},
            capture_output=True, text=True, timeout=120)
        assert msi.returncode == 0 and msi.stdout.startswith("ok"), msi.stderr[-2000:]
        wrong = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from harness.azureml import Workspace
            Workspace.get(name={info['workspace_name']!r}, subscription_id={info['subscription_id']!r},
                          resource_group={info['resource_group']!r})
        """)], env={**env, "IDENTITY_ENDPOINT": info["identity_endpoint"], "IDENTITY_HEADER": "wrong"},
            capture_output=True, text=True, timeout=120)
        assert wrong.returncode != 0 and "unauthorized_client" in wrong.stderr
    finally:
        subprocess.run([*cli, "down"], env=env, capture_output=True, timeout=120)
