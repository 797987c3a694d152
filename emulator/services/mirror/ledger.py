"""What the outbox has recorded for each mirrored run, kept in the same transaction as its events.

A kill between MLflow's store commit and the outbox commit leaves a write in the Databricks
store that no event describes. At start-up (``reconcile``) the store is compared with this
ledger and whatever is missing is queued again. The ledger is small: per run its status, end
time and name; param keys (params never change); a digest per tag; and per metric key a
fingerprint of the points recorded (count, sum of steps, sum of timestamps, each taken modulo a
prime so neither side overflows). MLflow's store drops exact duplicate points while the ledger
counts every point sent, so a client repeating a point only causes one harmless re-send.
"""

from __future__ import annotations

import hashlib
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_runs (
    run_id TEXT PRIMARY KEY, status TEXT, end_time INTEGER, run_name TEXT
);
CREATE TABLE IF NOT EXISTS ledger_params (
    run_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS ledger_tags (
    run_id TEXT NOT NULL, key TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS ledger_metrics (
    run_id TEXT NOT NULL, key TEXT NOT NULL,
    points INTEGER NOT NULL, step_sum INTEGER NOT NULL, ts_sum INTEGER NOT NULL,
    PRIMARY KEY (run_id, key)
);
"""

# Sums are taken modulo this prime, with the sign of the dividend as SQLite's % does, so the
# store's SUM(x % MOD) in SQL and the ledger's running sum in Python agree and never overflow.
MOD = 2147483647
RUN_NAME_TAG = "mlflow.runName"
# Set on an outbox written before the ledger existed: its first reconciliation only fills the
# ledger from the store (nothing to compare with), it queues nothing.
BASELINE_META = "ledger_needs_baseline"
UNKNOWN = -1  # a point whose step/timestamp could not be read: forces a re-send of that key


def digest(value) -> str:
    return hashlib.sha256(str(value).encode("utf-8", "surrogatepass")).hexdigest()


def sql_mod(x: int) -> int:
    r = abs(x) % MOD
    return r if x >= 0 else -r


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def note(db: sqlite3.Connection, kind: str, payload: dict, run_id: str) -> None:
    """Add what one recorded run event carries (called inside the outbox's transaction)."""
    if kind == "run_create":
        run = payload.get("run") or {}
        info = run.get("info") or {}
        db.execute("INSERT OR REPLACE INTO ledger_runs VALUES (?, ?, ?, ?)",
                   (run_id, info.get("status"), _int(info.get("end_time")), info.get("run_name")))
        _tags(db, run_id, (run.get("data") or {}).get("tags") or [])
    elif kind == "run_update":
        db.execute("INSERT OR IGNORE INTO ledger_runs(run_id) VALUES (?)", (run_id,))
        for column in ("status", "run_name"):
            if payload.get(column) is not None:
                db.execute(f"UPDATE ledger_runs SET {column}=? WHERE run_id=?", (payload[column], run_id))
        if payload.get("end_time") is not None:
            db.execute("UPDATE ledger_runs SET end_time=? WHERE run_id=?", (_int(payload["end_time"]), run_id))
        if payload.get("run_name"):  # MLflow's store renames the run's mlflow.runName tag too
            _tags(db, run_id, [{"key": RUN_NAME_TAG, "value": payload["run_name"]}])
    elif kind == "data":
        db.executemany("INSERT OR IGNORE INTO ledger_params VALUES (?, ?)",
                       [(run_id, p.get("key")) for p in payload.get("params") or []])
        _tags(db, run_id, payload.get("tags") or [])
        _metrics(db, run_id, payload.get("metrics") or [])
    elif kind == "run_tag_delete":
        db.execute("DELETE FROM ledger_tags WHERE run_id=? AND key=?", (run_id, payload.get("key")))


def _tags(db, run_id: str, tags: list[dict]) -> None:
    db.executemany("INSERT OR REPLACE INTO ledger_tags VALUES (?, ?, ?)",
                   [(run_id, t.get("key"), digest(t.get("value"))) for t in tags])


def _metrics(db, run_id: str, metrics: list[dict]) -> None:
    sums: dict[str, list[int]] = {}
    for m in metrics:
        acc = sums.setdefault(m.get("key"), [0, 0, 0])
        step, ts = _int(m.get("step", 0) or 0), _int(m.get("timestamp"))
        if step is None or ts is None or acc[0] == UNKNOWN:
            acc[:] = [UNKNOWN, 0, 0]
            continue
        acc[0] += 1
        acc[1] += sql_mod(step)
        acc[2] += sql_mod(ts)
    for key, (points, step_sum, ts_sum) in sums.items():
        db.execute("INSERT OR IGNORE INTO ledger_metrics VALUES (?, ?, 0, 0, 0)", (run_id, key))
        if points == UNKNOWN:
            db.execute("UPDATE ledger_metrics SET points=? WHERE run_id=? AND key=?", (UNKNOWN, run_id, key))
        else:
            db.execute("UPDATE ledger_metrics SET points=points+?, step_sum=step_sum+?, ts_sum=ts_sum+? "
                       "WHERE run_id=? AND key=? AND points>=0", (points, step_sum, ts_sum, run_id, key))


def read(db: sqlite3.Connection, run_id: str) -> dict:
    """The recorded state of one run, in the shape ``reconcile.store_state`` gives for the store."""
    info = db.execute("SELECT status, end_time, run_name FROM ledger_runs WHERE run_id=?", (run_id,)).fetchone()
    return {
        "info": tuple(info) if info else None,
        "params": {k for (k,) in db.execute("SELECT key FROM ledger_params WHERE run_id=?", (run_id,))},
        "tags": dict(db.execute("SELECT key, digest FROM ledger_tags WHERE run_id=?", (run_id,))),
        "metrics": {k: (n, s, t) for k, n, s, t in db.execute(
            "SELECT key, points, step_sum, ts_sum FROM ledger_metrics WHERE run_id=?", (run_id,))},
    }


def replace(db: sqlite3.Connection, run_id: str, state: dict) -> None:
    """Make the ledger of one run say exactly ``state`` (after its differences were queued)."""
    for table in ("ledger_runs", "ledger_params", "ledger_tags", "ledger_metrics"):
        db.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
    if state["info"] is not None:
        db.execute("INSERT INTO ledger_runs VALUES (?, ?, ?, ?)", (run_id, *state["info"]))
    db.executemany("INSERT INTO ledger_params VALUES (?, ?)", [(run_id, k) for k in state["params"]])
    db.executemany("INSERT INTO ledger_tags VALUES (?, ?, ?)", [(run_id, k, d) for k, d in state["tags"].items()])
    db.executemany("INSERT INTO ledger_metrics VALUES (?, ?, ?, ?, ?)",
                   [(run_id, k, *f) for k, f in state["metrics"].items()])
