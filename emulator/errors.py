"""Error answers in the backends' own JSON shape: ``{"error_code": ..., "message": ...}``."""

from __future__ import annotations

import json

from flask import Response

# Databricks/MLflow error codes and the HTTP status each maps to.
STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "MALFORMED_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "NOT_FOUND": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_ALREADY_EXISTS": 409,
    "RESOURCE_CONFLICT": 409,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "INTERNAL_ERROR": 500,
}


class EmulatorError(Exception):
    """Raised by emulator routes; turned into a JSON error answer by the app's error handler."""

    def __init__(self, error_code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status or STATUS.get(error_code, 400)


def error_response(error_code: str, message: str, status: int | None = None) -> Response:
    body = json.dumps({"error_code": error_code, "message": message})
    return Response(body, status=status or STATUS.get(error_code, 400), mimetype="application/json")


def from_exception(exc: EmulatorError) -> Response:
    return error_response(exc.error_code, exc.message, exc.status)


def not_implemented(backend: str, method: str, path: str) -> Response:
    """501, never another 5xx: Databricks clients retry 5xx for minutes."""
    return error_response("NOT_IMPLEMENTED", f"The {backend} emulator does not implement {method} {path}", 501)
