"""``POST /v1/traces``: OTLP/HTTP span ingestion, as MLflow 3.17's stock server answers it.

Stock MLflow serves this route only from its FastAPI app (``mlflow/server/otel_api.py``); the
emulator serves MLflow's Flask app, behind its own auth and cookie hooks, so the route is ported
here as a Flask view (the same parsing, the same ``log_spans`` into the tracking store). The
MLflow 3.4+ client sends every trace's spans here (``RestStore.log_spans``) once ``/version`` says
3.4+; without it the client falls back to a ``traces.json`` artifact, which the UI's
``/ajax-api/3.0/mlflow/traces/get`` can't read ("Trace data not stored in tracking store").
Errors are stock's status codes, in MLflow's JSON shape (plus stock's ``detail``).
"""

from __future__ import annotations

import base64
import json
import logging
import zlib

from flask import Flask, Response, jsonify, request

_logger = logging.getLogger(__name__)

PATH = "/v1/traces"
MAX_BODY = 64 * 1024**2  # decompressed; a gzip bomb is a 413, not an out-of-memory server
_HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str = "INVALID_PARAMETER_VALUE"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _decompress(body: bytes, encoding: str) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise _Refused(400, f"Unsupported Content-Encoding: {encoding}")
    for wbits in ((31,) if encoding == "gzip" else (15, -15)):  # deflate: zlib-wrapped or raw
        try:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(body, MAX_BODY + 1)
        except zlib.error:
            continue
        if len(out) > MAX_BODY or inflater.unconsumed_tail:
            raise _Refused(413, f"The decompressed payload is larger than {MAX_BODY} bytes", "REQUEST_LIMIT_EXCEEDED")
        return out
    raise _Refused(400, f"Failed to decompress {encoding} payload")


def _json_ids_to_base64(body: bytes) -> bytes:
    # OTLP JSON spells ids in hex; protobuf's JSON mapping wants base64 (as stock converts).
    data = json.loads(body)
    for resource_span in data.get("resourceSpans", []):
        for scope_span in resource_span.get("scopeSpans", []):
            for span in scope_span.get("spans", []):
                for field in _HEX_ID_FIELDS:
                    if value := span.get(field):
                        span[field] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return json.dumps(data).encode()


def _parse(body: bytes, media_type: str):
    from google.protobuf.json_format import Error as ProtoJsonError
    from google.protobuf.json_format import Parse
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    parsed = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            Parse(_json_ids_to_base64(body), parsed, ignore_unknown_fields=True)
        else:
            parsed.ParseFromString(body)
    except (DecodeError, ProtoJsonError, ValueError, TypeError, AttributeError):
        raise _Refused(400, "Invalid OpenTelemetry format") from None
    if not parsed.resource_spans:
        raise _Refused(400, "Invalid OpenTelemetry format - no spans found")
    return parsed


def _spans(parsed):
    from mlflow.entities.span import Span

    spans, roots = [], set()
    for resource_span in parsed.resource_spans:
        for scope_span in resource_span.scope_spans:
            for proto in scope_span.spans:
                try:
                    span = Span.from_otel_proto(proto, resource=resource_span.resource)
                except Exception:  # noqa: BLE001 -- any malformed span is the caller's input
                    raise _Refused(422, "Cannot convert OpenTelemetry span to MLflow span") from None
                if span.parent_id is None:
                    roots.add(span.trace_id)
                spans.append(span)
    return spans, roots


def export_traces() -> Response:
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store
    from mlflow.tracing.utils.otlp import (
        MLFLOW_EXPERIMENT_ID_HEADER,
        MLFLOW_RUN_ID_HEADER,
    )

    experiment_id = request.headers.get(MLFLOW_EXPERIMENT_ID_HEADER)
    if not experiment_id:
        # Stock (FastAPI) answers a missing required header with 422.
        raise _Refused(422, f"Missing required header: {MLFLOW_EXPERIMENT_ID_HEADER}")
    content_type = request.headers.get("Content-Type", "")
    media_type = content_type.split(";")[0].strip()
    if media_type not in ("application/x-protobuf", "application/json"):
        raise _Refused(400, f"Invalid Content-Type: {content_type or None}. "
                            "Expected: application/x-protobuf or application/json")
    if (request.content_length or 0) > MAX_BODY:
        raise _Refused(413, f"The payload is larger than {MAX_BODY} bytes", "REQUEST_LIMIT_EXCEEDED")
    body = _decompress(request.get_data(cache=False), request.headers.get("Content-Encoding", "").lower())
    spans, roots = _spans(_parse(body, media_type))
    store = _get_tracking_store()
    try:
        store.get_experiment(experiment_id)  # a bad id is the caller's 404, not a 5xx from log_spans
        store.log_spans(experiment_id, spans)
    except MlflowException as exc:
        return Response(exc.serialize_as_json(), status=exc.get_http_status_code(), mimetype="application/json")
    except NotImplementedError:
        raise _Refused(501, "REST OTLP span logging is not supported by this store", "NOT_IMPLEMENTED") from None
    run_id = request.headers.get(MLFLOW_RUN_ID_HEADER)
    if run_id and roots:
        try:
            store.link_traces_to_run(sorted(roots), run_id)
        except Exception:  # noqa: BLE001 -- as stock: the spans are stored; the link is best effort
            _logger.exception("Failed to link OpenTelemetry traces to MLflow run")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    return Response(ExportTraceServiceResponse().SerializeToString(), status=200, mimetype="application/x-protobuf")


def install(app: Flask) -> None:
    @app.route(PATH, methods=["POST"])
    def _otlp_traces():
        # fidelity: Tracing parity
        try:
            return export_traces()
        except _Refused as exc:
            answer = jsonify({"error_code": exc.code, "message": exc.message, "detail": exc.message})
            answer.status_code = exc.status
            return answer
