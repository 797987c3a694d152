"""Which ``artifact_location`` a client may give ``experiments/create``: only the workspace's own storage.

A stock MLflow server takes any location (``file:///any/dir``, a bare ``/abs/path``, another
server's ``mlflow-artifacts://host/...``), and its server-side artifact routes then read and
write there. Here:

* Databricks accepts ``dbfs:/`` locations only, as the real service does (its experiments live in
  DBFS or cloud storage it manages); ``dbfs:/databricks/mlflow-tracking/...`` is the tracking
  root, any other DBFS path lives in the workspace's emulated DBFS (``<state>/dbfs``).
* Azure ML accepts only its own artifact store: ``mlflow-artifacts:/<path>`` (no host), or none.

Both refuse dot segments, empty segments and encoded variants, so a location can't climb out of
its root. Anything else is 400 ``INVALID_PARAMETER_VALUE``.
"""

from __future__ import annotations

from urllib.parse import urlparse

from emulator.errors import EmulatorError
from emulator.stores.safe_paths import split_segments

DATABRICKS_SCHEMES = ("dbfs",)
AZUREML_SCHEMES = ("mlflow-artifacts",)


def _refuse(location, why: str) -> EmulatorError:
    return EmulatorError(
        "INVALID_PARAMETER_VALUE", f"Invalid value {location!r} for parameter 'artifact_location': {why}.", 400
    )


def check(location, schemes: tuple[str, ...]) -> str | None:
    """The location if it is allowed (None/empty: the server's default), else the 400."""
    if location is None or location == "":
        return None
    if not isinstance(location, str):
        raise _refuse(location, "expected a string")
    parsed = urlparse(location)
    allowed = " or ".join(f"'{s}:/...'" for s in schemes)
    if parsed.scheme not in schemes:
        raise _refuse(location, f"this workspace stores artifacts only under {allowed}")
    # "dbfs:/x" and "mlflow-artifacts:/x" have no host; "scheme://host/x" would name another server.
    if (parsed.netloc or location.startswith(f"{parsed.scheme}://") or parsed.query or parsed.fragment
            or not location.startswith(f"{parsed.scheme}:/")):
        raise _refuse(location, f"expected {allowed} with an absolute path and no host")
    path = parsed.path.strip("/")
    if path:
        try:
            split_segments(path.rstrip("/"), location)
        except EmulatorError as exc:
            raise _refuse(location, "'.', '..' and empty path segments are not allowed") from exc
    return location


def install_check(app, schemes: tuple[str, ...]) -> None:
    """A before_request hook refusing other locations on ``experiments/create`` (after validation)."""
    from flask import request

    @app.before_request
    def _check_artifact_location():
        if request.method == "POST" and request.path in (
            "/api/2.0/mlflow/experiments/create", "/ajax-api/2.0/mlflow/experiments/create"
        ):
            body = request.get_json(force=True, silent=True)
            if isinstance(body, dict):
                check(body.get("artifact_location"), schemes)
        return None
