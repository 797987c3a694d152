"""The durable outbox: what the Databricks workspace acknowledged and Azure ML has not yet received.

One SQLite file, ``<state>/databricks/outbox.db``, in WAL mode with ``synchronous=FULL``: every
``record`` is committed (and the WAL fsync'd) before the Databricks answer leaves the process,
so an acknowledged write survives a crash or a restart of the emulator.

Tables:

* ``events``   ordered writes to replay (``seq`` is the delivery order); delivered rows are deleted,
  rows Azure ML refused for good stay with ``state='failed'`` (dead letters, shown in the status).
* ``runs``     Databricks runs created while linked: only their later writes are mirrored.
* ``run_map`` / ``experiment_map``  Databricks id -> Azure ML id, per target workspace, so
  redelivery after a crash never creates a second run or experiment.
* ``meta``     counters, last error, and the current delivery target (URL + token).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from emulator.services.mirror import ledger
from emulator.services.mirror.group_commit import GroupCommit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    run_id TEXT,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX IF NOT EXISTS events_state ON events(state, seq);
CREATE TABLE IF NOT EXISTS runs (
    db_run_id TEXT PRIMARY KEY,
    db_experiment_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_map (
    db_run_id TEXT NOT NULL,
    target TEXT NOT NULL,
    aml_run_id TEXT NOT NULL,
    aml_experiment_id TEXT NOT NULL,
    artifact_uri TEXT,
    PRIMARY KEY (db_run_id, target)
);
CREATE TABLE IF NOT EXISTS experiment_map (
    db_experiment_id TEXT NOT NULL,
    target TEXT NOT NULL,
    aml_experiment_id TEXT NOT NULL,
    PRIMARY KEY (db_experiment_id, target)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class Skip(Exception):
    """Nothing to deliver for this event (e.g. its source no longer exists): the relay marks it done."""


class Outbox:
    """Thread-safe: the server's request threads record, the relay thread delivers."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._group = GroupCommit(self._commit_records)
        # autocommit mode; transactions are opened explicitly with BEGIN IMMEDIATE.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # fsync the WAL on every commit
        with self._lock:
            had_ledger = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='ledger_runs'").fetchone()
            had_runs = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
            self._db.executescript(_SCHEMA + ledger.SCHEMA)
            if had_runs and not had_ledger:  # an outbox from before the ledger: fill it from the store
                self._set(self._db, ledger.BASELINE_META, True)
        self.path.chmod(0o600)

    # -- transactions --------------------------------------------------------------------
    def _tx(self, fsync: bool = True):
        """A write transaction. ``fsync=False``: its commit is not fsync'd (WAL, synchronous=NORMAL):
        it survives the process being killed, and only a power cut before the next fsync'd commit
        can undo it; for bookkeeping whose loss means a harmless re-send (delivery marks)."""
        outbox = self

        class _Tx:
            def __enter__(self):
                outbox._lock.acquire()
                try:
                    if not fsync:
                        outbox._db.execute("PRAGMA synchronous=NORMAL")
                    outbox._db.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self._restore()
                    raise
                return outbox._db

            def __exit__(self, exc_type, *_):
                try:
                    outbox._db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    self._restore()
                return False

            def _restore(self):
                try:
                    if not fsync:
                        outbox._db.execute("PRAGMA synchronous=FULL")
                finally:
                    outbox._lock.release()

        return _Tx()

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- recording (request threads) -----------------------------------------------------
    def record(self, kind: str, payload: dict, run_id: str | None = None,
               new_run_experiment: str | None = None) -> bool:
        """Append one event, durably (committed and fsync'd) before returning. A run event is
        kept only if the run was created while linked (``new_run_experiment`` marks the
        run-creating event itself). Returns whether it was kept. Concurrent calls share one
        commit (group commit: one fsync per batch instead of one per write)."""
        return self._group.submit((kind, payload, run_id, new_run_experiment))

    def _commit_records(self, entries) -> None:
        with self._tx() as db:
            for entry in entries:
                db.execute("SAVEPOINT record")  # one bad write fails alone, not its whole batch
                try:
                    entry.result = self._record_one(db, *entry.work)
                except Exception as exc:
                    db.execute("ROLLBACK TO record")
                    entry.error = exc
                db.execute("RELEASE record")

    @staticmethod
    def _record_one(db, kind: str, payload: dict, run_id: str | None, new_run_experiment: str | None) -> bool:
        if new_run_experiment is not None:
            db.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?)", (run_id, new_run_experiment, time.time()))
        elif run_id is not None:
            if db.execute("SELECT 1 FROM runs WHERE db_run_id=?", (run_id,)).fetchone() is None:
                return False
        db.execute(
            "INSERT INTO events(kind, run_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (kind, run_id, json.dumps(payload), time.time()),
        )
        if run_id is not None:
            ledger.note(db, kind, payload, run_id)  # same transaction: event and ledger agree
        return True

    # -- start-up reconciliation (see reconcile.py) ---------------------------------------
    def mirrored_ids(self) -> list[str]:
        """Runs (and logged models) created while linked."""
        return [r for (r,) in self._query("SELECT db_run_id FROM runs ORDER BY created_at")]

    def recorded(self, run_id: str) -> dict:
        with self._lock:
            return ledger.read(self._db, run_id)

    def requeue(self, run_id: str, events: list[tuple[str, dict]], state: dict) -> None:
        """Queue what the store holds but no event carried, and note it as recorded: one transaction."""
        with self._tx() as db:
            now = time.time()
            db.executemany("INSERT INTO events(kind, run_id, payload, created_at) VALUES (?, ?, ?, ?)",
                           [(kind, run_id, json.dumps(payload), now) for kind, payload in events])
            ledger.replace(db, run_id, state)

    # -- delivery (relay thread) ---------------------------------------------------------
    def pending(self, limit: int = 2000) -> list[dict]:
        rows = self._query(
            "SELECT seq, kind, run_id, payload, created_at, attempts FROM events "
            "WHERE state='pending' ORDER BY seq LIMIT ?", (limit,))
        return [
            {"seq": s, "kind": k, "run_id": r, "payload": json.loads(p), "created_at": c, "attempts": a}
            for s, k, r, p, c, a in rows
        ]

    def delivered(self, seqs: list[int]) -> None:
        if not seqs:
            return
        # Not fsync'd: a mark lost to a power cut only re-sends events Azure ML already has, which
        # is idempotent (emulator.services.mirror.relay); the fsync it saves held up recording requests.
        # fidelity: Store and mirror speed (issue 16)
        with self._tx(fsync=False) as db:
            db.executemany("DELETE FROM events WHERE seq=?", [(s,) for s in seqs])
            self._bump(db, "delivered", len(seqs))
            self._set(db, "last_delivered_at", time.time())

    def dead_letter(self, seq: int, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE events SET state='failed', error=?, attempts=attempts+1 WHERE seq=?",
                       (error, seq))
            self._set(db, "last_error", error)
            self._set(db, "last_error_at", time.time())

    def count_attempt(self, seq: int) -> int:
        """One more failed attempt at an event; returns how many there were."""
        with self._tx() as db:
            db.execute("UPDATE events SET attempts=attempts+1 WHERE seq=?", (seq,))
            row = db.execute("SELECT attempts FROM events WHERE seq=?", (seq,)).fetchone()
        return row[0] if row else 0

    def note_error(self, error: str | None) -> None:
        """The last delivery problem (None clears it once deliveries succeed again)."""
        with self._tx() as db:
            self._set(db, "last_error", error)
            if error is not None:
                self._set(db, "last_error_at", time.time())

    # -- id mapping ------------------------------------------------------------------------
    def run_map(self, db_run_id: str, target: str) -> dict | None:
        rows = self._query(
            "SELECT aml_run_id, aml_experiment_id, artifact_uri FROM run_map WHERE db_run_id=? AND target=?",
            (db_run_id, target))
        if not rows:
            return None
        run_id, exp_id, uri = rows[0]
        return {"azureml_run_id": run_id, "azureml_experiment_id": exp_id, "artifact_uri": uri}

    def set_run_map(self, db_run_id: str, target: str, aml_run_id: str, aml_exp_id: str,
                    artifact_uri: str | None) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO run_map VALUES (?, ?, ?, ?, ?)",
                       (db_run_id, target, aml_run_id, aml_exp_id, artifact_uri))

    def experiment_map(self, db_exp_id: str, target: str) -> str | None:
        rows = self._query(
            "SELECT aml_experiment_id FROM experiment_map WHERE db_experiment_id=? AND target=?",
            (db_exp_id, target))
        return rows[0][0] if rows else None

    def set_experiment_map(self, db_exp_id: str, target: str, aml_exp_id: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO experiment_map VALUES (?, ?, ?)",
                       (db_exp_id, target, aml_exp_id))

    # Mappings that name what the target no longer holds (stale_ids).
    def forget_run_map(self, db_run_id: str, target: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM run_map WHERE db_run_id=? AND target=?", (db_run_id, target))

    def forget_experiment_map(self, aml_exp_id: str, target: str) -> None:
        """The experiment's mapping and its runs' (and logged models'): each is found again by its tag."""
        with self._tx() as db:
            db.execute("DELETE FROM experiment_map WHERE aml_experiment_id=? AND target=?", (aml_exp_id, target))
            db.execute("DELETE FROM run_map WHERE aml_experiment_id=? AND target=?", (aml_exp_id, target))

    def experiment_of(self, db_run_id: str) -> str | None:
        """The Databricks experiment of a run (or logged model) created while linked."""
        rows = self._query("SELECT db_experiment_id FROM runs WHERE db_run_id=?", (db_run_id,))
        return rows[0][0] if rows else None

    def is_mirrored_run(self, db_run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE db_run_id=?", (db_run_id,)))

    # -- reset ---------------------------------------------------------------------------------
    def reset(self, runs_mark: int | None) -> None:
        """Forget every event, mapping and ledger entry (POST /__emulator/reset: both stores are
        emptied, so nothing here names anything any more). The delivery target stays; the runs
        mark is set anew (``runs_mark``: the emptied store's, or None while unlinked)."""
        tables = ("events", "runs", "run_map", "experiment_map", "ledger_runs", "ledger_params",
                  "ledger_tags", "ledger_metrics")
        # Not fsync'd (emulator.stores.pristine.no_fsync): a reset undone by a power cut loses nothing.
        with self._tx(fsync=False) as db:
            for table in tables:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM meta WHERE key != 'target'")
            if runs_mark is not None:
                self._set(db, "store_runs_mark", runs_mark)

    # -- meta --------------------------------------------------------------------------------
    @staticmethod
    def _set(db, key: str, value) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    @staticmethod
    def _bump(db, key: str, n: int) -> None:
        row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(json.loads(row[0]) + n if row else n)))

    def get_meta(self, key: str, default=None):
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value) -> None:
        with self._tx() as db:
            self._set(db, key, value)

    def summary(self) -> dict:
        info = summarize(self._db, self._lock)
        # Group commit at work: writes recorded since start-up and the commits that held them.
        info["recorded_writes"], info["recorded_commits"] = self._group.writes, self._group.batches
        return info


