"""Error answers in the backends' own JSON shape: ``{"error_code": ..., "message": ...}``."""

from __future__ import annotations

import errno
import json
import logging
import sqlite3

from flask import Response, request

_logger = logging.getLogger(__name__)

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


# fidelity: Disk full
# A full disk is transient (space can be freed), and clients retry 503: every route answers it
# the same way, 503 TEMPORARILY_UNAVAILABLE, as MLflow's own handlers already did for the store.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_MESSAGE = ("The emulator's disk is full ({detail}); nothing was stored. Free space under its "
                     "state directory and retry.")


def is_disk_full(exc: BaseException | None) -> bool:
    """True for ENOSPC/EDQUOT, also when wrapped (SQLite's "database or disk is full", SQLAlchemy)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def disk_full_response(exc: BaseException) -> Response:
    detail = getattr(exc, "strerror", None) or str(exc)
    return error_response("TEMPORARILY_UNAVAILABLE", DISK_FULL_MESSAGE.format(detail=detail), 503)


def install_disk_full(app) -> None:
    """Answer a full disk with 503 on every route (Files API, DBFS, Workspace API, uploads)."""

    def _handle(exc: Exception):
        if is_disk_full(exc):
            _logger.warning("disk full on %s %s: %s", request.method, request.path, exc)
            return disk_full_response(exc)
        # Any other I/O error: what the generic handler answers (a 500 in the backend's shape).
        _logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("INTERNAL_ERROR", f"Internal error: {type(exc).__name__}: {exc}", 500)

    app.register_error_handler(OSError, _handle)
    app.register_error_handler(sqlite3.OperationalError, _handle)
