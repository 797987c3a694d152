"""Spans that MLflow's Databricks client uploads as a file: searchable, and shown by the UI.

With tracking URI ``databricks`` the 3.x client logs a trace's info through the V3 ``traces`` API
and its spans as one file, ``/WorkspaceInternal/Mlflow/Artifacts/<exp>/Runs/traces/<trace id>/
artifacts/traces.json`` (``{"spans": [...]}``, ``TraceData.to_dict``), which it reads back itself.
MLflow's server reads spans only from its tracking store: search by ``span.name`` or ``trace.text``
found nothing, and the UI's ``traces/get`` answered 500 "Trace data not stored in tracking store".

* ``ingest``: once the file is stored, its spans are logged into the store (``log_spans``, as OTLP
  spans are), so the server's search sees them. ``log_spans`` also tags the trace's spans as held
  by the store; that tag is put back as it was, because a Databricks client that sees it fetches
  spans through the V4 ``batchGet`` API (Unity Catalog traces) instead of the file.
* ``install``: ``traces/get`` of such a trace answers with the file's spans.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request

from emulator.errors import EmulatorError
from emulator.stores import trace_files
from emulator.stores.safe_paths import Storage

_logger = logging.getLogger(__name__)

_GET_PATHS = ("/ajax-api/3.0/mlflow/traces/get", "/api/3.0/mlflow/traces/get")


def ingest(experiment_id: str, trace_id: str, path) -> int:
    """Log the file's spans into the tracking store; returns how many. A file that is not span
    data is an opaque artifact (the Files API stores any bytes): logged, never refused."""
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.tracing.constant import TraceTagKey

    try:
        spans = trace_files.read_spans(path, trace_id)
        store = _get_tracking_store()
        before = store.get_trace_info(trace_id).tags.get(TraceTagKey.SPANS_LOCATION)
        store.log_spans(experiment_id, spans)
        if before is None:
            store.delete_trace_tag(trace_id, TraceTagKey.SPANS_LOCATION)
        else:
            store.set_trace_tag(trace_id, TraceTagKey.SPANS_LOCATION, before)
    except Exception as exc:  # noqa: BLE001 -- the file is stored either way; only its index is missing
        _logger.warning("trace %s: spans not searchable: %s: %s", trace_id, type(exc).__name__, exc)
        return 0
    return len(spans)


def install(app: Flask, artifacts: Storage) -> None:
    @app.before_request
    def _trace_from_its_file():
        if request.path not in _GET_PATHS or request.method != "GET":
            return None
        from mlflow.entities import Trace, TraceData
        from mlflow.exceptions import MlflowException
        from mlflow.protos.service_pb2 import GetTrace
        from mlflow.server.handlers import _get_tracking_store
        from mlflow.tracing.constant import SpansLocation, TraceTagKey
        from mlflow.utils.proto_json_utils import message_to_json

        trace_id = request.args.get("trace_id", "")
        try:
            info = _get_tracking_store().get_trace_info(trace_id)
        except MlflowException:
            return None  # MLflow's own handler gives the answer (404, 400) in its own words
        if info.tags.get(TraceTagKey.SPANS_LOCATION) in (SpansLocation.TRACKING_STORE, SpansLocation.ARCHIVE_REPO):
            return None
        try:
            path = artifacts.resolve(trace_files.segments(info.experiment_id, trace_id), trace_id)
            spans = trace_files.read_spans(path, trace_id)
        except (trace_files.NoSpans, EmulatorError):
            return None  # no span file: MLflow's own answer
        # fidelity: Tracing parity
        answer = GetTrace.Response(trace=Trace(info, TraceData(spans)).to_proto())
        return Response(message_to_json(answer), status=200, mimetype="application/json")
