"""Online deployments get the model's environment (issue 31, item 4): Azure ML builds the inference
image from the MLflow model's requirements; the emulator installs what its own interpreter lacks
into a cached environment layered over it (emulator.services.azureml.model_environments).

Judged by the real clients: a LightGBM model trained and registered with azureml-mlflow in a venv
that has lightgbm, deployed and scored with azure-ai-ml; a model requiring a package that does not
exist ends Failed with ImageBuildFailure naming it; the scikit-learn model deploys with no build.
The emulator builds into a fresh environment directory (so the first build is exercised every
run), with the user's cached downloads (UV_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from unittest import mock

import mlflow
import pytest

from emulator.control.state import StateDir
from emulator.control.user_cache import cache_root
from emulator.services.azureml import model_environments
from emulator.settings import MODEL_ENVS_ENV
from harness import client_venvs
from harness.workspaces import Emulator
from tests.test_azureml_real_clients import SEED_IDENTITY, client_python, run_client  # noqa: F401

LIGHTGBM = "lightgbm==4.6.0"
MISSING_PACKAGE = "no-such-package-emulator-test==1.0"
SHARED_UV_CACHE = cache_root() / "model-envs" / ".cache" / "uv"  # downloads only; builds stay fresh

# Trains a LightGBM model and registers it through the azureml-mlflow plugin, as a user would.
REGISTER_LIGHTGBM = textwrap.dedent('''
    import json, sys
    import numpy as np
    import lightgbm as lgb
    import mlflow
    import azureml.mlflow
    from azureml.core import Workspace

    ws = Workspace.get(name='workspace_name', subscription_id='subscription_id',
                       resource_group='resource_group_name')
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    mlflow.set_experiment("deploy-lightgbm")
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 4, size=(300, 2))
    model = lgb.LGBMRegressor(n_estimators=30, verbose=-1).fit(X, 2 * X[:, 0] - X[:, 1])
    info = mlflow.lightgbm.log_model(model, name="model", registered_model_name=sys.argv[1])
    rows = [[0.5, 1.0], [3.0, 1.0]]
    print("RESULT " + json.dumps({"version": info.registered_model_version,
                                  "expected": model.predict(np.array(rows)).tolist(), "rows": rows}))
''')

# azure-ai-ml user code: endpoint, no-code deployment of a registered model, invoke, logs.
DEPLOY_SCRIPT = textwrap.dedent('''
    import json, sys, time                                                # harness
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import ManagedOnlineEndpoint, ManagedOnlineDeployment
    from azure.identity import DefaultAzureCredential

    endpoint_name, model, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])  # harness
    ml_client = MLClient(DefaultAzureCredential(), 'subscription_id', 'resource_group_name', 'workspace_name')
    ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=endpoint_name, auth_mode="key")).result()
    deployment = ManagedOnlineDeployment(name="blue", endpoint_name=endpoint_name, model=model,
                                         instance_type="Standard_DS3_v2", instance_count=1)
    t0, error, response = time.monotonic(), None, None                    # harness
    try:
        ml_client.online_deployments.begin_create_or_update(deployment).result()
    except Exception as exc:                                              # harness
        error = f"{type(exc).__name__}: {exc}"                            # harness
    took = time.monotonic() - t0                                          # harness
    state = ml_client.online_deployments.get(name="blue", endpoint_name=endpoint_name).provisioning_state
    if error is None:                                                     # harness
        with open("request.json", "w") as fh:
            json.dump({"input_data": {"columns": [0, 1], "index": list(range(len(rows))), "data": rows}}, fh)
        response = json.loads(ml_client.online_endpoints.invoke(
            endpoint_name=endpoint_name, deployment_name="blue", request_file="request.json"))
    logs = ml_client.online_deployments.get_logs(name="blue", endpoint_name=endpoint_name, lines=300)
    print("\\nRESULT " + json.dumps({"error": error, "state": state, "response": response,  # harness
                                    "logs": logs, "took": took}))          # harness
''')


@pytest.fixture(scope="module")
def envs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model-envs")


@pytest.fixture(scope="module")
def env_emulator(tmp_path_factory, envs_dir):
    state = StateDir(tmp_path_factory.mktemp("aml-deploy-envs"))
    state.save_config(dict(SEED_IDENTITY))
    with mock.patch.dict(os.environ, {MODEL_ENVS_ENV: str(envs_dir), "UV_CACHE_DIR": str(SHARED_UV_CACHE)}):
        emu = Emulator(state.root).up()
    yield emu
    emu.down()


@pytest.fixture(scope="module")
def lightgbm_python():
    """The client stack plus lightgbm: where the user trains the model (built once, cached by pins)."""
    try:
        return str(client_venvs.ensure("azureml-lightgbm", (*client_venvs.AZUREML_CLIENTS, LIGHTGBM),
                                       log=lambda line: print(line, flush=True)))
    except client_venvs.ClientVenvError as exc:
        pytest.fail(f"could not build the lightgbm client venv: {exc}")


def _built(envs_dir: Path) -> set[str]:
    return {p.name for p in envs_dir.glob("env-*")}


def _installing(requirement: str, logs: str) -> bool:
    """The deployment log's progress line for installing ``requirement`` (among others) with uv."""
    return any("Environment: installing " in line and requirement in line.split(" with uv")[0]
               for line in logs.splitlines())


