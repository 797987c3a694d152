"""Work done before a workspace server listens, so that answering ``/health`` means ready.

MLflow opens its stores on the first API call (creating the SQLite file and running every
alembic migration: seconds on a loaded machine). Opening them here, before the server binds its
port, makes the first call after ``emulator up`` as fast as any other. On PostgreSQL the role's
database is created first (emulator.postgres_store), once the server answers.
"""

from __future__ import annotations

import logging
import os
import time

_logger = logging.getLogger(__name__)


def open_stores(role: str, database_uri: str):
    """Create (or migrate) the tracking and registry stores now, in the server process. Returns
    how a reset empties the store on PostgreSQL (None: the SQLite default of emulator.reset)."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    started = time.perf_counter()
    empty_store = None
    if database_uri.startswith("postgresql"):
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry

        from emulator import postgres_store
        from emulator.stores import role_uri

        server = os.environ[postgres_store.URL_ENV]
        artifact_root = os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT")
        postgres_store.prepare(role, server, lambda url: _tracking_store_registry.get_store(
            role_uri(role, url), artifact_root))
        empty_store = postgres_store.PristineCopy(role, database_uri)
    _get_tracking_store()
    _get_model_registry_store()
    _logger.info("stores ready in %.2f s", time.perf_counter() - started)
    return empty_store
