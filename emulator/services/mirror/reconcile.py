"""Start-up reconciliation: queue what the Databricks store holds but the outbox never recorded.

The recorder commits an event after MLflow committed the write; a kill -9 in between leaves a
write in Databricks with no event, which nothing would ever deliver. Before the Databricks server
listens (so no write can race it) each mirrored run's params, tags, metric points, status, end
time and name in the store are compared with the outbox's ledger (``ledger``) and every
difference is queued as ordinary events, with the ledger updated in the same transaction.
Re-sending is harmless (see ``relay``): params and tags are set to the same value, and Azure ML
keeps one row per metric point, so a whole key's history is re-sent when its fingerprint differs.

A ``runs/create`` whose event was lost is found too: runs the store created after the
workspace was linked that the outbox does not know are recorded as created (see ``RUNS_MARK``).
Not covered: files of artifacts uploaded in the crash window, logged models, experiments.
"""

from __future__ import annotations

import logging
import math
import time

from emulator.services.mirror import ledger

_logger = logging.getLogger(__name__)

CHUNK = 500  # run ids per store query
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log-batch limits, per event


def run(outbox, store) -> dict:
    """Reconcile every mirrored run; returns counts. The first time an outbox from before the
    ledger existed is opened, its ledger is filled from the store without queuing anything."""
    started = time.perf_counter()
    baseline = bool(outbox.get_meta(ledger.BASELINE_META, False))
    runs = events = 0
    adopted = 0 if baseline else adopt_lost_runs(outbox, store)
    ids = outbox.mirrored_ids()
    for i in range(0, len(ids), CHUNK):
        for run_id, found in store_states(store, ids[i:i + CHUNK]).items():
            recorded = outbox.recorded(run_id)
            if found["state"] == recorded:
                continue
            queued = [] if baseline or found["deleted"] else missing(store, run_id, found, recorded)
            outbox.requeue(run_id, queued, found["state"])
            runs += 1
            events += len(queued)
    if baseline:
        outbox.set_meta(ledger.BASELINE_META, False)
    outbox.set_meta(RUNS_MARK, last_run_rowid(store))
    took = time.perf_counter() - started
    _logger.info("mirror: reconciled %d mirrored runs with the store: %d differed, %d events queued, "
                 "%d runs adopted (%.2f s)%s", len(ids), runs, events, adopted, took, " [baseline]" if baseline else "")
    return {"checked": len(ids), "differed": runs, "queued": events, "adopted": adopted, "seconds": took,
            "baseline": baseline}


# Lost run creations: the store's ``runs`` rows are numbered (SQLite rowid; on PostgreSQL a
# trigger-fed table, emulator.stores.postgres) in creation order.
# ``RUNS_MARK`` is the last row number when the workspace was linked (or last reconciled while
# linked) and is cleared on unlink: a row after it that no event created was created while linked.
RUNS_MARK = "store_runs_mark"


# fidelity: Scaling out: PostgreSQL stores
def _run_order(conn) -> tuple[str, str]:
    """(table, column) that number the store's runs in creation order."""
    if conn.dialect.name == "postgresql":
        from emulator.stores.postgres import RUN_ORDER_TABLE

        return RUN_ORDER_TABLE, "seq"
    return "runs", "rowid"


def last_run_rowid(store) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        table, column = _run_order(conn)
        return int(conn.execute(text(f"SELECT COALESCE(MAX({column}), 0) FROM {table}")).scalar())


def mark_linked(outbox, store) -> None:
    """Called on link: runs created from now on are mirrored (an existing mark is kept: still linked)."""
    if outbox.get_meta(RUNS_MARK) is None:
        outbox.set_meta(RUNS_MARK, last_run_rowid(store))


def mark_unlinked(outbox) -> None:
    outbox.set_meta(RUNS_MARK, None)


