"""Databricks' quota of 1000 metrics per MLflow 3 logged model, refused as the workspace does.

A metric logged with a ``model_id`` (``runs/log-batch`` or ``runs/log-metric``) is also recorded as a
metric of that logged model; ``log_model`` inside a run copies every metric point of the run at
its step that way. Databricks refuses the write that would take a model past 1000 such metrics with
``BAD_REQUEST`` "Unable to log new or update existing logged model metrics for model <id>, exceeded
maximum allowed number of logged model metrics per logged model: 1000. To raise this quota please
contact the Databricks support team." (mlflow/mlflow#20715); a stock MLflow server has no limit.

A metric is one point (key, timestamp, step, run), as MLflow's store keys its logged-model metric
rows, so re-sending a point does not count twice. The refused request stores nothing.
"""

from __future__ import annotations

from flask import Flask, request
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from emulator.errors import EmulatorError

MAX_METRICS_PER_LOGGED_MODEL = 1000
_ROUTES = ("/api/2.0/mlflow/runs/log-batch", "/api/2.0/mlflow/runs/log-metric",
           "/ajax-api/2.0/mlflow/runs/log-batch", "/ajax-api/2.0/mlflow/runs/log-metric")


def over_quota(model_id: str) -> EmulatorError:
    # fidelity: Databricks run limits -- the text of mlflow/mlflow#20715
    return EmulatorError(
        "BAD_REQUEST",
        f"Unable to log new or update existing logged model metrics for model {model_id}, exceeded maximum "
        f"allowed number of logged model metrics per logged model: {MAX_METRICS_PER_LOGGED_MODEL}. "
        "To raise this quota please contact the Databricks support team.",
        400,
    )


def _point(metric: dict, run_id) -> tuple:
    def text(value) -> str:
        try:
            return str(int(value))
        except (TypeError, ValueError):
            return str(value)

    return (metric.get("key"), text(metric.get("timestamp")), text(metric.get("step") or 0), run_id)


def new_points(path: str, body: dict) -> dict[str, set[tuple]]:
    """The logged-model metric points the request writes, by model id."""
    run_id = body.get("run_id") or body.get("run_uuid")
    metrics = [body] if path.endswith("/log-metric") else body.get("metrics")
    found: dict[str, set[tuple]] = {}
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS_PER_BATCH:
        return found  # MLflow's own 400s judge the request's shape first
    for metric in metrics:
        if isinstance(metric, dict) and isinstance(metric.get("model_id"), str) and metric["model_id"]:
            found.setdefault(metric["model_id"], set()).add(_point(metric, run_id))
    return found


def stored_points(model_id: str) -> set[tuple] | None:
    """The model's metric points, or None for a model the store lacks (MLflow's own answer then)."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    try:
        model = _get_tracking_store().get_logged_model(model_id)
    except MlflowException:
        return None
    return {(m.key, str(m.timestamp), str(m.step), m.run_id) for m in model.metrics or []}


def install(app: Flask) -> None:
    """A before_request hook (after auth and validation) on the routes that log metrics."""

    @app.before_request
    def _logged_model_metric_quota():
        if request.method != "POST" or request.path not in _ROUTES:
            return None
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return None
        for model_id, points in new_points(request.path, body).items():
            stored = stored_points(model_id)
            if stored is not None and len(stored | points) > MAX_METRICS_PER_LOGGED_MODEL:
                raise over_quota(model_id)
        return None
