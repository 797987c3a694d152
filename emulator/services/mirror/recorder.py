"""Turns each successful tracking write on the Databricks workspace into an outbox event.

An ``after_request`` hook: it sees the request (what the client asked) and the answer (ids the
server assigned, the run as stored) before the answer is sent, and commits the event durably
first. Nothing is recorded while unlinked, and writes to runs created before linking are not
(see ``Outbox.record``). Model registry calls are deliberately not recorded: the registry is not
part of dual tracking.
"""

from __future__ import annotations

import json
import logging
import re

from flask import request
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from emulator.errors import error_response

_logger = logging.getLogger(__name__)

_MLFLOW = re.compile(r"^/(?:ajax-)?api/2\.0/(?:preview/)?mlflow/(?P<ep>.+)$")
_MODEL = re.compile(r"^logged-models/(?P<id>[^/]+)(?P<rest>/.*)?$")
# MLflow 3 run and logged-model artifacts through the Databricks Files API.
_FILE = re.compile(
    r"^/api/2\.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/(?P<exp>[^/]+)/(?P<kind>Runs|LoggedModels)/"
    r"(?P<id>[^/]+)/artifacts/(?P<path>.+)$"
)
# The spans the client uploads for a trace (tracking URI "databricks").
_TRACE_FILE = re.compile(
    r"^/api/2\.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/(?P<exp>[^/]+)/Runs/traces/(?P<id>[^/]+)/"
    r"artifacts/traces\.json$"
)
# The model/dataset link of a point is mapped to the mirrored logged model at delivery.
_METRIC_FIELDS = ("key", "value", "timestamp", "step", "model_id", "dataset_name", "dataset_digest")


def _stored(value, limit: int):
    """The value as this server's store kept it: MLflow truncates over-long param and tag values
    when MLFLOW_TRUNCATE_LONG_VALUES is on (the default) instead of refusing them; Azure ML, which
    refuses them, must get what Databricks stored."""
    from mlflow.environment_variables import MLFLOW_TRUNCATE_LONG_VALUES

    if isinstance(value, str) and len(value) > limit and MLFLOW_TRUNCATE_LONG_VALUES.get():
        return value[:limit]
    return value


def _pairs(items, limit: int) -> list[dict]:
    return [{"key": i.get("key"), "value": _stored(i.get("value"), limit)} for i in items or [] if isinstance(i, dict)]


def _metric(m: dict) -> dict:
    return {k: m[k] for k in _METRIC_FIELDS if k in m}


def events_for(endpoint: str, body: dict, answer: dict) -> list[tuple[str, dict, str | None, str | None]]:
    """(kind, payload, run_id, new_run_experiment) for one successful MLflow write."""
    run_id = body.get("run_id") or body.get("run_uuid")
    exp_id = body.get("experiment_id")
    if endpoint == "runs/create":
        run = answer["run"]
        return [("run_create", {"run": run}, run["info"]["run_id"], run["info"]["experiment_id"])]
    if endpoint == "runs/update":
        info = answer.get("run_info") or {}
        payload = {k: info.get(k) for k in ("status", "end_time", "run_name") if info.get(k) is not None}
        return [("run_update", payload, run_id, None)]
    if endpoint in ("runs/delete", "runs/restore"):
        return [("run_" + endpoint.split("/")[1], {}, run_id, None)]
    if endpoint == "runs/log-metric":
        return [("data", {"metrics": [_metric(body)]}, run_id, None)]
    if endpoint == "runs/log-parameter":
        return [("data", {"params": _pairs([body], MAX_PARAM_VAL_LENGTH)}, run_id, None)]
    if endpoint == "runs/set-tag":
        return [("data", {"tags": _pairs([body], MAX_TAG_VAL_LENGTH)}, run_id, None)]
    if endpoint == "runs/log-batch":
        payload = {
            "metrics": [_metric(m) for m in body.get("metrics") or [] if isinstance(m, dict)],
            "params": _pairs(body.get("params"), MAX_PARAM_VAL_LENGTH),
            "tags": _pairs(body.get("tags"), MAX_TAG_VAL_LENGTH),
        }
        return [("data", payload, run_id, None)] if any(payload.values()) else []
    if endpoint == "runs/delete-tag":
        return [("run_tag_delete", {"key": body.get("key")}, run_id, None)]
    if endpoint == "runs/log-inputs":
        datasets = body.get("datasets") or []
        return [("inputs", {"datasets": datasets}, run_id, None)] if datasets else []
    if endpoint == "runs/outputs":
        models = [m for m in body.get("models") or [] if isinstance(m, dict)]
        return [("outputs", {"models": models}, run_id, None)] if models else []
    if endpoint == "logged-models":
        model = answer["model"]
        return [("model_create", {"model": model}, model["info"]["model_id"], model["info"]["experiment_id"])]
    if endpoint.startswith("logged-models/"):
        return _model_events(endpoint, body)
    if endpoint == "experiments/create":
        return [("experiment", {"experiment_id": answer["experiment_id"]}, None, None)]
    if endpoint == "experiments/set-experiment-tag":
        value = _stored(body.get("value"), MAX_TAG_VAL_LENGTH)
        return [("experiment_tag", {"experiment_id": exp_id, "key": body.get("key"), "value": value}, None, None)]
    if endpoint == "experiments/delete-experiment-tag":
        return [("experiment_tag_delete", {"experiment_id": exp_id, "key": body.get("key")}, None, None)]
    if endpoint == "experiments/update":
        return [("experiment_rename", {"experiment_id": exp_id, "new_name": body.get("new_name")}, None, None)]
    if endpoint in ("experiments/delete", "experiments/restore"):
        return [("experiment_" + endpoint.split("/")[1], {"experiment_id": exp_id}, None, None)]
    return []


