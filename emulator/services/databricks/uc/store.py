"""Unity Catalog's state in one SQLite file (``<state>/databricks/uc.db``): catalogs, schemas,
registered models, versions, tags and aliases, and prompts (versions, tags, aliases). Survives
restarts; ``reset`` empties it.

Names are three-level and kept lowercase, as Unity Catalog stores object names. A model's files live
under a prefix made of ids, not names, so a rename moves nothing and a re-created name never sees an
old version's files.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.stores import pristine

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS catalogs (name TEXT PRIMARY KEY, comment TEXT, owner TEXT, created_at INTEGER);
CREATE TABLE IF NOT EXISTS schemas (catalog TEXT, name TEXT, comment TEXT, owner TEXT, created_at INTEGER,
    PRIMARY KEY (catalog, name));
CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, catalog TEXT, schema TEXT, name TEXT, description TEXT,
    user_id TEXT, created INTEGER, updated INTEGER, next_version INTEGER, UNIQUE (catalog, schema, name));
CREATE TABLE IF NOT EXISTS versions (model TEXT, version INTEGER, id TEXT, source TEXT, run_id TEXT,
    description TEXT, status TEXT, storage_location TEXT, user_id TEXT, created INTEGER, updated INTEGER,
    logged_model_id TEXT, run_tracking_server_id TEXT, status_message TEXT, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS model_tags (model TEXT, key TEXT, value TEXT, PRIMARY KEY (model, key));
CREATE TABLE IF NOT EXISTS version_tags (model TEXT, version INTEGER, key TEXT, value TEXT,
    PRIMARY KEY (model, version, key));
CREATE TABLE IF NOT EXISTS aliases (model TEXT, alias TEXT, version INTEGER, PRIMARY KEY (model, alias));
CREATE TABLE IF NOT EXISTS prompts (id TEXT PRIMARY KEY, catalog TEXT, schema TEXT, name TEXT, description TEXT,
    created INTEGER, updated INTEGER, next_version INTEGER, UNIQUE (catalog, schema, name));
CREATE TABLE IF NOT EXISTS prompt_versions (prompt TEXT, version INTEGER, template TEXT, description TEXT,
    created INTEGER, updated INTEGER, PRIMARY KEY (prompt, version));
CREATE TABLE IF NOT EXISTS prompt_tags (prompt TEXT, key TEXT, value TEXT, PRIMARY KEY (prompt, key));
CREATE TABLE IF NOT EXISTS prompt_version_tags (prompt TEXT, version INTEGER, key TEXT, value TEXT,
    PRIMARY KEY (prompt, version, key));
CREATE TABLE IF NOT EXISTS prompt_aliases (prompt TEXT, alias TEXT, version INTEGER, PRIMARY KEY (prompt, alias));
"""
MAIN_COMMENT, DEFAULT_SCHEMA_COMMENT = "Main catalog (auto-created)", "Default schema (auto-created)"
TABLES = ("catalogs", "schemas", "models", "versions", "model_tags", "version_tags", "aliases",
          "prompts", "prompt_versions", "prompt_tags", "prompt_version_tags", "prompt_aliases")

# fidelity: Unity Catalog model registry
BAD_NAME = ("Bad model name: please specify all three levels of the model in the form "
            "`catalog_name.schema_name.model_name`")


def now_ms() -> int:
    return int(time.time() * 1000)


def not_found(message: str) -> EmulatorError:
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", message, 404)


def split_name(full_name) -> tuple[str, str, str]:
    """(catalog, schema, model), lowercased; the real 400 for anything but three non-empty levels."""
    if not isinstance(full_name, str):
        raise EmulatorError("INVALID_PARAMETER_VALUE", BAD_NAME, 400)
    parts = full_name.split(".")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise EmulatorError("INVALID_PARAMETER_VALUE", BAD_NAME, 400)
    for part in parts:
        if any(ch in part for ch in "/ \t\n\x00"):
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid name '{full_name}': names cannot contain "
                                "spaces, '/' or control characters.", 400)
    return tuple(p.lower() for p in parts)  # type: ignore[return-value]


