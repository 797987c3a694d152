"""Tracking overhead: log_batch and single log_metric through the emulator vs a stock server.

The loads are interleaved: each is cut into rounds and every round runs one chunk of each load,
in an order rotated round by round, so that whatever else the machine does falls on all of them
alike (run one after the other, a burst of load elsewhere made ratios swing by 0.3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mlflow import MlflowClient
from mlflow.entities import Metric

from bench.mirror import _wait as wait_for


class Target:
    """One server: its URL, its token (None: no auth, the stock server) and, if linked, a
    ``drained()`` to wait on after each chunk so that one load's mirror work is not timed in another's."""

    def __init__(self, url: str, token: str | None, experiment_prefix: str, drained: Callable[[], bool] | None = None):
        self.url, self.token, self.prefix, self.drained = url, token, experiment_prefix, drained

    def client(self, env: dict) -> MlflowClient:
        # The vanilla client reads MLFLOW_TRACKING_TOKEN at each request: set before every chunk.
        if self.token:
            env["MLFLOW_TRACKING_TOKEN"] = self.token
        else:
            env.pop("MLFLOW_TRACKING_TOKEN", None)
        return MlflowClient(tracking_uri=self.url)


class _Load:
    def __init__(self, target: Target, env: dict, experiment: str):
        self.target, self.env = target, env
        client = target.client(env)
        self.run_id = client.create_run(client.create_experiment(target.prefix + experiment)).info.run_id
        self.done = 0  # calls made so far (the next call's points continue the steps)
        self.seconds = 0.0

    def chunk(self, calls: int) -> float:
        client = self.target.client(self.env)
        started = time.perf_counter()
        for _ in range(calls):
            self.call(client, self.done)
            self.done += 1
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        if self.target.drained is not None:
            wait_for(self.target.drained, 300, "the mirror backlog to drain")
        return elapsed


class BatchLoad(_Load):
    points = 1000

    def call(self, client: MlflowClient, n: int) -> None:
        base, now = n * self.points, int(time.time() * 1000)
        metrics = [Metric("loss", 1.0 / (base + i + 1), now + i, base + i) for i in range(self.points)]
        client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def report(self) -> dict:
        return {"calls": self.done, "points_per_call": self.points, "seconds": round(self.seconds, 3),
                "points_per_s": round(self.done * self.points / self.seconds, 1), "run_id": self.run_id}


class MetricLoad(_Load):
    def call(self, client: MlflowClient, n: int) -> None:
        client.log_metric(self.run_id, "loss", 1.0 / (n + 1), step=n, synchronous=True)

    def report(self) -> dict:
        return {"calls": self.done, "seconds": round(self.seconds, 3),
                "ms_per_call": round(1000 * self.seconds / self.done, 2), "run_id": self.run_id}


def interleaved(kind: type[_Load], targets: dict[str, Target], env: dict, *, calls: int, rounds: int,
                experiment: str) -> dict[str, dict]:
    """``calls`` per target in ``rounds`` chunks, rotating the order of the targets each round."""
    loads = {name: kind(target, env, experiment) for name, target in targets.items()}
    names = list(loads)
    per_round = [calls // rounds + (1 if r < calls % rounds else 0) for r in range(rounds)]
    round_seconds: dict[str, list[float]] = {name: [] for name in names}
    for r, n in enumerate(per_round):
        for name in names[r % len(names):] + names[: r % len(names)]:
            round_seconds[name].append(round(loads[name].chunk(n), 3))
    return {name: {**loads[name].report(), "rounds": round_seconds[name]} for name in names}

