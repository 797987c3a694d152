"""Traces logged on the Databricks workspace, delivered to Azure ML with their spans.

On tracking URI ``databricks`` the client uploads a trace's spans as one Files API file
(``<exp>/traces/<trace id>/artifacts/traces.json`` in the artifact root, ``TraceData.to_dict``).
The relay reads that file and exports its spans to Azure ML's OTLP endpoint (``POST /v1/traces``,
as an MLflow 3.4+ client would), into the mirrored experiment: Azure ML's store then holds the
trace, its spans and what the spans say (inputs, outputs, status). Re-delivery logs the same spans
again, which the store takes as the same spans.
"""

from __future__ import annotations

import json

from emulator.stores.safe_paths import Storage, split_segments

FILE_NAME = "traces.json"


class NoSpans(Exception):
    """The file is gone or holds no span data of its trace."""


def export_request(artifacts_root, experiment_id: str, trace_id: str) -> bytes:
    """An OTLP ``ExportTraceServiceRequest`` (protobuf) with the trace's spans from its file."""
    from mlflow.entities import TraceData
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    try:
        local = Storage(artifacts_root).resolve(
            [*split_segments(experiment_id), "traces", *split_segments(trace_id), "artifacts", FILE_NAME], trace_id)
        spans = TraceData.from_dict(json.loads(local.read_bytes())).spans
    except Exception as exc:  # noqa: BLE001 -- gone, refused, unreadable or not span data: nothing to mirror
        raise NoSpans(f"trace {trace_id} has no span data to mirror ({type(exc).__name__}: {exc})") from None
    own = [span.to_otel_proto() for span in spans if span.trace_id == trace_id]
    if not own:
        raise NoSpans(f"trace {trace_id}'s {FILE_NAME} holds no spans of it")
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=own)])])
    return request.SerializeToString()
