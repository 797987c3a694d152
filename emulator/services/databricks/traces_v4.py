"""``/api/4.0/mlflow/traces/...``: the V4 trace API (Unity Catalog trace tables) is not emulated.

MLflow 3.17's Databricks store asks ``POST /api/4.0/mlflow/traces/search-long-running`` first and
falls back to the V3 search (``/api/3.0/mlflow/traces/search``, which MLflow's own server serves)
only on ``ENDPOINT_NOT_FOUND`` (``databricks_rest_store.py``: "Server does not support
SearchTracesV4 API yet"); the emulator's usual 501 for unknown APIs would fail
``mlflow.search_traces``. So V4 paths answer 404 ``ENDPOINT_NOT_FOUND``, as a workspace without V4.
"""

from __future__ import annotations

from flask import Flask, request

from emulator.errors import error_response

PREFIX = "/api/4.0/mlflow/traces"


def install(app: Flask) -> None:
    @app.before_request
    def _no_v4_traces():
        if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
            # fidelity: Tracing parity
            return error_response("ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'", 404)
        return None
