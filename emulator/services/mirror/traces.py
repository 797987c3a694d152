"""Traces logged on the Databricks workspace, delivered to Azure ML with their spans.

On tracking URI ``databricks`` the client uploads a trace's spans as one Files API file
(``emulator.stores.trace_files``). The relay reads that file and exports its spans to Azure ML's
OTLP endpoint (``POST /v1/traces``, as an MLflow 3.4+ client would), into the mirrored experiment:
Azure ML's store then holds the trace, its spans and what the spans say (inputs, outputs, status).
Re-delivery logs the same spans again, which the store takes as the same spans.
"""

from __future__ import annotations

from emulator.errors import EmulatorError
from emulator.stores import trace_files
from emulator.stores.safe_paths import Storage, split_segments

NoSpans = trace_files.NoSpans


def export_request(artifacts_root, experiment_id: str, trace_id: str) -> bytes:
    """An OTLP ``ExportTraceServiceRequest`` (protobuf) with the trace's spans from its file."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

    try:
        for ident in (experiment_id, trace_id):  # one plain segment each, as the recorder matched them
            if split_segments(ident) != [ident]:
                raise EmulatorError("INVALID_PARAMETER_VALUE", f"not a single path segment: {ident!r}", 400)
        local = Storage(artifacts_root).resolve(trace_files.segments(experiment_id, trace_id), trace_id)
    except EmulatorError as exc:
        raise NoSpans(f"trace {trace_id}: {exc}") from None
    spans = trace_files.read_spans(local, trace_id)
    scope = ScopeSpans(spans=[span.to_otel_proto() for span in spans])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[scope])]).SerializeToString()
