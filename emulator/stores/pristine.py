"""A pristine MLflow store: what a new workspace's SQLite store holds, kept as a template and copied
back on reset (rows MLflow seeds itself, never hand-written), and emptying a file root in place.

The storage half of ``POST /__emulator/reset`` (emulator.pipeline.reset); also used by the store
templates that spare a new workspace its migrations (emulator.stores.templates).
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import threading
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


@functools.lru_cache(maxsize=8)
def _plan(template: str, mtime_ns: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """The template's tables and, for those holding rows, their column lists: read once per
    template file (a reset runs before every test; asking again cost ~140 statements each time)."""
    with closing(sqlite3.connect(template, timeout=60)) as db:
        tables = tuple(r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'"
            " AND name NOT LIKE 'sqlite_%'"))
        filled = {}
        for table in tables:
            if db.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone():
                # Named columns: table_info leaves out generated columns, which take no values.
                filled[table] = ", ".join(f'"{r[1]}"' for r in db.execute(f'PRAGMA table_info("{table}")'))
    return tables, filled


_KEPT: dict[tuple[str, str], tuple[int, int, sqlite3.Connection]] = {}
_KEPT_LOCK = threading.Lock()


def _connection(db_path: Path, template: Path) -> sqlite3.Connection:
    """A connection to the store with the template attached, kept between resets: opening one
    parses both schemas (~60 tables; 3 ms of a reset's 4 when idle, much more under load). A
    store or template file replaced since (another inode) gets a new one."""
    key = (str(db_path), str(template))
    files = (os.stat(db_path).st_ino, os.stat(template).st_ino)
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept and kept[:2] == files:
            return kept[2]
        if kept:
            kept[2].close()
        db = sqlite3.connect(db_path, timeout=60, isolation_level=None, check_same_thread=False)
        no_fsync(db)
        db.execute("ATTACH DATABASE ? AS pristine", (str(template),))
        _KEPT[key] = (*files, db)
        return db


def copy_pristine(db_path: Path, template: Path) -> None:
    """Make the store at ``db_path`` hold what ``template`` holds. Callers serialise resets of one
    store (emulator.pipeline.reset holds a lock); the kept connection is used by one at a time."""
    tables, filled = _plan(str(template), template.stat().st_mtime_ns)
    db = _connection(db_path, template)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("PRAGMA defer_foreign_keys = ON")
        # Which tables hold rows, in one statement: only those are emptied (a test writes to few).
        occupied = db.execute("SELECT " + ", ".join(f'EXISTS (SELECT 1 FROM main."{t}")' for t in tables)).fetchone()
        for table, rows in zip(tables, occupied):
            if rows:
                db.execute(f'DELETE FROM main."{table}"')
        for table, cols in filled.items():
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


def no_fsync(db: sqlite3.Connection) -> None:
    """A reset's commit is not fsync'd (WAL, synchronous=NORMAL; this connection only): it
    survives the process being killed, only a power cut before the store's next fsync'd commit can
    undo it, and a reset undone by a power cut loses nothing anyone wrote. The fsync is most of a
    reset's time on a busy disk (the pytest plugin resets before every test). A store in another
    journal mode keeps its fsyncs (NORMAL there risks more than the reset)."""
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        db.execute("PRAGMA synchronous=NORMAL")


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