def summarize(db: sqlite3.Connection, lock=None) -> dict:
    """Backlog, dead letters, counters and the last error (also used on the file when the server is down)."""
    if lock is not None:
        lock.acquire()
    try:
        backlog, oldest = db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM events WHERE state='pending'").fetchone()
        failed = db.execute("SELECT COUNT(*) FROM events WHERE state='failed'").fetchone()[0]
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        mirrored_runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        recent_failures = [
            {"seq": seq, "kind": kind, "run_id": run_id, "error": error}
            for seq, kind, run_id, error in db.execute(
                "SELECT seq, kind, run_id, error FROM events WHERE state='failed' ORDER BY seq DESC LIMIT 5")
        ]
    finally:
        if lock is not None:
            lock.release()
    return {
        "backlog": backlog,
        "oldest_pending_age_seconds": round(time.time() - oldest, 3) if oldest else None,
        "failed": failed,
        "recent_failures": recent_failures,
        "delivered": meta.get("delivered", 0),
        "mirrored_runs": mirrored_runs,
        "last_error": meta.get("last_error"),
        "last_error_at": meta.get("last_error_at"),
        "last_delivered_at": meta.get("last_delivered_at"),
        "target": (meta.get("target") or {}).get("url"),
    }


def read_summary(path: Path) -> dict | None:
    """The summary straight from the file (server down); None if there is no outbox yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return summarize(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        return {"error": f"cannot read {path}: {exc}"}
