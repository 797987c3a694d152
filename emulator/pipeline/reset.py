"""Reset in place: ``POST /__emulator/reset`` empties a workspace without restarting its process.

Contract tests want a fresh workspace per test (as moto users get); a new state dir and new
processes cost seconds, a reset well under one. What "empty" means is what a new state dir gives:

* the MLflow store (tracking and registry, one SQLite file) is made equal to a pristine copy —
  MLflow seeds rows of its own (the Default experiment, its id sequence), so rows are copied back
  from a template database built once by the same store class, never hand-written (on PostgreSQL
  the same, with a template database on the server: emulator.stores.postgres);
* the workspace's file roots (artifacts, registry copies, DBFS, volumes) are emptied;
* every other part (workspace folders, the mirror's outbox, endpoints, faults...) registers its own
  reset with ``on_reset(app, fn)``, so this module needs to know none of them.

Requests already in flight during a reset may see either state; callers reset between tests.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError

_RESETTERS = "EMULATOR_RESETTERS"
_lock = threading.Lock()  # one reset at a time; the template is built once


def on_reset(app: Flask, fn) -> None:
    """Register ``fn()``, called on every reset after the store and files are emptied."""
    app.config.setdefault(_RESETTERS, []).append(fn)


def _template_path(db_path: Path) -> Path:
    import mlflow

    return db_path.with_name(f".pristine-{mlflow.__version__}.db")


def is_pristine(db_path: Path) -> bool:
    """The store holds only what MLflow seeds (the Default experiment): a new workspace's store."""
    with closing(sqlite3.connect(db_path, timeout=60)) as db:
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM experiments) = 1 AND NOT EXISTS (SELECT 1 FROM runs)"
            " AND NOT EXISTS (SELECT 1 FROM registered_models) AND NOT EXISTS (SELECT 1 FROM logged_models)"
        ).fetchone()[0] == 1


def _snapshot_if_new(db_path: Path) -> None:
    """A new store is its own template: copied (SQLite's backup API, a few ms) before the server
    listens, so nothing writes into the state dir later while tests may be watching it."""
    path = _template_path(db_path)
    if path.exists() or not is_pristine(db_path):
        return
    partial = path.with_name(path.name + ".tmp")
    with closing(sqlite3.connect(db_path, timeout=60)) as source, closing(sqlite3.connect(partial)) as target:
        source.backup(target)
    partial.replace(path)


def _template(role: str, db_path: Path) -> Path:
    """A pristine database made by this role's own store class and artifact root, through MLflow's
    store registry as the server makes its own (once per MLflow version, kept beside the store).
    Only a store that was not new at start-up needs this (its first reset takes a second or two)."""
    import os

    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from emulator.stores.mlflow_stores import store_uri

    path = _template_path(db_path)
    if not path.exists():
        partial = path.with_name(path.name + ".tmp")
        partial.unlink(missing_ok=True)
        fresh = _tracking_store_registry.get_store(store_uri(role, partial), os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT"))
        fresh.engine.dispose()
        partial.replace(path)
    return path


def _copy_pristine(db_path: Path, template: Path) -> None:
    with closing(sqlite3.connect(db_path, timeout=60, isolation_level=None)) as db:
        db.execute("ATTACH DATABASE ? AS pristine", (str(template),))
        tables = [r[0] for r in db.execute(
            "SELECT name FROM pristine.sqlite_master WHERE type = 'table' AND name != 'alembic_version'"
            " AND name NOT LIKE 'sqlite_%'")]
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("PRAGMA defer_foreign_keys = ON")
            for table in tables:
                db.execute(f'DELETE FROM main."{table}"')
                if db.execute(f'SELECT 1 FROM pristine."{table}" LIMIT 1').fetchone():
                    # Named columns: table_info leaves out generated columns, which take no values.
                    cols = ", ".join(f'"{r[1]}"' for r in db.execute(f'PRAGMA pristine.table_info("{table}")'))
                    db.execute(f'INSERT INTO main."{table}" ({cols}) SELECT {cols} FROM pristine."{table}"')
            has_seq = db.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone()
            if has_seq:
                db.execute("DELETE FROM main.sqlite_sequence")
                if db.execute("SELECT 1 FROM pristine.sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
                    db.execute("INSERT INTO main.sqlite_sequence SELECT * FROM pristine.sqlite_sequence")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def empty_dir(root: Path) -> None:
    """Remove what is inside ``root`` (not ``root`` itself: the server holds it as its artifact root)."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def reset(app: Flask, empty_store, file_roots: list[Path]) -> dict:
    started = time.monotonic()
    with _lock:
        empty_store()
        for root in file_roots:
            empty_dir(root)
        for fn in app.config.get(_RESETTERS, []):
            fn()
    return {"reset": True, "seconds": round(time.monotonic() - started, 4)}


def request_reset(url: str, token: str, timeout: float = 120.0) -> dict:
    """Client side (``emulator reset --live``, the pytest plugin): reset the workspace at ``url``."""
    import requests

    answer = requests.post(f"{url}/__emulator/reset", json={}, timeout=timeout,
                           headers={"Authorization": f"Bearer {token}"})
    if answer.status_code != 200:
        raise RuntimeError(f"reset of {url} failed ({answer.status_code}): {answer.text[:300]}")
    return answer.json()


def install(app: Flask, role: str, db_path: Path, file_roots: list[Path], empty_store=None) -> None:
    """``db_path``: the role's SQLite store (open and migrated by now); ``file_roots``: its data
    folders, emptied on reset (never the state dir itself); ``empty_store()``: how a store that is
    not that SQLite file is made pristine (emulator.stores.postgres.PristineCopy)."""
    if empty_store is None:
        _snapshot_if_new(db_path)

        def empty_store():
            _copy_pristine(db_path, _template(role, db_path))

    @app.route("/__emulator/reset", methods=["POST"])
    def _reset():
        # A state-changing admin call: bearer token (checked before this) and a JSON body, so a
        # cross-site form post cannot trigger it.
        if not request.is_json:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "POST /__emulator/reset needs Content-Type: application/json.", 415)
        return jsonify(reset(app, empty_store, file_roots))