def _importable_here(module: str) -> bool:
    """Whether the emulator's (the test's) interpreter can import ``module``."""
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def _log_here(aml, experiment: str, log) -> None:
    """Log and register a model with this (the emulator's) interpreter's MLflow."""
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        mlflow.set_tracking_uri(aml.tracking_uri)
        mlflow.set_registry_uri(aml.tracking_uri)
        mlflow.set_experiment(experiment)
        try:
            with mlflow.start_run():
                log()
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def test_sklearn_model_deploys_without_building(env_emulator, client_python, envs_dir, tmp_path):
    """The project's own scikit-learn model, logged where the emulator runs: nothing to install."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0], [3.0, 1.0]])
    model = LinearRegression().fit(X, X @ np.array([2.0, -1.0]) + 0.5)
    _log_here(env_emulator.azureml, "sk-fast",
              lambda: mlflow.sklearn.log_model(model, name="model", registered_model_name="sk-fast"))
    before = _built(envs_dir)
    env = env_emulator.status()["azureml"]["client_env"]
    result = run_client(client_python, DEPLOY_SCRIPT, env, tmp_path, "ep-sk-fast", "azureml:sk-fast:1",
                        "[[0.0, 1.0], [3.0, 1.0]]")
    print("sklearn deployment took", result["took"])
    assert result["error"] is None and result["state"] == "Succeeded"
    assert result["response"] == pytest.approx([(2.0 * a - b) + 0.5 for a, b in [(0.0, 1.0), (3.0, 1.0)]])
    # The fast path: everything the model needs is in the inference server's Python.
    assert "no environment to build" in result["logs"]
    assert "installing" not in result["logs"]
    assert _built(envs_dir) == before


def test_lightgbm_model_gets_its_environment_built(env_emulator, client_python, lightgbm_python, envs_dir,
                                                   tmp_path):
    assert not _importable_here("lightgbm"), "the test needs an emulator interpreter without lightgbm"
    env = env_emulator.status()["azureml"]["client_env"]
    registered = run_client(lightgbm_python, REGISTER_LIGHTGBM, env, tmp_path, "lgbm-model")
    result = run_client(client_python, DEPLOY_SCRIPT, env, tmp_path, "ep-lgbm",
                        f"azureml:lgbm-model:{registered['version']}", json.dumps(registered["rows"]))
    print("lightgbm deployment (first build) took", result["took"])
    # Before the change: DeploymentFailed, ModuleNotFoundError: No module named 'lightgbm'.
    assert result["error"] is None, result["logs"][-3000:]
    assert result["state"] == "Succeeded"
    assert result["response"] == pytest.approx(registered["expected"])
    assert _installing(LIGHTGBM, result["logs"])
    assert "Environment: built in" in result["logs"]
    assert len(_built(envs_dir)) == 1
    assert not _importable_here("lightgbm")  # installed into the model's environment only

    # A second deployment of the same model reuses the environment.
    again = run_client(client_python, DEPLOY_SCRIPT, env, tmp_path, "ep-lgbm-again",
                       f"azureml:lgbm-model:{registered['version']}", json.dumps(registered["rows"]))
    print("lightgbm deployment (warm) took", again["took"])
    assert again["state"] == "Succeeded" and again["response"] == pytest.approx(registered["expected"])
    assert "reusing env-" in again["logs"] and "installing" not in again["logs"]
    assert len(_built(envs_dir)) == 1


MISSING_MODEL = """
    import mlflow

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    mlflow.models.set_model(Echo())
"""


def test_uninstallable_requirement_fails_with_image_build_failure(env_emulator, client_python, envs_dir,
                                                                   tmp_path):
    (tmp_path / "echo.py").write_text(textwrap.dedent(MISSING_MODEL))
    _log_here(env_emulator.azureml, "missing-package", lambda: mlflow.pyfunc.log_model(
        name="model", python_model=str(tmp_path / "echo.py"), extra_pip_requirements=[MISSING_PACKAGE],
        registered_model_name="needs-missing-package"))
    before = _built(envs_dir)
    env = env_emulator.status()["azureml"]["client_env"]
    result = run_client(client_python, DEPLOY_SCRIPT, env, tmp_path, "ep-missing",
                        "azureml:needs-missing-package:1", "[[1.0, 2.0]]")
    print("azure-ai-ml raised:", result["error"])
    assert result["state"] == "Failed"
    # azure-ai-ml raises the operation's error: (ImageBuildFailure) ... naming the package.
    assert "ImageBuildFailure" in result["error"] and MISSING_PACKAGE in result["error"]
    logs = result["logs"]
    assert _installing(MISSING_PACKAGE, logs)  # progress
    assert "no-such-package-emulator-test" in logs.split("installing", 1)[1]  # the installer's own reason
    assert "Image build failed" in logs
    assert _built(envs_dir) == before  # nothing half-built left to be reused
    assert not list(envs_dir.glob(".env-*.tmp-*"))


def _model_dir(root: Path, requirements: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text("\n".join(["mlflow", *requirements]) + "\n")
    return root


def test_concurrent_builds_build_once_and_a_crashed_build_is_redone(tmp_path):
    """Two deployments needing the same environment at once: one builds, the other waits and reuses
    it. A build that died half-way (its temp dir, or a directory without the marker) is redone."""
    envs = tmp_path / "envs"
    model = _model_dir(tmp_path / "model", ["tomli-w==1.2.0"])
    logs: list[list[str]] = [[], []]
    results: list = [None, None]

    def deploy(i: int) -> None:
        with mock.patch.dict(os.environ, {"UV_CACHE_DIR": str(SHARED_UV_CACHE)}):
            results[i] = model_environments.prepare(model, envs, logs[i].append, timeout=600)

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    assert results[0] and results[0] == results[1]
    python, root = results[0]
    assert sum("installing tomli-w==1.2.0" in line for line in logs[0] + logs[1]) == 1
    assert sum("reusing env-" in line for line in logs[0] + logs[1]) == 1  # (mostly "meanwhile")
    probe = subprocess.run([python, "-c", "import tomli_w, mlflow, emulator; print(mlflow.__version__)"],
                           capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr  # its own package and the emulator's, layered
    assert not _importable_here("tomli_w")

    # A crash mid-build: a leftover temp dir, and an environment directory without its marker.
    key = root.name.removeprefix("env-")
    stale = envs / f".env-{key}.tmp-99999-1"
    stale.mkdir()
    (root / model_environments._DONE).unlink()
    log: list[str] = []
    with mock.patch.dict(os.environ, {"UV_CACHE_DIR": str(SHARED_UV_CACHE)}):
        assert model_environments.prepare(model, envs, log.append, timeout=600) == (python, root)
    assert any("installing tomli-w==1.2.0" in line for line in log)
    assert not stale.exists() and (root / model_environments._DONE).is_file()


def test_pip_builds_when_uv_is_absent(tmp_path, monkeypatch):
    """The Docker image has no uv: pip (run against the layered environment, where it sees the
    emulator's packages) installs only what is missing."""
    monkeypatch.setattr(model_environments, "_uv", lambda: None)  # as in an interpreter without uv
    model = _model_dir(tmp_path / "model", ["inflection==0.5.1"])
    log: list[str] = []
    python, root = model_environments.prepare(model, tmp_path / "envs", log.append, timeout=600)
    assert any("installing inflection==0.5.1 with pip" in line for line in log)
    assert any("Successfully installed inflection-0.5.1" in line for line in log)
    probe = subprocess.run([python, "-c", "import inflection, mlflow, emulator"], capture_output=True, text=True,
                           check=False)
    assert probe.returncode == 0, probe.stderr
    assert not _importable_here("inflection")


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_without_a_reachable_index_the_server_python_serves_and_says_so(tmp_path, monkeypatch, installer):
    """Offline (a CI container without egress): Azure ML would install the model's extra requirements;
    the emulator cannot, so it serves in its own Python as before environments were built, and the
    log says which packages are missing, instead of failing every model whose requirements MLflow
    inferred beyond the server's (the seed model's, under Compose, lists rich)."""
    if installer == "pip":
        monkeypatch.setattr(model_environments, "_uv", lambda: None)
    elif model_environments._uv() is None:
        pytest.skip("no uv here")
    for name in ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/simple")  # nothing listens on the discard port
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names the connection error only when it retries
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    model = _model_dir(tmp_path / "model", ["inflection==0.5.1"])
    log: list[str] = []
    python, root = model_environments.prepare(model, tmp_path / f"envs-{installer}", log.append, timeout=600)
    assert (python, root) == (sys.executable, None), log
    assert any("no package index could be reached" in line and "without inflection==0.5.1" in line
               for line in log), log
    assert not list((tmp_path / f"envs-{installer}").glob("env-*"))  # nothing half-built looks finished


def test_requirements_are_read_as_mlflow_writes_them(tmp_path):
    """requirements.txt first (options such as -c/-r are not packages); else conda.yaml's pip list."""
    (tmp_path / "requirements.txt").write_text("mlflow==3.17.2\n-c constraints.txt\n# a comment\n"
                                               "lightgbm==4.6.0  # trailing\n")
    assert model_environments.model_requirements(tmp_path) == (["mlflow==3.17.2", "lightgbm==4.6.0"],
                                                               "requirements.txt")
    conda = tmp_path / "conda-only"
    conda.mkdir()
    (conda / "conda.yaml").write_text("channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip<=24\n"
                                      "- pip:\n  - mlflow==3.17.2\n  - xgboost==3.0.0\nname: mlflow-env\n")
    assert model_environments.model_requirements(conda) == (["mlflow==3.17.2", "xgboost==3.0.0"], "conda.yaml")
    (conda / "conda.yaml").write_text("dependencies: [unclosed\n")
    with pytest.raises(model_environments.EnvironmentBuildFailed, match="conda.yaml is not valid YAML"):
        model_environments.model_requirements(conda)
    missing, notes = model_environments.split_requirements(
        ["mlflow==0.0.1", "lightgbm==4.6.0", "pywin32==306; sys_platform == 'win32'"])
    assert missing == ["lightgbm==4.6.0"]  # the marker excludes pywin32 here
    assert notes and "mlflow==0.0.1 asked" in notes[0]
