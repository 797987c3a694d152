"""The span file MLflow's Databricks client uploads for each trace (tracking URI ``databricks``).

``<exp>/traces/<trace id>/artifacts/traces.json`` in the workspace's artifact root, written through
the Files API: ``{"spans": [...]}`` (``TraceData.to_dict``). Read by the workspace (search, UI) and
by the mirror; a file is only taken to speak for its own trace.
"""

from __future__ import annotations

import json
from pathlib import Path

FILE_NAME = "traces.json"
MAX_BYTES = 64 * 1024**2  # as an OTLP export; a bigger file stays a file only


class NoSpans(Exception):
    """The file is missing, too big, or holds no span data of its trace."""


def segments(experiment_id: str, trace_id: str) -> list[str]:
    """The file's place in the artifact root (for ``Storage.resolve``)."""
    return [experiment_id, "traces", trace_id, "artifacts", FILE_NAME]


def read_spans(path: Path, trace_id: str) -> list:
    """The file's spans of ``trace_id`` (MLflow ``Span`` objects); raises ``NoSpans``."""
    from mlflow.entities import TraceData

    try:
        if path.stat().st_size > MAX_BYTES:
            raise NoSpans(f"{FILE_NAME} of trace {trace_id} is over {MAX_BYTES} bytes")
        spans = TraceData.from_dict(json.loads(path.read_bytes())).spans
    except NoSpans:
        raise
    except Exception as exc:  # noqa: BLE001 -- gone, unreadable or not span data
        raise NoSpans(f"{FILE_NAME} of trace {trace_id} holds no span data ({type(exc).__name__}: {exc})") from None
    own = [span for span in spans if span.trace_id == trace_id]
    if not own:
        raise NoSpans(f"{FILE_NAME} of trace {trace_id} holds no spans of it")
    return own
