"""The emulator's bulk metric insert (emulator.stores.metric_writes) stores exactly what MLflow's own
SQL store stores: same points, same latest values, same refusals, with MLflow's store as oracle."""

from __future__ import annotations

import math
import re

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking._tracking_service.utils import _tracking_store_registry

from emulator.stores.metric_writes import BulkMetricWrites
from emulator.stores.mlflow_stores import store_uri

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

NAN, INF = float("nan"), float("inf")


def _stock(tmp_path):
    return SqlAlchemyStore(f"sqlite:///{tmp_path / 'stock.db'}", str(tmp_path / "stock-artifacts"))


def _emulator(tmp_path, role):
    # Through MLflow's store registry, as the server gets it: pins the entry points too.
    store = _tracking_store_registry.get_store(store_uri(role, tmp_path / f"{role}.db"), str(tmp_path / role))
    assert isinstance(store, BulkMetricWrites)
    return store


def _point(m) -> tuple:
    return (m.key, "nan" if math.isnan(m.value) else m.value, m.timestamp, m.step)


def _outcome(call):
    try:
        call()
        return None
    except MlflowException as exc:
        return exc.error_code, re.sub(r"\b[0-9a-f]{32}\b", "<run>", exc.message)  # ids differ per store


# Batches that exercise every rule: duplicates within a batch and of stored points, NaN and
# infinities, ties once NaN is stored as 0, an older step arriving later, many keys at once.
BATCHES = [
    [Metric("a", 1.0, 10, 0), Metric("a", 1.0, 10, 0),
     Metric("a", 2.0, 5, 3), Metric("b", NAN, 1, 1), Metric("c", INF, 1, 1), Metric("c", -INF, 2, 1),
     Metric("z", 0.0, 1, 1), Metric("z", NAN, 1, 1),
     Metric("w", 5.0, 9, 7), Metric("w", 4.0, 9, 7)],  # same step and time: the greater value is latest
    [Metric("a", 0.5, 99, 2)],  # an older step: not the latest
    [Metric("a", 2.0, 5, 3)],  # exactly a stored point: dropped, no error
    [Metric("a", 2.0, 5, 3), Metric("a", 3.0, 6, 3), Metric("e", 1.0, 1, 0)],  # the new ones stored
    [Metric(f"k{i % 7}", i / 3, i, i % 11) for i in range(1000)],
]


def stored(get_metric_history, run_id: str, latest: dict) -> dict:
    return {
        "history": {k: sorted(map(_point, get_metric_history(run_id, k)), key=repr) for k in sorted(latest)},
        "latest": {k: "nan" if math.isnan(v) else v for k, v in latest.items()},
    }


def scenario(store) -> dict:
    exp = store.create_experiment("metrics")
    run = store.create_run(exp, "user", 0, [], "run").info.run_id
    for batch in BATCHES:  # a single point through log_metric, as the server does for runs/log-metric
        store.log_metric(run, batch[0]) if len(batch) == 1 else store.log_batch(run, batch, [], [])
    errors = [
        _outcome(lambda: store.log_metric(run, Metric("bad", 1.0, "soon", 0))),
        _outcome(lambda: store.log_metric(run, Metric("", 1.0, 1, 0))),
        _outcome(lambda: store.log_metric("0" * 32, Metric("a", 1.0, 1, 0))),
        _outcome(lambda: store.log_batch(run, [Metric("ok", 1.0, 1, 0), Metric("bad", 1.0, 1, "x")], [], [])),
    ]
    done = store.create_run(exp, "user", 0, [], "deleted").info.run_id
    store.delete_run(done)
    errors.append(_outcome(lambda: store.log_metric(done, Metric("a", 1.0, 1, 0))))
    errors.append(_outcome(lambda: store.log_batch(done, [Metric("a", 1.0, 1, 0)], [], [])))
    return {**stored(store.get_metric_history, run, store.get_run(run).data.metrics), "errors": errors}


def stock_outcome(tmp_path) -> dict:
    """MLflow's own store, the oracle (also for the PostgreSQL deployment's test)."""
    return scenario(_stock(tmp_path))


@pytest.mark.parametrize("role", ["databricks", "azureml"])
def test_same_points_latest_values_and_errors_as_mlflows_store(tmp_path, role):
    ours, stock = scenario(_emulator(tmp_path, role)), stock_outcome(tmp_path)
    assert ours == stock
    assert stock["latest"]["a"] == 3.0 and stock["latest"]["w"] == 5.0  # the scenario means something
    assert len(stock["history"]["a"]) == 4
    assert all(stock["errors"]), stock["errors"]


def test_servers_store_bulk_points_through_the_real_client(emulator):
    """Both workspace servers: a 1,000-point log_batch, then a re-sent batch (what the mirror does
    after a crash) adds nothing."""
    databricks = emulator.databricks
    for ws, experiment in ((databricks, f"/Users/{databricks.user}/bulk"), (emulator.azureml, "bulk")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_TOKEN", ws.token)
            client = MlflowClient(tracking_uri=ws.url)
            exp = client.create_experiment(experiment)
            run = client.create_run(exp).info.run_id
            points = [Metric("loss", 1 / (i + 1), 1000 + i, i) for i in range(1000)]
            client.log_batch(run, metrics=points, synchronous=True)
            client.log_batch(run, metrics=points[:10] + [Metric("loss", 0.0, 5000, 1000)], synchronous=True)
            history = client.get_metric_history(run, "loss")
            assert len(history) == 1001
            assert {(m.step, m.value) for m in history} == {(p.step, p.value) for p in points} | {(1000, 0.0)}
            assert client.get_run(run).data.metrics == {"loss": 0.0}