def _model_events(endpoint: str, body: dict) -> list:
    match = _MODEL.match(endpoint)
    if not match or match["id"] == "search":
        return []
    model_id, rest, method = match["id"], match["rest"] or "", request.method
    if rest == "" and method == "PATCH":
        return [("model_finalize", {"status": body.get("status")}, model_id, None)]
    if rest == "" and method == "DELETE":
        return [("model_delete", {}, model_id, None)]
    if rest == "/tags" and method == "PATCH":
        return [("model_tags", {"tags": _pairs(body.get("tags"), MAX_TAG_VAL_LENGTH)}, model_id, None)]
    if rest.startswith("/tags/") and method == "DELETE":
        return [("model_tag_delete", {"key": rest[len("/tags/"):]}, model_id, None)]
    if rest == "/params" and method == "POST":
        return [("model_params", {"params": _pairs(body.get("params"), MAX_PARAM_VAL_LENGTH)}, model_id, None)]
    return []


def install(app, mirror) -> None:
    """``mirror`` is the Mirror facade: ``.linked``, ``.outbox``, ``.relay``."""

    @app.after_request
    def _record_for_mirror(response):
        if not mirror.linked or request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return response
        if not 200 <= response.status_code < 300:
            return response
        try:
            kept = _record(mirror.outbox, response)
        except Exception as exc:  # the write is in Databricks but could not be queued: say so
            _logger.exception("mirror: could not record %s %s", request.method, request.path)
            return error_response(
                "INTERNAL_ERROR",
                f"The write was stored in the Databricks workspace but could not be queued for the "
                f"linked Azure ML workspace: {type(exc).__name__}: {exc}",
                500,
            )
        if kept:
            mirror.relay.wake()
        return response


def _record_file(outbox, exp: str, owner: str, path: str, model: bool) -> bool:
    kind = "model_artifact" if model else "artifact"
    return outbox.record(kind, {"experiment_id": exp, "path": path}, run_id=owner)


def blob_recorder(mirror):
    """``on_write(segments)`` for the workspace's signed-URL blob plane: a committed blob is an
    artifact written as through the Files API. Blob names are artifact-root paths,
    ``<exp>/<run>/artifacts/<path>`` or ``<exp>/logged_models/<model>/artifacts/<path>``."""

    # fidelity: Linked workspaces
    def on_write(segments: list[str]) -> None:
        if not mirror.linked:
            return
        model = len(segments) > 4 and segments[1] == "logged_models"
        head = 3 if model else 2
        exp, owner = segments[0], segments[head - 1]
        if len(segments) <= head + 1 or segments[head] != "artifacts":
            return  # not an artifact of a run or model (e.g. trace data)
        if _record_file(mirror.outbox, exp, owner, "/".join(segments[head + 1:]), model):
            mirror.relay.wake()

    return on_write


def _record(outbox, response) -> bool:
    path = request.path
    if request.method == "PUT":
        if trace := _TRACE_FILE.match(path):
            # fidelity: Linked workspaces
            return outbox.record("trace", {"experiment_id": trace["exp"], "trace_id": trace["id"]})
        match = _FILE.match(path)
        if not match:
            return False
        return _record_file(outbox, match["exp"], match["id"], match["path"], match["kind"] == "LoggedModels")
    match = _MLFLOW.match(path)
    if not match:
        return False
    endpoint = match["ep"]
    body = request.get_json(force=True, silent=True)
    body = body if isinstance(body, dict) else {}
    answer = {}
    if endpoint in ("runs/create", "runs/update", "experiments/create", "logged-models"):
        answer = json.loads(response.get_data(as_text=True) or "{}")
    kept = False
    for kind, payload, run_id, new_run_exp in events_for(endpoint, body, answer):
        kept |= outbox.record(kind, payload, run_id=run_id, new_run_experiment=new_run_exp)
    return kept

