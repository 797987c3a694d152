"""Error bodies as Azure answers them: ARM's ``{"error": {"code", "message"}}`` and, on MLflow
paths, MLflow's ``{"error_code", "message"}`` (the MLflow client reads only that shape)."""

from __future__ import annotations

import json
import uuid

from flask import Response, request

ARM_PREFIX = "/subscriptions"
HISTORY_PREFIX = "/history/"
ARTIFACT_PREFIX = "/artifact/"
MMS_PREFIX = "/modelmanagement/"  # SDK v1 webservices: not served, refused in Azure's shape


def is_arm_path(path: str) -> bool:
    return path.lower().startswith(ARM_PREFIX)


def is_azure_path(path: str) -> bool:
    """ARM and the Azure ML data-plane APIs (run history, artifacts): Azure's error shape, not MLflow's."""
    return is_arm_path(path) or path.lower().startswith((HISTORY_PREFIX, ARTIFACT_PREFIX, MMS_PREFIX))


def arm_error(code: str, message: str, status: int, headers: dict | None = None) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, mimetype="application/json", headers=headers or {})


def mlflow_error(error_code: str, message: str, status: int, azure_code: str | None = None,
                 headers: dict | None = None) -> Response:
    """MLflow's shape; ``azure_code`` adds the Azure ``error`` object beside it for Azure tools."""
    payload = {"error_code": error_code, "message": message}
    if azure_code:
        payload["error"] = {"code": azure_code, "message": message}
    return Response(json.dumps(payload), status=status, mimetype="application/json", headers=headers or {})


def request_ids(response: Response) -> Response:
    """Azure services stamp every answer with request ids; users quote them in support tickets."""
    request_id = request.headers.get("x-ms-client-request-id") or str(uuid.uuid4())
    response.headers.setdefault("x-ms-request-id", request_id)
    response.headers.setdefault("x-ms-correlation-request-id", request_id)
    return response
