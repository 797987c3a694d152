"""Issue 32's four-notebook MLOps project (tests/data/mlops_project: train with autolog and
registered_model_name, validate with mlflow.evaluate and aliases, promote, batch-score with
spark_udf from @champion) run unmodified as a Jobs API job, with both model registries: Unity
Catalog with aliases challenger/champion, the workspace registry (where MLflow refuses aliases)
with stages Staging/Production.

Each registry gets two job runs, one through databricks-sdk (``w.jobs.create`` + ``run_now``) and
one through ``harness job run databricks.yml``; every task runs as the workspace's child process,
batch_score with a local Spark session.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.support.mlops_project import (
    aliases,
    bundle_run,
    check_scored,
    sdk_job,
    sdk_run,
    upload_project,
)

pytestmark = pytest.mark.spark


def test_workspace_registry_sdk_job_then_bundle_job(emulator, databricks_ws, sdk, tmp_path):
    folder = f"/Users/{databricks_ws.user}/mlops_project"
    upload_project(sdk, folder)
    job_id = sdk_job(sdk, folder)
    output = "dbfs:/FileStore/mlops/ws/first.csv"
    first = sdk_run(sdk, job_id, registry="databricks", model_name="mlops_ws", output_path=output)
    client = MlflowClient(registry_uri="databricks")
    assert first["promote"] == "champion=1"
    version = client.get_model_version("mlops_ws", "1")
    assert version.current_stage == "Production"  # the workspace registry's champion (no aliases there)
    assert version.tags["validation"] == "passed"
    train_run = MlflowClient().get_run(version.run_id)
    assert train_run.data.params["alpha"] == "0.1"  # autologged from the task's base_parameters
    assert "training_r2_score" in train_run.data.metrics
    check_scored(sdk, first["batch_score"], output, "1")

    second_output = "dbfs:/FileStore/mlops/ws/second.csv"
    second = bundle_run(emulator, tmp_path, registry="databricks", model_name="mlops_ws",
                        output_path=second_output)
    assert second["promote"] == "champion=2"
    stages = {v.version: v.current_stage for v in client.search_model_versions("name='mlops_ws'")}
    assert stages == {"1": "Archived", "2": "Production"}
    check_scored(sdk, second["batch_score"], second_output, "2")


def test_unity_catalog_bundle_job_then_a_failed_validation_keeps_the_champion(emulator, databricks_ws, sdk, tmp_path):
    name = "main.default.mlops_uc"
    output = "dbfs:/FileStore/mlops/uc/first.csv"
    first = bundle_run(emulator, tmp_path, registry="databricks-uc", model_name="mlops_uc", output_path=output)
    client = MlflowClient(registry_uri="databricks-uc")
    assert first["promote"] == "champion=1"
    assert aliases(client, name) == {"challenger": "1", "champion": "1"}
    check_scored(sdk, first["batch_score"], output, "1")

    # the second run's model cannot reach R² 1.5: it is the challenger, champion stays at version 1
    folder = f"/Users/{databricks_ws.user}/mlops_project_uc"
    upload_project(sdk, folder)
    second_output = "dbfs:/FileStore/mlops/uc/second.csv"
    second = sdk_run(sdk, sdk_job(sdk, folder), registry="databricks-uc", model_name="mlops_uc",
                     min_r2="1.5", output_path=second_output)
    assert second["promote"] == "champion=1"
    assert aliases(client, name) == {"challenger": "2", "champion": "1"}
    assert client.get_model_version(name, "2").tags["validation"] == "failed"
    check_scored(sdk, second["batch_score"], second_output, "1")
