"""Under Docker Compose, the clients users actually run, unmodified:

* the real Azure client stack (azureml-mlflow, azureml-core, azure-ai-ml, in their own venv) from
  the host through the published HTTPS port (arrangement B) and CONNECT proxy (A), and from a
  container on the Compose network by the real Azure host names (the network aliases), no proxy;
* MLflow 3's default Unity Catalog registry, its model files in the `s3` service, kept across
  `emulator down` / `up --docker`.

One `emulator up --docker` for the module, as a user would start it: the state dir carries the
seed's placeholder ids and `emulator status --json` gives every client its environment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from emulator import settings
from emulator.control.docker import compose
from emulator.control.state import StateDir
from emulator.services.azureml import client_env
from emulator.services.databricks.uc.store import BAD_NAME
from harness.compose_fixtures import deployment_env
from tests.test_azureml_real_clients import (  # noqa: F401 (client_python is a fixture)
    BIG_BYTES,
    MLCLIENT_SCRIPT,
    SEED_IDENTITY,
    SEED_SCRIPT,
    check_seed_result,
    client_python,
    run_client,
    scope,
)
from tests.test_azureml_local_upload import EXPECTED as LOCAL_FOLDER_EXPECTED
from tests.test_azureml_local_upload import REGISTER_SCRIPT
from tests.test_databricks_uc import SEED as UC_SEED

pytestmark = pytest.mark.docker

UC_LOAD = """
import json, mlflow, numpy as np
X = np.random.default_rng(0).random((30, 3))
mlflow.set_tracking_uri("databricks")          # registry: MLflow 3's default, databricks-uc
print("RESULT " + json.dumps(mlflow.pyfunc.load_model("models:/main.default.seed_model/1").predict(X).tolist()))
"""


class CliDeployment:
    def __init__(self, state: Path, env: dict[str, str], project: str):
        self.state, self.env, self.project = state, env, project

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args, "--state-dir", str(self.state)],
                              capture_output=True, text=True, env=self.env, timeout=900)
        assert not check or proc.returncode == 0, f"emulator {' '.join(args)} ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)


@pytest.fixture(scope="module")
def deployed(emulator_image, tmp_path_factory):
    """`emulator up --docker` on free host ports, the Azure ML workspace named with the seed's ids."""
    state = tmp_path_factory.mktemp("compose-clients") / "state"
    StateDir(state).save_config(dict(SEED_IDENTITY))
    project = f"emuclients{os.getpid()}{secrets.token_hex(3)}"
    env = deployment_env("MLFLOW_", "DATABRICKS_")
    env.update({compose.PROJECT_ENV: project, "EMULATOR_IMAGE": emulator_image})
    dep = CliDeployment(state, env, project)
    try:
        dep.cli("up", "--docker")
        yield dep
    finally:
        dep.cli("down", "--volumes", check=False)


def test_the_deployment_does_not_come_back_with_the_engine(deployed):
    """The session's restart policy "no" reaches `emulator up --docker` run as a user would: before,
    this fixture's environment dropped it (with the session's other EMULATOR_* settings), so a
    killed session left three containers that every later `dockerd` start brought back."""
    from emulator.control.docker import engine

    policies = engine.restart_policies(deployed.project)
    assert len(policies) == 3 and set(policies.values()) == {"no"}, policies


