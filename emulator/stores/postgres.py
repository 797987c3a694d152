"""The workspaces' MLflow stores on PostgreSQL (``EMULATOR_POSTGRES_URL``; ``up --docker --store postgres``).

MLflow's own SQLAlchemy store runs on it exactly as on SQLite (same store classes, same
migrations); each workspace has a database of its own on the server, created at start:

* ``emulator_<role>_pristine_<mlflow version>`` - made once by the role's store class (MLflow
  seeds rows of its own: the Default experiment), under a temporary name renamed when complete;
* ``emulator_<role>`` - the live store, ``CREATE DATABASE ... TEMPLATE`` the pristine one (a file
  copy: the migrations run once per server, not once per workspace start).

A reset (emulator.pipeline.reset) truncates every live table and copies the pristine rows and sequence
positions back, the same "equal to a new store" the SQLite reset gives.

The mirror's crash recovery numbers the store's runs in creation order (emulator.services.mirror.reconcile):
SQLite's rowid does that; here a trigger on ``runs`` feeds ``emulator_run_order`` in the same
transaction as each run's insert.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.pool import NullPool

_logger = logging.getLogger(__name__)

URL_ENV = "EMULATOR_POSTGRES_URL"  # postgresql://user:password@host:port (no database)
SCHEMES = ("postgresql", "postgresql+psycopg2")
# SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the [postgres] extra pins psycopg2.
DRIVER = "postgresql+psycopg2"


RUN_ORDER_TABLE = "emulator_run_order"
RUN_ORDER_DDL = f"""
CREATE TABLE {RUN_ORDER_TABLE} (seq BIGSERIAL PRIMARY KEY, run_uuid VARCHAR(32) NOT NULL);
CREATE FUNCTION emulator_note_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO {RUN_ORDER_TABLE} (run_uuid) VALUES (NEW.run_uuid); RETURN NEW; END $$;
CREATE TRIGGER emulator_run_order AFTER INSERT ON runs FOR EACH ROW EXECUTE FUNCTION emulator_note_run();
"""


class StoreUnavailable(RuntimeError):
    """The PostgreSQL server did not answer in time or refused the credentials."""


def validate_url(url: str) -> sqlalchemy.engine.URL:
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.drivername not in SCHEMES:
        raise ValueError(f"{URL_ENV} must be a postgresql:// URL, got {parsed.drivername}://")
    return parsed


def database_url(server_url: str, database: str) -> str:
    url = validate_url(server_url).set(drivername=DRIVER, database=database)
    return url.render_as_string(hide_password=False)


def database_names(role: str) -> tuple[str, str]:
    import mlflow

    version = "".join(c if c.isalnum() else "_" for c in mlflow.__version__)
    return f"emulator_{role}", f"emulator_{role}_pristine_{version}"


def _engine(url: str, **kw) -> sqlalchemy.engine.Engine:
    return sqlalchemy.create_engine(url, poolclass=NullPool, **kw)


def wait_for_server(server_url: str, timeout: float = 120.0) -> None:
    """Until the server accepts this URL's credentials (Compose starts it beside the workspaces)."""
    engine = _engine(database_url(server_url, "postgres"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect():
                return
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "password authentication failed" in reason or time.monotonic() > deadline:
                host = validate_url(server_url).render_as_string(hide_password=True)
                raise StoreUnavailable(f"PostgreSQL at {host} is not usable: {reason}") from None
            time.sleep(0.5)


def _exists(conn, database: str) -> bool:
    return conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": database}).scalar() == 1


# fidelity: Scaling out: PostgreSQL stores
def prepare(role: str, server_url: str, make_store: Callable[[str], object], timeout: float = 120.0) -> str:
    """This role's live database (created from the pristine one unless it exists); returns its URL.
    ``make_store(url)`` opens the role's MLflow store on a database URL (migrating it)."""
    live, pristine = database_names(role)
    wait_for_server(server_url, timeout)
    admin = _engine(database_url(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not _exists(conn, pristine):
            started = time.perf_counter()
            partial = f"{pristine}_partial"  # a crash mid-migration leaves this, never a half pristine
            conn.execute(text(f'DROP DATABASE IF EXISTS "{partial}"'))
            conn.execute(text(f'CREATE DATABASE "{partial}"'))
            store = make_store(database_url(server_url, partial))
            store.engine.dispose()  # RENAME needs no open connections to it
            extra = _engine(database_url(server_url, partial))
            with extra.begin() as db:
                db.execute(text(RUN_ORDER_DDL))
            extra.dispose()
            conn.execute(text(f'ALTER DATABASE "{partial}" RENAME TO "{pristine}"'))
            _logger.info("pristine MLflow store %s made in %.1f s", pristine, time.perf_counter() - started)
        if not _exists(conn, live):
            conn.execute(text(f'CREATE DATABASE "{live}" TEMPLATE "{pristine}"'))
    return database_url(server_url, live)


# fidelity: Scaling out: PostgreSQL stores
class PristineCopy:
    """Makes the live database equal to the pristine one (rows and sequences) in one transaction."""

    def __init__(self, role: str, live_url: str):
        self.live_url = live_url
        self.pristine_url = database_url(live_url, database_names(role)[1])
        self._snapshot: tuple[list, list] | None = None

    def _read_pristine(self) -> tuple[list, list]:
        engine = _engine(self.pristine_url)
        meta = sqlalchemy.MetaData()
        meta.reflect(engine)
        rows = []
        with engine.connect() as conn:
            for table in meta.sorted_tables:  # parents before children
                if table.name == "alembic_version":
                    continue
                found = [dict(r) for r in conn.execute(table.select()).mappings()]
                if found:
                    rows.append((table.name, found))
            sequences = [tuple(r) for r in conn.execute(text(
                "SELECT schemaname, sequencename, last_value FROM pg_sequences"
                " WHERE schemaname = current_schema() AND last_value IS NOT NULL"))]
        engine.dispose()
        return rows, sequences

    def __call__(self) -> None:
        if self._snapshot is None:
            self._snapshot = self._read_pristine()
        rows, sequences = self._snapshot
        engine = _engine(self.live_url)
        meta = sqlalchemy.MetaData()
        meta.reflect(engine)
        tables = [t for t in meta.sorted_tables if t.name != "alembic_version"]
        with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            for name, found in rows:
                table = meta.tables[name]
                stored = {c.name for c in table.columns if c.computed is None}  # generated columns take no values
                conn.execute(table.insert(), [{k: v for k, v in r.items() if k in stored} for r in found])
            for schema, sequence, value in sequences:
                conn.execute(text("SELECT setval(:s, :v)"), {"s": f'"{schema}"."{sequence}"', "v": value})
        engine.dispose()
