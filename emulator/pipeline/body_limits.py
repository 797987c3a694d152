"""Request body size caps, per route, checked before any of the body is read.

* JSON APIs (everything that is not an upload): 16 MiB, far above MLflow's 1 MB batch limit.
* Uploads, which are streamed to disk in chunks, never held in memory: the Files API ``PUT``,
  DBFS (``/dbfs/<path>`` and ``dbfs/put``), Azure ML's proxied ``mlflow-artifacts`` ``PUT`` and the
  UI's upload: 5 GiB, or ``EMULATOR_MAX_UPLOAD_BYTES``.

A declared ``Content-Length`` over the cap is answered 413 at once (after the token check, so a
caller without a token gets its 401 and learns nothing); a chunked body is cut off with the same
413 when it passes the cap (``request.max_content_length``). The WSGI server (``http_server``)
closes the connection after such an answer instead of reading the rest.
"""

from __future__ import annotations

import os

from flask import Flask, request

from emulator.errors import EmulatorError

MAX_JSON_BODY = 16 * 1024**2
DEFAULT_MAX_UPLOAD = 5 * 1024**3
MAX_UPLOAD_ENV = "EMULATOR_MAX_UPLOAD_BYTES"

# (method, path prefix) of the routes whose body is a file.
UPLOAD_ROUTES = (
    ("PUT", "/api/2.0/fs/files/"),
    ("POST", "/dbfs/"),
    ("POST", "/api/2.0/dbfs/put"),
    ("PUT", "/api/2.0/mlflow-artifacts/artifacts/"),
    ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/"),
    ("POST", "/ajax-api/2.0/mlflow/upload-artifact"),
)


def max_upload_bytes() -> int:
    value = os.environ.get(MAX_UPLOAD_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_UPLOAD
    try:
        limit = int(value)
    except ValueError:
        raise ValueError(f"{MAX_UPLOAD_ENV} must be a number of bytes, got {value!r}") from None
    if limit <= 0:
        raise ValueError(f"{MAX_UPLOAD_ENV} must be positive, got {limit}")
    return limit


def is_upload(method: str, path: str) -> bool:
    return any(method == m and path.startswith(p) for m, p in UPLOAD_ROUTES)


def too_large(limit: int, size: int | None = None) -> EmulatorError:
    what = f"The request body ({size} bytes)" if size is not None else "The request body"
    return EmulatorError(
        "INVALID_PARAMETER_VALUE", f"{what} exceeds the limit of {limit} bytes for {request.path}.", 413
    )


def install(app: Flask) -> None:
    """Register the cap check. Call after the token check's hook and before any hook that reads
    the body (Flask runs before_request hooks in registration order)."""
    upload_limit = max_upload_bytes()  # a bad setting fails the start, not a request

    # fidelity: Body sizes
    @app.before_request
    def _cap_body():
        limit = upload_limit if is_upload(request.method, request.path) else MAX_JSON_BODY
        # Werkzeug reads a (chunked) body up to max_content_length and raises 413 only on a read
        # past it; its readall() stops quietly AT the limit. One byte more lets a body of exactly
        # `limit` bytes through and makes an over-long one visible (413 on the next read, or a
        # `limit + 1`-byte body that readers of whole bodies check: validation.parse_body()).
        request.max_content_length = limit + 1
        size = request.content_length
        if size is not None and size > limit:
            raise too_large(limit, size)
        return None
