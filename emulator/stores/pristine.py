"""A pristine MLflow store: what a new workspace's SQLite store holds, kept as a template and copied
back on reset (rows MLflow seeds itself, never hand-written), and emptying a file root in place.

The storage half of ``POST /__emulator/reset`` (emulator.pipeline.reset); also used by the store
templates that spare a new workspace its migrations (emulator.stores.templates).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path


def template_path(db_path: Path) -> Path:
    import mlflow

    return db_path.with_name(f".pristine-{mlflow.__version__}.db")


def is_pristine(db_path: Path) -> bool:
    """The store holds only what MLflow seeds (the Default experiment): a new workspace's store."""
    with closing(sqlite3.connect(db_path, timeout=60)) as db:
        return db.execute(
            "SELECT (SELECT COUNT(*) FROM experiments) = 1 AND NOT EXISTS (SELECT 1 FROM runs)"
            " AND NOT EXISTS (SELECT 1 FROM registered_models) AND NOT EXISTS (SELECT 1 FROM logged_models)"
        ).fetchone()[0] == 1


def snapshot_if_new(db_path: Path) -> None:
    """A new store is its own template: copied (SQLite's backup API, a few ms) before the server
    listens, so nothing writes into the state dir later while tests may be watching it."""
    path = template_path(db_path)
    if path.exists() or not is_pristine(db_path):
        return
    partial = path.with_name(path.name + ".tmp")
    with closing(sqlite3.connect(db_path, timeout=60)) as source, closing(sqlite3.connect(partial)) as target:
        source.backup(target)
    partial.replace(path)


def template(role: str, db_path: Path) -> Path:
    """A pristine database made by this role's own store class and artifact root, through MLflow's
    store registry as the server makes its own (once per MLflow version, kept beside the store).
    Only a store that was not new at start-up needs this (its first reset takes a second or two)."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    from emulator.stores.mlflow_stores import store_uri

    path = template_path(db_path)
    if not path.exists():
        partial = path.with_name(path.name + ".tmp")
        partial.unlink(missing_ok=True)
        fresh = _tracking_store_registry.get_store(store_uri(role, partial), os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT"))
        fresh.engine.dispose()
        partial.replace(path)
    return path


def copy_pristine(db_path: Path, template: Path) -> None:
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


def holds_files(root: Path) -> bool:
    return root.is_dir() and any(root.iterdir())


def empty_dir(root: Path) -> None:
    """Remove what is inside ``root`` (not ``root`` itself: the server holds it as its artifact root)."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