def adopt_lost_runs(outbox, store) -> int:
    """Record ``run_create`` for runs created since the mark whose event was lost; their params,
    metrics and tags then follow through the ordinary comparison."""
    from sqlalchemy import text

    mark = outbox.get_meta(RUNS_MARK)
    if mark is None:  # linked while the server was down, or before marks existed: nothing to judge by
        return 0
    with store.engine.connect() as conn:
        table, column = _run_order(conn)
        rows = conn.execute(text(f"SELECT run_uuid FROM {table} WHERE {column} > :mark ORDER BY {column}"),
                            {"mark": mark}).all()
    known = set(outbox.mirrored_ids())
    adopted = 0
    for (run_id,) in rows:
        if run_id in known:
            continue
        run = store.get_run(run_id)
        info = {"run_id": run_id, "experiment_id": run.info.experiment_id, "user_id": run.info.user_id,
                "start_time": run.info.start_time, "run_name": run.info.run_name, "status": run.info.status,
                "end_time": run.info.end_time}
        tags = [{"key": k, "value": v} for k, v in run.data.tags.items()]
        outbox.record("run_create", {"run": {"info": info, "data": {"tags": tags}}},
                      run_id=run_id, new_run_experiment=run.info.experiment_id)
        adopted += 1
    return adopted


def store_states(store, run_ids: list[str]) -> dict[str, dict]:
    """What MLflow's SQL store holds for these runs, in the ledger's shape (plus the values)."""
    from sqlalchemy import bindparam, text

    def query(sql):
        return conn.execute(text(sql).bindparams(bindparam("ids", expanding=True)), {"ids": run_ids}).all()

    out: dict[str, dict] = {}
    with store.engine.connect() as conn:
        for run_id, status, end_time, name, stage in query(
                "SELECT run_uuid, status, end_time, name, lifecycle_stage FROM runs WHERE run_uuid IN :ids"):
            out[run_id] = {"state": {"info": (status, end_time, name), "params": set(), "tags": {}, "metrics": {}},
                           "deleted": stage == "deleted", "params": {}, "tags": {}}
        for run_id, key, value in query("SELECT run_uuid, key, value FROM params WHERE run_uuid IN :ids"):
            if run_id in out:
                out[run_id]["state"]["params"].add(key)
                out[run_id]["params"][key] = value
        for run_id, key, value in query("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN :ids"):
            if run_id in out:
                out[run_id]["state"]["tags"][key] = ledger.digest(value)
                out[run_id]["tags"][key] = value
        for run_id, key, points, step_sum, ts_sum in query(
                f"SELECT run_uuid, key, COUNT(*), SUM(step % {ledger.MOD}), SUM(timestamp % {ledger.MOD}) "
                "FROM metrics WHERE run_uuid IN :ids GROUP BY run_uuid, key"):
            if run_id in out:
                # int(): PostgreSQL's SUM of a bigint is a numeric (a Decimal here), SQLite's an int.
                out[run_id]["state"]["metrics"][key] = (int(points), int(step_sum or 0), int(ts_sum or 0))
    return out


# fidelity: Crash consistency, linking, readiness and ownership (hardening C)
def json_value(value: float):
    """As MLflow's client writes a double in JSON: NaN and infinities as strings. (A bare NaN token
    in a log-batch is answered 200 by MLflow's server while its params and tags are dropped.)"""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def missing(store, run_id: str, found: dict, recorded: dict) -> list[tuple[str, dict]]:
    """Events that bring Azure ML from what was recorded to what the store holds."""
    have = found["state"]
    params = [{"key": k, "value": found["params"][k]} for k in sorted(have["params"] - recorded["params"])]
    tags = [{"key": k, "value": found["tags"][k]} for k, d in sorted(have["tags"].items())
            if recorded["tags"].get(k) != d]
    metrics = []
    for key, fingerprint in sorted(have["metrics"].items()):
        if recorded["metrics"].get(key) != fingerprint:
            metrics.extend({"key": m.key, "value": json_value(m.value), "timestamp": m.timestamp, "step": m.step}
                           for m in store.get_metric_history(run_id, key))
    events = [("data", {"params": params[i:i + MAX_PARAMS]}) for i in range(0, len(params), MAX_PARAMS)]
    events += [("data", {"tags": tags[i:i + MAX_TAGS]}) for i in range(0, len(tags), MAX_TAGS)]
    events += [("data", {"metrics": metrics[i:i + MAX_METRICS]}) for i in range(0, len(metrics), MAX_METRICS)]
    events += [("run_tag_delete", {"key": k}) for k in sorted(set(recorded["tags"]) - set(have["tags"]))]
    if recorded["info"] != have["info"]:
        status, end_time, name = have["info"]
        update = {"status": status, "end_time": end_time, "run_name": name}
        events.append(("run_update", {k: v for k, v in update.items() if v is not None}))
    return events
