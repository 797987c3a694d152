"""Issue 32's MLOps project (tests/data/mlops_project) as a Jobs API job against the Compose
deployment: the `databricks` service on the notebook-jobs image (docker/notebook-jobs: the emulator
on the Spark image), so its notebook tasks, child processes inside that container, have Java and
PySpark for batch_score's spark_udf; Unity Catalog model files go to the `s3` service."""

from __future__ import annotations

import contextlib
import os
import secrets
import time

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from mlflow import MlflowClient

from emulator import settings
from emulator.control import launcher, s3_store
from emulator.control.docker import compose, jobs_image
from harness.compose_fixtures import free_published_ports
from harness.workspaces import DatabricksWorkspace
from tests.support.mlops_project import aliases, check_scored, sdk_job, sdk_run, upload_project

pytestmark = [pytest.mark.docker, pytest.mark.spark]


@pytest.fixture(scope="module")
def notebook_jobs_workspace(emulator_image, tmp_path_factory):
    """The `databricks` and `s3` services of docker-compose.yml, with docker/notebook-jobs/compose.yml
    over it, as a project of their own on free ports; `down -v` at the end."""
    image = jobs_image.build(image=os.environ.get(jobs_image.IMAGE_ENV) or jobs_image.IMAGE,
                             emulator_image=emulator_image)["image"]
    ports = free_published_ports()
    token = f"dapi{secrets.token_hex(16)}"
    env_file = tmp_path_factory.mktemp("notebook-jobs") / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {
        "EMULATOR_IMAGE": emulator_image, jobs_image.IMAGE_ENV: image, **ports,
        "EMULATOR_DATABRICKS_TOKEN": token, "EMULATOR_AZUREML_TOKEN": f"aml{secrets.token_hex(16)}",
        "EMULATOR_PUBLIC_HOST": "127.0.0.1"}.items()))
    base = compose.default_compose_file()
    deployment = compose.Deployment(base.parent.joinpath(*jobs_image.FOLDER, "compose.yml"),
                                    f"emujobs{os.getpid()}{secrets.token_hex(3)}",
                                    command=[*compose.compose_command(), "--env-file", str(env_file), "-f", str(base)])
    url = f"http://127.0.0.1:{ports[settings.PORT_ENV['databricks']]}"
    s3_url = f"http://127.0.0.1:{ports[s3_store.PORT_ENV]}"
    try:
        deployment.compose("up", "-d", "databricks", "s3")
        deadline = time.monotonic() + 300
        while not (launcher.healthy(url, timeout=1.0) and s3_store.healthy(s3_url, timeout=1.0)):
            assert time.monotonic() < deadline, deployment.logs(tail=40)
            time.sleep(1)
        yield DatabricksWorkspace(url, token, settings.DEFAULT_DATABRICKS_USER, s3_url)
    finally:
        with contextlib.suppress(compose.ComposeError):
            deployment.compose("down", "-v", "--remove-orphans", timeout=300)


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
