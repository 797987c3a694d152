"""Work done before a workspace server listens, so that answering ``/health`` means ready.

MLflow opens its stores on the first API call (creating the SQLite file and running every
alembic migration: seconds on a loaded machine). Opening them here, before the server binds its
port, makes the first call after ``emulator up`` as fast as any other.
"""

from __future__ import annotations

import logging
import time

_logger = logging.getLogger(__name__)


def open_stores() -> None:
    """Create (or migrate) the tracking and registry stores now, in the server process."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    started = time.perf_counter()
    _get_tracking_store()
    _get_model_registry_store()
    _logger.info("stores ready in %.2f s", time.perf_counter() - started)
