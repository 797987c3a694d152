"""A new workspace's MLflow store, copied from one migrated before instead of migrated again.

Creating MLflow's SQLite store runs every alembic migration: about 3 s of a new workspace's
start-up on a loaded 2-core machine, out of ~9. The store a given MLflow version makes for a role
is always the same (the Default experiment's artifact location depends on the role only), so the
first start-up keeps a copy and later start-ups on a new state dir copy it (a few ms).

The templates live in a folder the launcher chooses and passes as ``EMULATOR_STORE_TEMPLATES``
(under the user's cache, like the client venvs): the server itself never looks into ``HOME``.
Without it (e.g. in Docker) a new store is migrated as before.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

ENV = "EMULATOR_STORE_TEMPLATES"
_logger = logging.getLogger(__name__)


def _template(role: str) -> Path | None:
    folder = os.environ.get(ENV)
    # The version pins the schema (alembic head); the role pins the Default experiment's row.
    return Path(folder) / f"{role}-mlflow-{version('mlflow')}.db" if folder else None


def restore(role: str, db_path: Path) -> bool:
    """Put the template in place of a store that does not exist yet; False if there is none."""
    template = _template(role)
    if db_path.exists() or template is None or not template.is_file():
        return False
    partial = db_path.with_name(f".{db_path.name}.{os.getpid()}.tmp")
    shutil.copyfile(template, partial)
    partial.replace(db_path)  # atomic: MLflow sees either no store or a whole one
    _logger.info("new store copied from %s (no migrations to run)", template)
    return True


def remember(role: str, db_path: Path) -> None:
    """Keep a just-created store as the template (once): call before anything writes into it."""
    from emulator.stores.pristine import is_pristine

    template = _template(role)
    if template is None or template.exists() or not is_pristine(db_path):
        return
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        partial = template.with_name(f".{template.name}.{os.getpid()}.tmp")
        with closing(sqlite3.connect(db_path, timeout=60)) as source, closing(sqlite3.connect(partial)) as target:
            source.backup(target)  # consistent even if MLflow holds the file open
        partial.replace(template)  # two servers racing both write whole, identical files
    except OSError as exc:  # a read-only or full cache costs speed, never the start-up
        _logger.warning("could not keep a store template in %s: %s", template.parent, exc)
