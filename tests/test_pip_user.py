"""A pip user's first hour: the wheel installed with [pytest] into a fresh venv outside the checkout,
then a small user test suite run with the plugin (no source tree on the path)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from harness import client_venvs

ROOT = Path(__file__).resolve().parents[1]

USER_TESTS = '''
import mlflow
from harness.pytest_plugin import assert_versions_increment


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return [2 * x for x in model_input["x"]]


def test_my_model_registers_v1_then_v2(fresh_workspaces, databricks_workspace):
    mlflow.set_tracking_uri("databricks")
    mlflow.set_registry_uri("databricks")
    mlflow.set_experiment(f"/Users/{databricks_workspace.user}/pip-user")
    for _ in range(2):
        with mlflow.start_run():
            mlflow.log_param("lr", 0.1)
            mlflow.pyfunc.log_model(name="model", python_model=Doubler(), registered_model_name="pip_user_model")
    assert_versions_increment("pip_user_model")
    import pandas as pd

    assert list(mlflow.pyfunc.load_model("models:/pip_user_model/2").predict(pd.DataFrame({"x": [1, 2]}))) == [2, 4]


def test_each_test_starts_empty(fresh_workspaces):
    client = mlflow.MlflowClient("databricks", "databricks")
    assert client.search_registered_models() == []


def test_a_typo_in_the_model_name_fails(fresh_workspaces):
    import pytest

    with pytest.raises(pytest.fail.Exception, match="does not exist"):
        assert_versions_increment("pip_user_modle")
'''


def _pins() -> tuple[str, ...]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return tuple(project["dependencies"] + project["optional-dependencies"]["pytest"])


def test_wheel_with_pytest_extra_runs_a_user_suite(tmp_path):
    python = client_venvs.ensure("pip-user", _pins())  # deps cached by pins; the wheel is new each run
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, timeout=600)
    wheel = next(wheels.glob("mlflow_azure_emulator-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--force-reinstall", str(wheel)], check=True, timeout=600)
    project = tmp_path / "my-project"
    project.mkdir()
    (project / "test_my_model.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST", "DATABRICKS_", "MLFLOW_"))}
    env["HOME"] = str(tmp_path)  # the user's machine: nothing of ours in ~
    run = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 passed" in run.stdout
    # The plugin came from the installed wheel, not from this checkout.
    where = subprocess.run([str(python), "-c", "import harness; print(harness.__file__)"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120).stdout
    assert str(ROOT) not in where and "site-packages" in where