class UcStore:
    def __init__(self, path: Path, user: str):
        self.path, self.user = path, user
        self._lock = threading.RLock()
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA_SQL)  # commits on its own: outside tx()
            columns = {row[1] for row in db.execute("PRAGMA table_info(versions)")}
            if "status_message" not in columns:  # a state directory from before registration faults
                db.execute("ALTER TABLE versions ADD COLUMN status_message TEXT")
        finally:
            db.close()
        self.ensure_defaults()

    @contextmanager
    def tx(self, fsync: bool = True):
        """One write transaction at a time (version numbers are handed out inside it).
        ``fsync=False``: a reset's (emulator.stores.pristine.no_fsync)."""
        with self._lock:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.row_factory = sqlite3.Row
            if not fsync:
                pristine.no_fsync(db)
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                db.close()

    def ensure_defaults(self) -> None:
        with self.tx() as db:
            self._defaults(db)

    def holds_data(self) -> bool:
        """Anything beyond the main.default a new workspace has (what reset deletes)."""
        with self.tx() as db:
            counts = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in TABLES}
        return counts.pop("catalogs") > 1 or counts.pop("schemas") > 1 or any(counts.values())

    def _pristine(self, db) -> bool:
        """Exactly a new workspace's rows: main and main.default as made here, nothing else (a
        re-created `main` with another comment is not pristine, though holds_data() says no)."""
        if any(db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in TABLES[2:]):
            return False
        catalogs = [tuple(r) for r in db.execute("SELECT name, comment, owner FROM catalogs")]
        schemas = [tuple(r) for r in db.execute("SELECT catalog, name, comment, owner FROM schemas")]
        return (catalogs == [("main", MAIN_COMMENT, self.user)]
                and schemas == [("main", "default", DEFAULT_SCHEMA_COMMENT, self.user)])

    def reset(self) -> None:
        with self.tx(fsync=False) as db:
            # A workspace that never used Unity Catalog (most tests): reads, and a commit that writes nothing.
            if self._pristine(db):
                return
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")
            self._defaults(db)

    def _defaults(self, db) -> None:
        # fidelity: Unity Catalog model registry  (a UC workspace has main.default)
        db.execute("INSERT OR IGNORE INTO catalogs VALUES ('main', ?, ?, ?)", (MAIN_COMMENT, self.user, now_ms()))
        db.execute("INSERT OR IGNORE INTO schemas VALUES ('main', 'default', ?, ?, ?)",
                   (DEFAULT_SCHEMA_COMMENT, self.user, now_ms()))

    # -- catalogs and schemas ------------------------------------------------------------------
    def require_schema(self, db, catalog: str, schema: str) -> None:
        # fidelity: Unity Catalog model registry
        if not db.execute("SELECT 1 FROM catalogs WHERE name = ?", (catalog,)).fetchone():
            raise not_found(f"Catalog '{catalog}' does not exist.")
        if not db.execute("SELECT 1 FROM schemas WHERE catalog = ? AND name = ?", (catalog, schema)).fetchone():
            raise not_found(f"Schema '{catalog}.{schema}' does not exist.")

    # -- registered models ---------------------------------------------------------------------
    def named_row(self, db, table: str, catalog: str, schema: str, name: str, missing: str):
        """The row of a three-level name in `table` (models, prompts); a missing catalog or schema
        is named before the object itself, as Unity Catalog does."""
        row = db.execute(f"SELECT * FROM {table} WHERE catalog = ? AND schema = ? AND name = ?",
                         (catalog, schema, name)).fetchone()
        if row is None:
            self.require_schema(db, catalog, schema)
            raise not_found(missing)
        return row

    def model_row(self, db, full_name):
        catalog, schema, name = split_name(full_name)
        return self.named_row(db, "models", catalog, schema, name,
                              f"Routine or Model '{catalog}.{schema}.{name}' does not exist.")

    def version_row(self, db, full_name, version):
        model = self.model_row(db, full_name)
        try:
            number = int(str(version))
        except ValueError:
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid model version '{version}': "
                                "a version is a positive integer.", 400) from None
        row = db.execute("SELECT * FROM versions WHERE model = ? AND version = ?", (model["id"], number)).fetchone()
        if row is None:
            raise not_found(f"Model Version '{full_model_name(model)}' version {number} does not exist.")
        return model, row


def full_model_name(model_row) -> str:
    return f"{model_row['catalog']}.{model_row['schema']}.{model_row['name']}"


def new_id() -> str:
    return str(uuid.uuid4())
