"""Tracking overhead: log_batch and single log_metric through the emulator vs a stock server."""

from __future__ import annotations

import time

from mlflow import MlflowClient
from mlflow.entities import Metric


def _client(url: str, token: str | None, monkey_env: dict) -> MlflowClient:
    # The vanilla client sends MLFLOW_TRACKING_TOKEN as its bearer token.
    if token:
        monkey_env["MLFLOW_TRACKING_TOKEN"] = token
    else:
        monkey_env.pop("MLFLOW_TRACKING_TOKEN", None)
    return MlflowClient(tracking_uri=url)


def log_batch_load(url: str, token: str | None, env: dict, *, calls: int, points: int,
                   experiment: str) -> dict:
    client = _client(url, token, env)
    exp_id = client.create_experiment(experiment)
    run_id = client.create_run(exp_id).info.run_id
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for call in range(calls):
        base = call * points
        metrics = [Metric("loss", 1.0 / (base + i + 1), now + base + i, base + i) for i in range(points)]
        client.log_batch(run_id, metrics=metrics, synchronous=True)
    elapsed = time.perf_counter() - started
    return {"calls": calls, "points_per_call": points, "seconds": round(elapsed, 3),
            "points_per_s": round(calls * points / elapsed, 1), "run_id": run_id}


def log_metric_load(url: str, token: str | None, env: dict, *, calls: int, experiment: str) -> dict:
    client = _client(url, token, env)
    exp_id = client.create_experiment(experiment)
    run_id = client.create_run(exp_id).info.run_id
    started = time.perf_counter()
    for step in range(calls):
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step, synchronous=True)
    elapsed = time.perf_counter() - started
    return {"calls": calls, "seconds": round(elapsed, 3),
            "ms_per_call": round(1000 * elapsed / calls, 2), "run_id": run_id}
