"""Reset in place (POST /__emulator/reset) of a workspace holding 100 runs and 10 model versions,
against what a stock server offers instead: a restart on a new store (issue 16: <= 0.2 s)."""

from __future__ import annotations

import statistics
import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from emulator.control.live_reset import request_reset


def populate(url: str, token: str, env: dict, *, runs: int, versions: int, user: str) -> None:
    """``runs`` runs (a param and a few metric points each) and ``versions`` versions of one model."""
    env["MLFLOW_TRACKING_TOKEN"] = token
    # Run files (dbfs:/) go through the Databricks client, which reads the workspace from these
    # (never whatever the calling process had: a test session may hold another workspace's).
    env["DATABRICKS_HOST"], env["DATABRICKS_TOKEN"] = url, token
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    exp_id = client.create_experiment(f"/Users/{user}/bench-reset")
    now = int(time.time() * 1000)
    run_ids = []
    for i in range(runs):
        run_id = client.create_run(exp_id).info.run_id
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (s + 1), now, s) for s in range(5)],
                         params=[Param("i", str(i))], synchronous=True)
        run_ids.append(run_id)
    client.create_registered_model("bench-reset-model")
    for i in range(versions):
        client.log_text(run_ids[i], "model files", "model/MLmodel")  # Databricks fails empty sources
        run = client.get_run(run_ids[i])
        client.create_model_version("bench-reset-model", f"{run.info.artifact_uri}/model", run_id=run_ids[i])


def reset_times(url: str, token: str, env: dict, *, user: str, rounds: int, runs: int = 100,
                versions: int = 10) -> dict:
    """Fill, reset, check it is empty; ``rounds`` times. Wall time of the HTTP call, client side."""
    seconds = []
    for _ in range(rounds):
        populate(url, token, env, runs=runs, versions=versions, user=user)
        started = time.perf_counter()
        request_reset(url, token)
        seconds.append(time.perf_counter() - started)
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        left = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
        if left or client.search_registered_models():
            raise RuntimeError(f"reset left data behind ({left} runs)")
    return {"runs": runs, "model_versions": versions, "rounds": rounds,
            "seconds": [round(s, 4) for s in seconds], "median_s": round(statistics.median(seconds), 4)}
