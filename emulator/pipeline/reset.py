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

import threading
import time
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.stores import pristine

_RESETTERS = "EMULATOR_RESETTERS"
_HOLDERS = "EMULATOR_DATA_HOLDERS"
_lock = threading.Lock()  # one reset at a time; the template is built once


def on_reset(app: Flask, fn) -> None:
    """Register ``fn()``, called on every reset after the store and files are emptied."""
    app.config.setdefault(_RESETTERS, []).append(fn)


def on_holds_data(app: Flask, fn) -> None:
    """Register ``fn() -> bool``: whether a part holds data a reset would discard (``GET /__emulator/reset``)."""
    app.config.setdefault(_HOLDERS, []).append(fn)


def holds_data(app: Flask) -> bool:
    return any(fn() for fn in app.config.get(_HOLDERS, []))


def reset(app: Flask, empty_store, file_roots: list[Path]) -> dict:
    started = time.monotonic()
    with _lock:
        empty_store()
        for root in file_roots:
            pristine.empty_dir(root)
        for fn in app.config.get(_RESETTERS, []):
            fn()
    return {"reset": True, "seconds": round(time.monotonic() - started, 4)}


def install(app: Flask, role: str, db_path: Path, file_roots: list[Path], empty_store=None) -> None:
    """``db_path``: the role's SQLite store (open and migrated by now); ``file_roots``: its data
    folders, emptied on reset (never the state dir itself); ``empty_store()``: how a store that is
    not that SQLite file is made pristine (emulator.stores.postgres.PristineCopy)."""
    if empty_store is None:
        pristine.snapshot_if_new(db_path)

        def empty_store():
            pristine.copy_pristine(db_path, pristine.template(role, db_path))

        on_holds_data(app, lambda: not pristine.is_pristine(db_path))
    else:
        on_holds_data(app, lambda: True)  # another store (PostgreSQL): not inspected, so assume it holds data
    for root in file_roots:
        on_holds_data(app, lambda root=root: pristine.holds_files(root))

    @app.route("/__emulator/reset", methods=["GET"])
    def _would_discard():
        # fidelity: Request journal
        # What a reset would empty, so a test session reusing a state dir can refuse to wipe data it did
        # not write (harness.pytest_plugin, `harness replay --state-dir`).
        return jsonify({"holds_data": holds_data(app)})

    @app.route("/__emulator/reset", methods=["POST"])
    def _reset():
        # A state-changing admin call: bearer token (checked before this) and a JSON body, so a
        # cross-site form post cannot trigger it.
        if not request.is_json:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "POST /__emulator/reset needs Content-Type: application/json.", 415)
        return jsonify(reset(app, empty_store, file_roots))
