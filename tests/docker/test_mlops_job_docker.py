"""Issue 32's MLOps project (tests/data/mlops_project) as a Jobs API job against the Compose
deployment of `emulator up --docker --notebook-jobs`: the `databricks` service on the notebook-jobs
image (docker/notebook-jobs: the emulator on the Spark image), so its notebook tasks, child processes
inside that container, have Java and PySpark for batch_score's spark_udf; Unity Catalog model files
go to the `s3` service."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from mlflow import MlflowClient

from emulator.control.docker import jobs_image
from harness.compose_fixtures import deployment_env
from harness.workspaces import DatabricksWorkspace
from tests.support.mlops_project import aliases, check_scored, sdk_job, sdk_run, upload_project

pytestmark = [pytest.mark.docker, pytest.mark.spark]


def _cli(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args], capture_output=True, text=True,
                          env=env, timeout=900, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"emulator {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def notebook_jobs_workspace(emulator_image, tmp_path_factory):
    """`emulator up --docker --notebook-jobs`, as a user starts it (the `databricks` service on the
    notebook-jobs image through docker/notebook-jobs/compose.yml) on free ports; `down --volumes` at the end."""
    image = jobs_image.build(image=os.environ.get(jobs_image.IMAGE_ENV) or jobs_image.IMAGE,
                             emulator_image=emulator_image)["image"]
    state = str(tmp_path_factory.mktemp("notebook-jobs") / "state")
    env = deployment_env()
    env.update({"EMULATOR_IMAGE": emulator_image, jobs_image.IMAGE_ENV: image,
                "EMULATOR_COMPOSE_PROJECT": f"emujobs{os.getpid()}{secrets.token_hex(3)}"})
    # Without the flag's image check: a missing image is a clear refusal, not a Compose pull error.
    missing = _cli("up", "--docker", "--notebook-jobs", "--state-dir", state, check=False,
                   env={**env, jobs_image.IMAGE_ENV: "mlflow-azure-emulator-notebook-jobs:absent"})
    assert missing.returncode == 1 and "emulator images build --offline --notebook-jobs" in missing.stderr
    try:
        _cli("up", "--docker", "--notebook-jobs", "--state-dir", state, env=env)
        info = json.loads(_cli("status", "--json", "--state-dir", state, env=env).stdout)
        assert json.loads((Path(state) / "deployment.json").read_text())["overrides"][0].endswith(
            "notebook-jobs/compose.yml")
        db = info["databricks"]
        yield DatabricksWorkspace(db["url"], db["token"], db["user"], info["s3"]["url"])
    finally:
        # `down` reads the recorded deployment, overrides included.
        _cli("down", "--volumes", "--state-dir", state, env=env, check=False)


def test_the_project_runs_as_a_job_in_the_container_with_spark(notebook_jobs_workspace, monkeypatch):
    ws = notebook_jobs_workspace
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    sdk = WorkspaceClient(config=Config(host=ws.url, token=ws.token, retry_timeout_seconds=60))
    folder = f"/Users/{ws.user}/mlops_project"
    upload_project(sdk, folder)
    output = "dbfs:/FileStore/mlops/docker.csv"
    exits = sdk_run(sdk, sdk_job(sdk, folder), registry="databricks-uc", model_name="mlops_docker",
                    output_path=output)
    assert exits["promote"] == "champion=1"
    assert aliases(MlflowClient(tracking_uri="databricks", registry_uri="databricks-uc"),
                   "main.default.mlops_docker") == {"challenger": "1", "champion": "1"}
    check_scored(sdk, exits["batch_score"], output, "1")
