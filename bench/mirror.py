"""Mirror lag while linked, and catch-up time for a backlog built up during an Azure ML outage."""

from __future__ import annotations

import statistics
import threading
import time

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric

from emulator.control import mirror_link as control
from harness import links
from harness.workspaces import Emulator


def _backlog(emu: Emulator) -> int:
    db = emu.databricks
    return control.mirror_status(emu.state, db.url, db.token, healthy=True)["backlog"]


def _wait(predicate, timeout: float, what: str, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _mirrored_run(emu: Emulator, run_id: str) -> str:
    return _wait(lambda: (links.mirror_of(emu.databricks, run_id) or {}).get("azureml_run_id"),
                 60, f"the mirror of run {run_id}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lag(emu: Emulator, env: dict, *, points: int, rate_per_s: float) -> dict:
    """Log one point at a time at a steady rate; time from acknowledgement to readable in Azure ML."""
    control.link_workspaces(emu.state, emu.databricks.url)
    db, aml = emu.databricks, emu.azureml
    env["MLFLOW_TRACKING_TOKEN"] = db.token
    source = MlflowClient(tracking_uri=db.url)
    run_id = source.create_run(source.create_experiment(f"/Users/{db.user}/bench-lag")).info.run_id
    mirror_id = _mirrored_run(emu, run_id)
    acked: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = threading.Event()

    def poll():
        # Raw REST, not the client: the poll interval has to stay small next to the lag measured.
        headers = {"Authorization": f"Bearer {aml.token}"}
        while not done.is_set() or len(seen) < len(acked):
            resp = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow/metrics/get-history",
                                params={"run_id": mirror_id, "metric_key": "lag", "max_results": 25000},
                                headers=headers, timeout=10)
            now = time.perf_counter()
            for m in resp.json().get("metrics", []):
                seen.setdefault(int(m["step"]), now)
            if done.is_set() and time.perf_counter() - stop_at > 60:
                break
            time.sleep(0.01)

    stop_at = float("inf")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = 1.0 / rate_per_s
    next_at = time.perf_counter()
    for step in range(points):
        source.log_metric(run_id, "lag", float(step), step=step, synchronous=True)
        acked[step] = time.perf_counter()
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
    stop_at = time.perf_counter()
    done.set()
    poller.join(timeout=90)
    lags = [1000 * (seen[s] - acked[s]) for s in acked if s in seen]
    return {
        "points": points,
        "rate_per_s": rate_per_s,
        "delivered": len(lags),
        "p50_ms": round(statistics.median(lags), 1) if lags else None,
        "p99_ms": round(_percentile(lags, 0.99), 1) if lags else None,
        "max_ms": round(max(lags), 1) if lags else None,
    }


def catch_up(emu: Emulator, env: dict, *, points: int, batch: int = 1000) -> dict:
    """Stop Azure ML, log `points` metric points in Databricks, start Azure ML, time the drain."""
    control.link_workspaces(emu.state, emu.databricks.url)
    db = emu.databricks
    env["MLFLOW_TRACKING_TOKEN"] = db.token
    source = MlflowClient(tracking_uri=db.url)
    run_id = source.create_run(source.create_experiment(f"/Users/{db.user}/bench-catch-up")).info.run_id
    _mirrored_run(emu, run_id)
    _wait(lambda: _backlog(emu) == 0, 120, "an empty backlog")
    emu.stop("azureml")
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, points, batch):
        metrics = [Metric("backlog", float(i), now + i, i) for i in range(first, min(points, first + batch))]
        source.log_batch(run_id, metrics=metrics, synchronous=True)
    logging_s = time.perf_counter() - started
    backlog = _backlog(emu)
    emu.start("azureml")
    started = time.perf_counter()
    _wait(lambda: _backlog(emu) == 0, 600, "the backlog to drain", poll=0.1)
    drain_s = time.perf_counter() - started
    env["MLFLOW_TRACKING_TOKEN"] = emu.azureml.token
    mirrored = MlflowClient(tracking_uri=emu.azureml.tracking_uri).get_metric_history(
        _mirrored_run(emu, run_id), "backlog")
    return {
        "points": points,
        "log_while_down_s": round(logging_s, 2),
        "backlog_events_at_restart": backlog,
        "catch_up_s": round(drain_s, 2),
        "points_per_s": round(points / drain_s, 1),
        "points_in_azureml": len(mirrored),
        "distinct_steps_in_azureml": len({m.step for m in mirrored}),
    }
