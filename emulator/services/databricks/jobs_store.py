"""Jobs and job runs of the emulated workspace, in ``<state>/jobs.db`` (SQLite).

A job row keeps its settings as the JSON the client sent. A run row keeps the run's document as
``runs/get`` answers it, minus ``tasks``: each task run is a row of its own (with its own run id, as
on Databricks) pointing at its parent, and carries its output (``runs/get-output``). Run ids and
job ids come from SQLite's AUTOINCREMENT, so they are never reused, also across restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

FIRST_ID = 100_000_000_000_000  # ids in the range real workspaces show (15 digits)


def now_ms() -> int:
    return int(time.time() * 1000)


class JobsStore:
    def __init__(self, state_dir: Path):
        self.db_path = Path(state_dir) / "jobs.db"
        self._lock = threading.RLock()
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS jobs (job_id INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " settings TEXT NOT NULL, created_time INTEGER NOT NULL, creator TEXT NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " job_id INTEGER, parent_run_id INTEGER, doc TEXT NOT NULL, output TEXT)")
            for table in ("jobs", "runs"):
                db.execute("INSERT OR IGNORE INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS"
                           " (SELECT 1 FROM sqlite_sequence WHERE name = ?)", (table, FIRST_ID, table))

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    # -- jobs --------------------------------------------------------------------------------
    def create_job(self, settings: dict, creator: str) -> int:
        with self._lock, closing(self._connect()) as db, db:
            cur = db.execute("INSERT INTO jobs (settings, created_time, creator) VALUES (?, ?, ?)",
                             (json.dumps(settings), now_ms(), creator))
            return cur.lastrowid

    def job(self, job_id: int) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT job_id, settings, created_time, creator FROM jobs WHERE job_id = ?",
                             (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self) -> list[dict]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT job_id, settings, created_time, creator FROM jobs ORDER BY job_id").fetchall()
        return [_job(r) for r in rows]

    def set_settings(self, job_id: int, settings: dict) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("UPDATE jobs SET settings = ? WHERE job_id = ?", (json.dumps(settings), job_id))

    def delete_job(self, job_id: int) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    # -- runs --------------------------------------------------------------------------------
    def add_run(self, job_id: int | None, doc: dict, tasks: list[dict]) -> tuple[int, list[int]]:
        """Store a run and its task runs; fills in and returns their run ids."""
        with self._lock, closing(self._connect()) as db, db:
            run_id = db.execute("INSERT INTO runs (job_id, doc) VALUES (?, '{}')", (job_id,)).lastrowid
            doc.update(run_id=run_id, number_in_job=run_id, original_attempt_run_id=run_id)
            db.execute("UPDATE runs SET doc = ? WHERE run_id = ?", (json.dumps(doc), run_id))
            task_ids = []
            for task in tasks:
                task_id = db.execute("INSERT INTO runs (job_id, parent_run_id, doc) VALUES (?, ?, '{}')",
                                     (job_id, run_id)).lastrowid
                task.update(run_id=task_id)
                db.execute("UPDATE runs SET doc = ? WHERE run_id = ?", (json.dumps(task), task_id))
                task_ids.append(task_id)
        return run_id, task_ids

    def row(self, run_id: int) -> tuple[dict, int | None, dict | None] | None:
        """(doc, parent run id, output) of a run or task run."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT doc, parent_run_id, output FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if not row:
            return None
        return json.loads(row[0]), row[1], json.loads(row[2]) if row[2] else None

    def run(self, run_id: int) -> dict | None:
        """A job run's document with its tasks, as runs/get answers it; None for unknown or task runs."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT doc FROM runs WHERE run_id = ? AND parent_run_id IS NULL",
                             (run_id,)).fetchone()
            if not row:
                return None
            tasks = db.execute("SELECT doc FROM runs WHERE parent_run_id = ? ORDER BY run_id", (run_id,)).fetchall()
        doc = json.loads(row[0])
        doc["tasks"] = [json.loads(t[0]) for t in tasks]
        return doc

    def runs(self, job_id: int | None = None) -> list[dict]:
        """Job runs, newest first (runs/list's order)."""
        with closing(self._connect()) as db:
            sql = "SELECT run_id FROM runs WHERE parent_run_id IS NULL"
            args: tuple = ()
            if job_id is not None:
                sql, args = sql + " AND job_id = ?", (job_id,)
            ids = [r[0] for r in db.execute(sql + " ORDER BY run_id DESC", args).fetchall()]
        return [doc for doc in (self.run(i) for i in ids) if doc is not None]

    def update(self, run_id: int, output: dict | None = None, **fields) -> None:
        """Merge ``fields`` into a run's (or task run's) document; set its output if given."""
        with self._lock, closing(self._connect()) as db, db:
            row = db.execute("SELECT doc FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if not row:
                return  # deleted meanwhile (runs/delete, reset)
            doc = json.loads(row[0])
            doc.update(fields)
            db.execute("UPDATE runs SET doc = ? WHERE run_id = ?", (json.dumps(doc), run_id))
            if output is not None:
                db.execute("UPDATE runs SET output = ? WHERE run_id = ?", (json.dumps(output), run_id))

    def unfinished(self) -> list[int]:
        """Runs and task runs not yet in a terminal state."""
        with closing(self._connect()) as db:
            rows = db.execute("SELECT run_id, doc FROM runs").fetchall()
        return [run_id for run_id, doc in rows
                if json.loads(doc).get("state", {}).get("life_cycle_state") in ("PENDING", "RUNNING", "QUEUED")]

    def delete_run(self, run_id: int) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM runs WHERE run_id = ? OR parent_run_id = ?", (run_id, run_id))

    def holds_data(self) -> bool:
        with closing(self._connect()) as db:
            return bool(db.execute("SELECT 1 FROM jobs UNION ALL SELECT 1 FROM runs LIMIT 1").fetchone())

    def reset(self) -> None:
        """Empty, and ids start again from FIRST_ID (a new workspace)."""
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM jobs")
            db.execute("DELETE FROM runs")
            db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name IN ('jobs', 'runs')", (FIRST_ID,))


def _job(row) -> dict:
    job_id, settings, created, creator = row
    return {"job_id": job_id, "settings": json.loads(settings), "created_time": created, "creator_user_name": creator}
