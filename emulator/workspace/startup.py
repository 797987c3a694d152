"""Work done before a workspace server listens, so that answering ``/health`` means ready.

MLflow opens its stores on the first API call (creating the SQLite file and running every
alembic migration: seconds on a loaded machine). Opening them here, before the server binds its
port, makes the first call after ``emulator up`` as fast as any other. On PostgreSQL the role's
database is created first (emulator.stores.postgres), once the server answers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

_logger = logging.getLogger(__name__)


def write_ahead_log(db_path: Path) -> str:
    """Put the store in SQLite's WAL mode (kept in the file): a commit is one fsync of the log
    instead of the rollback journal's two or three (4 ms vs 17 ms per commit measured on this
    machine). ``synchronous`` stays FULL (the build's default, for WAL too), so an acknowledged
    write is on disk as before. Returns the mode the file is in."""
    with closing(sqlite3.connect(db_path, timeout=60)) as db:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":  # e.g. a file system without shared memory: slower, as durable
        _logger.warning("%s stays in journal mode %s (WAL refused)", db_path, mode)
    return mode


def open_stores(role: str, database_uri: str, db_path: Path):
    """Create (or migrate) the tracking and registry stores now, in the server process. Returns
    how a reset empties the store on PostgreSQL (None: the SQLite default of emulator.pipeline.reset).
    ``db_path`` is the SQLite file (unused on PostgreSQL)."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    started = time.perf_counter()
    empty_store = None
    sqlite = not database_uri.startswith("postgresql")
    existed = sqlite and db_path.exists()
    if existed:  # before MLflow's engine holds connections; a new store is switched once created
        # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
        write_ahead_log(db_path)
    if not sqlite:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        from emulator.stores import postgres as postgres_store
        from emulator.stores.mlflow_stores import role_uri

        server = os.environ[postgres_store.URL_ENV]
        artifact_root = os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT")
        postgres_store.prepare(role, server, lambda url: _tracking_store_registry.get_store(
            role_uri(role, url), artifact_root))
        empty_store = postgres_store.PristineCopy(role, database_uri)
    _get_tracking_store()
    _get_model_registry_store()
    if sqlite and not existed:
        write_ahead_log(db_path)
    _logger.info("stores ready in %.2f s", time.perf_counter() - started)
    return empty_store