def test_seed_with_real_azure_clients_through_the_published_tls_port(deployed, client_python, tmp_path):
    """Arrangement B against the containers: 127.0.0.1:<published TLS port>, a 70 MiB artifact
    (Put Block + Put Block List through Docker's port forwarding)."""
    aml = deployed.status()["azureml"]
    assert aml["tls_url"] == f"https://127.0.0.1:{deployed.env[settings.AZUREML_TLS_PORT_ENV]}"
    # The CA comes out of the container's volume into the state dir for host clients.
    assert Path(aml["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    result = run_client(client_python, SEED_SCRIPT, {**aml["client_env"], "SEED_BIG_BYTES": str(BIG_BYTES)}, tmp_path)
    check_seed_result(result, aml["tls_url"].removeprefix("https://"))
    assert result["big_sha256"] == result["big_sent_sha256"]


def test_register_model_from_local_folder_through_the_published_tls_port(deployed, client_python, tmp_path):
    """azureml-mlflow's local-folder registration (LocalUpload + blob PUTs) against the containers."""
    aml = deployed.status()["azureml"]
    result = run_client(client_python, REGISTER_SCRIPT, aml["client_env"], tmp_path, aml["subscription_id"],
                        aml["resource_group"], aml["workspace_name"], "local-folder-compose")
    assert [int(v) for v in result["versions"]] == [1, 2]
    assert all(s.startswith("azureml://artifacts/LocalUpload/") for s in result["sources"])
    for v in ("v1", "v2"):
        assert result[v] == pytest.approx(LOCAL_FOLDER_EXPECTED), v


def test_azure_ai_ml_through_the_published_proxy(deployed, client_python, tmp_path):
    """Arrangement A: the real host names, tunnelled by the container's CONNECT proxy."""
    aml = deployed.status()["azureml"]
    assert aml["proxy_url"] == f"http://127.0.0.1:{deployed.env[settings.AZUREML_PROXY_PORT_ENV]}"
    mlc = run_client(client_python, MLCLIENT_SCRIPT, aml["client_env_proxy"], tmp_path)
    assert mlc["uri"] == f"azureml://westeurope.api.azureml.ms/mlflow/v2.0/{scope()}"


def test_azure_ai_ml_registers_a_local_model_folder_through_the_published_proxy(deployed, client_python, tmp_path):
    """Model(path=<local dir>): the upload to the default datastore (the blob host's network alias
    and certificate name, through the proxy) and the version PUT, inside the container."""
    from tests.test_azureml_datastores import REGISTER_LOCAL

    aml = deployed.status()["azureml"]
    result = run_client(client_python, REGISTER_LOCAL, aml["client_env_proxy"], tmp_path, "compose-local-model")
    assert result["versions"] == ["1", "2", "3"] and result["same"]
    assert "/datastores/workspaceblobstore/paths/LocalUpload/" in result["paths"][0]


def _venv_mounts(python: str) -> dict[str, dict]:
    """Bind mounts that let a container run the host's client venv as is: the venv, and the
    interpreter it was made from (same Debian release as the image's base, so same libraries)."""
    venv = Path(python).parent.parent
    home = Path(next(line.split("=", 1)[1].strip() for line in (venv / "pyvenv.cfg").read_text().splitlines()
                     if line.startswith("home")))
    prefix = home.parent
    mounts = {str(venv): {"bind": str(venv), "mode": "ro"}}
    if prefix != Path("/usr"):  # a system python is the image's own /usr/bin/python3.11
        mounts[str(prefix)] = {"bind": str(prefix), "mode": "ro"}
    return mounts


def test_seed_from_a_container_on_the_compose_network_by_real_azure_names(deployed, client_python, tmp_path):
    """The network aliases: a client container reaches management.azure.com, <region>.api.azureml.ms
    and the blob host as they are, on 443, trusting the CA served at http://azureml:5002/__emulator/ca.pem;
    no proxy, no ARM_CLOUD_METADATA_URL."""
    from emulator.control.docker import engine

    aml = deployed.status()["azureml"]
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    (work / "client.py").write_text(SEED_SCRIPT)
    # The bundle a container builds for itself: its system CAs plus the emulator CA, fetched in-network.
    fetch = ("import certifi, urllib.request; ca = urllib.request.urlopen('http://azureml:5002/__emulator/ca.pem', "
             "timeout=30).read().decode(); open('/work/bundle.pem', 'w').write(open(certifi.where()).read() + ca)")
    env = {"HOME": "/work/home", "LANG": "C.UTF-8",
           **client_env.compose_network(aml["identity_header"], "/work/bundle.pem")}
    assert not {"HTTPS_PROXY", "https_proxy", "ARM_CLOUD_METADATA_URL"} & set(env)
    client = engine.client()
    network = f"{deployed.project}_default"
    for command in (["-c", fetch], ["/work/client.py"]):
        container = client.containers.run(
            deployed.env["EMULATOR_IMAGE"], command, entrypoint=[client_python], user="0", working_dir="/work",
            environment=env, network=network, detach=True,
            volumes={str(work): {"bind": "/work", "mode": "rw"}, **_venv_mounts(client_python)})
        try:
            code = container.wait(timeout=900)["StatusCode"]
            out = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        assert code == 0, out[-6000:]
    result = json.loads(next(line for line in reversed(out.splitlines()) if line.startswith("RESULT "))[7:])
    check_seed_result(result, "westeurope.api.azureml.ms")


def test_unity_catalog_errors_and_harness_check_under_compose(deployed, tmp_path, monkeypatch):
    """The registry's own refusals come from the container as in local mode, and `harness check
    --registry databricks-uc` finds the s3 service through `emulator status` of a Docker deployment."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    for key, value in deployed.status()["databricks"]["client_env"].items():
        monkeypatch.setenv(key, value)
    uc = MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc")
    with pytest.raises(MlflowException) as err:
        uc.create_registered_model("default.model_name")
    assert BAD_NAME in str(err.value)
    with pytest.raises(MlflowException) as err:
        uc.create_registered_model("nocat.default.m")
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST" and "Catalog 'nocat' does not exist." in str(err.value)

    # The published s3 port serves only what the workspace's credentials sign; its admin routes
    # (seal, reset) only the workspace.
    s3 = deployed.status()["databricks"]["client_env"]["MLFLOW_S3_ENDPOINT_URL"]
    anonymous = requests.get(f"{s3}/uc-models/models/", timeout=60)
    assert anonymous.status_code == 403 and b"AccessDenied" in anonymous.content
    for admin in ("/__emulator/s3/reset", "/__emulator/s3/seal"):
        refused = requests.post(f"{s3}{admin}", json={"prefix": "models"}, timeout=60,
                                headers={"Authorization": f"Bearer {deployed.status()['databricks']['token']}"})
        assert refused.status_code == 401, (admin, refused.text)

    report = tmp_path / "report.json"
    check = subprocess.run([sys.executable, "-m", "harness.cli", "check", "--state-dir", str(deployed.state),
                            "--link", "--no-spark", "--registry", "databricks-uc", "--registrations", "2",
                            "--concurrency", "2", "--model-name", "compose_check", "--json", str(report)],
                           env=deployed.env, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert checks["seed_scenario"]["details"]["model"] == "main.default.compose_check v1"
    assert checks["registry_increments[databricks-uc, 2 at once]"]["passed"]


def test_unity_catalog_seed_with_model_files_in_the_s3_service_kept_across_down_up(deployed, tmp_path):
    """MLflow 3's default registry under Compose: v1, v2, alias; the files in the `s3` service (in the
    Databricks volume), still loadable after `emulator down` and `up --docker`."""
    db = deployed.status()["databricks"]
    assert db["client_env"]["MLFLOW_S3_ENDPOINT_URL"] == f"http://127.0.0.1:{deployed.env['EMULATOR_S3_PORT']}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_"))},
           **db["client_env"]}

    def client(script: str) -> dict:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             timeout=900, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-4000:]
        return json.loads(out.stdout.split("RESULT ", 1)[1])

    result = client(UC_SEED)
    assert result["registry_uri"] == "databricks-uc"
    assert [int(v) for v in result["versions"]] == [1, 2]
    for key in ("v1", "v2", "alias"):
        assert np.allclose(result[key], result["expected"]), key
    assert result["status"] == ["READY", "READY"]

    deployed.cli("down")  # volumes kept
    deployed.cli("up", "--docker")
    assert deployed.status()["s3"]["healthy"]
    assert np.allclose(client(UC_LOAD), result["expected"])
