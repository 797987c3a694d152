"""Error bodies as Azure answers them: ARM's ``{"error": {"code", "message"}}`` and, on MLflow
paths, MLflow's ``{"error_code", "message"}`` (the MLflow client reads only that shape), or, for
the refusals Azure ML's own validation makes there, its service error (``service_validation_error``)."""

from __future__ import annotations

import datetime
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


def service_validation_error(message: str, location: str, status: int = 400,
                             error_code: str = "INVALID_PARAMETER_VALUE") -> Response:
    """Azure ML's MLflow service refusing a request its own validation rejects.

    The body seen from the real service (mlflow/mlflow#15329, #8008): the service's
    ``{"Error": {"Code", "Message", ...}, "Correlation", ..., "error_code"}``, with MLflow's
    ``error_code`` beside it and no top-level ``message``, so the MLflow client raises
    ``RestException("INVALID_PARAMETER_VALUE: Response: {...}")`` with the whole body in its text.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    # fidelity: Azure ML registration rules
    payload = {
        "Error": {"Code": "ValidationError", "Severity": None, "Message": message, "MessageFormat": None,
                  "MessageParameters": None, "ReferenceCode": None, "DetailsUri": None, "Target": None,
                  "Details": [], "InnerError": None, "DebugInfo": None, "AdditionalInfo": None},
        "Correlation": {"operation": uuid.uuid4().hex, "request": uuid.uuid4().hex[:16]},
        "Environment": location,
        "Location": location,
        "Time": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00",
        "ComponentName": "mlflow",
        "statusCode": status,
        "error_code": error_code,
    }
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def request_ids(response: Response) -> Response:
    """Azure services stamp every answer with request ids; users quote them in support tickets."""
    request_id = request.headers.get("x-ms-client-request-id") or str(uuid.uuid4())
    response.headers.setdefault("x-ms-request-id", request_id)
    response.headers.setdefault("x-ms-correlation-request-id", request_id)
    return response
