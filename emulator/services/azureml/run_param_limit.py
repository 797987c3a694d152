"""Azure ML's cap on the number of parameters one run may hold (200), refused as the service does.

A stock MLflow server stores any number of params per run. Azure ML's MLflow service refuses the
write that would take a run past 200 with its own validation body (``service_validation_error``):
``A field of the entity is over the size limit. FieldName=Parameters, Limit=200, Size=<n>. ...``,
where ``Size`` is the count the run would have (Azure/azure-sdk-for-python#35685: 210 params logged
with ``mlflow.log_params``, which the client sends as batches of 100, 100 and 10 -> ``Size=210``).
The refused batch is not applied: nothing of it is stored.

Applies to every route that adds params: ``runs/log-parameter``, ``runs/log-batch`` and Azure ML's
``runs/log-batch-async``. A key already on the run does not count again (MLflow lets a client
re-log a param with its value). A batch over MLflow's own per-request limit (100 params) gets
MLflow's answer first: the request's shape is judged before the run's total (an assumed order).
"""

from __future__ import annotations

from flask import Flask, request
from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

from emulator.services.azureml.azure_errors import service_validation_error
from emulator.settings import ServerConfig

MAX_PARAMS_PER_RUN = 200
_ROUTES = ("/mlflow/runs/log-parameter", "/mlflow/runs/log-batch", "/mlflow/runs/log-batch-async")


def over_limit_message(size: int) -> str:
    # fidelity: Azure ML run limits -- the text of Azure/azure-sdk-for-python#35685
    return (f"A field of the entity is over the size limit. FieldName=Parameters, "
            f"Limit={MAX_PARAMS_PER_RUN}, Size={size}. "
            "See https://aka.ms/azure-machine-learning-limits for service limits documentation.")


def _new_keys(path: str, body: dict) -> set[str] | None:
    """The param keys the request adds, or None when it is not well formed (MLflow's 400s then)."""
    if path.endswith("/log-parameter"):
        key = body.get("key")
        return {key} if isinstance(key, str) else None
    params = body.get("params")
    if params is None:
        return set()
    if not isinstance(params, list) or not all(isinstance(p, dict) and isinstance(p.get("key"), str)
                                               for p in params):
        return None
    return {p["key"] for p in params}


def size_after(run_id: str, keys: set[str]) -> int | None:
    """How many params the run would hold with ``keys`` added; None for a run the store lacks."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.handlers import _get_tracking_store

    try:
        existing = _get_tracking_store().get_run(run_id).data.params
    except MlflowException:
        return None  # unknown run: MLflow's own 404
    return len(set(existing) | keys)


def install(app: Flask, config: ServerConfig) -> None:
    """A before_request hook (after auth and validation) on the routes that add params."""

    @app.before_request
    def _cap_params_per_run():
        if request.method != "POST" or not request.path.endswith(_ROUTES):
            return None
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return None
        run_id = body.get("run_id") or body.get("run_uuid")
        keys = _new_keys(request.path, body)
        if not isinstance(run_id, str) or not keys:
            return None
        if len(body.get("params") or ()) > MAX_PARAMS_TAGS_PER_BATCH:
            return None  # the request's own shape (MLflow's 100 params per batch) is judged first
        size = size_after(run_id, keys)
        if size is not None and size > MAX_PARAMS_PER_RUN:
            return service_validation_error(over_limit_message(size), config.location)
        return None
