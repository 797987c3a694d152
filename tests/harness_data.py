"""Data the harness tests write through the real MlflowClient: runs, hand-made mirrors, models."""

from __future__ import annotations

import os
import tempfile
import time
import uuid

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from harness.checks.dual_logging import SOURCE_RUN_TAG


def databricks_experiment(client: MlflowClient, user: str, name: str) -> str:
    """An experiment under /Users/<user>/harness-tests/ (the folder made as users do, with the SDK)."""
    from databricks.sdk import WorkspaceClient

    folder = f"/Users/{user}/harness-tests"
    WorkspaceClient().workspace.mkdirs(folder)
    full = f"{folder}/{name}"
    exp = client.get_experiment_by_name(full)
    return exp.experiment_id if exp else client.create_experiment(full)


def source_run(client: MlflowClient, experiment_id: str, epochs: int = 5) -> str:
    """A finished run with params, tags, a metric history (one point per step) and two artifacts."""
    run = client.create_run(experiment_id, run_name=f"src-{uuid.uuid4().hex[:6]}", tags={"team": "ml"})
    rid = run.info.run_id
    now = int(time.time() * 1000)
    client.log_batch(
        rid,
        metrics=[Metric("epoch_loss", 1.0 / (e + 1), now + e, e) for e in range(epochs)],
        params=[Param("epochs", str(epochs)), Param("lr", "0.01")],
        tags=[RunTag("stage", "train")],
    )
    client.log_text(rid, "loss went down\n", "notes.txt")
    client.log_dict(rid, {"features": ["a", "b"]}, "data/features.json")
    client.set_terminated(rid, "FINISHED")
    return rid


def copy_run(src: MlflowClient, run_id: str, dst: MlflowClient, experiment_name: str, *,
             drop_metric_step: tuple[str, int] | None = None, change_artifact: str | None = None,
             change_param: tuple[str, str] | None = None) -> str:
    """A hand-made Azure ML mirror of a run (what linking should produce), optionally broken."""
    run = src.get_run(run_id)
    exp = dst.get_experiment_by_name(experiment_name)
    exp_id = exp.experiment_id if exp else dst.create_experiment(experiment_name)
    tags = {k: v for k, v in run.data.tags.items() if k != "mlflow.runName"}
    tags[SOURCE_RUN_TAG] = run_id
    mirror = dst.create_run(exp_id, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name)
    mid = mirror.info.run_id
    metrics = []
    for key in run.data.metrics:
        for m in src.get_metric_history(run_id, key):
            if drop_metric_step and (m.key, m.step) == drop_metric_step:
                continue
            metrics.append(Metric(m.key, m.value, m.timestamp, m.step))
    params = dict(run.data.params)
    if change_param:
        params[change_param[0]] = change_param[1]
    dst.log_batch(mid, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    with tempfile.TemporaryDirectory() as tmp:
        local = src.download_artifacts(run_id, "", tmp)
        if change_artifact:
            with open(os.path.join(local, change_artifact), "a") as fh:
                fh.write("changed\n")
        for entry in os.listdir(local):
            path = os.path.join(local, entry)
            if os.path.isdir(path):
                dst.log_artifacts(mid, path, entry)
            else:
                dst.log_artifact(mid, path)
    dst.set_terminated(mid, run.info.status, end_time=run.info.end_time)
    return mid
