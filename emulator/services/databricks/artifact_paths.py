"""Where MLflow artifact URIs of this workspace live on local disk, and MLflow errors as responses.

``dbfs:/databricks/mlflow-tracking/<rest>`` is ``<state>/artifacts/<rest>``; ``runs:/<run>/<p>`` and
``models:/<logged model id>`` are resolved through the tracking store first. Everything goes
through the storage guard.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from flask import Response

from emulator.stores.safe_paths import Storage, split_segments

TRACKING_ROOT = "dbfs:/databricks/mlflow-tracking"


def local_path(artifacts: Storage, uri: str, sub_path: str = "") -> Path | None:
    """The local folder or file for an artifact URI of this workspace, or None if it isn't one."""
    uri = (uri or "").rstrip("/")
    parsed = urlparse(uri)
    if parsed.scheme == "dbfs" and (uri + "/").startswith(TRACKING_ROOT + "/"):
        rest = uri[len(TRACKING_ROOT):].strip("/")
    elif parsed.scheme == "runs":
        from mlflow.server.handlers import _get_tracking_store

        run_id, _, in_run = parsed.path.lstrip("/").partition("/")
        run_root = _get_tracking_store().get_run(run_id).info.artifact_uri
        return local_path(artifacts, run_root, "/".join(p for p in (in_run, sub_path) if p))
    elif parsed.scheme == "models" and parsed.path.lstrip("/").startswith("m-"):
        from mlflow.server.handlers import _get_tracking_store

        model_id, _, in_model = parsed.path.lstrip("/").partition("/")
        root = _get_tracking_store().get_logged_model(model_id).artifact_location
        return local_path(artifacts, root, "/".join(p for p in (in_model, sub_path) if p))
    else:
        return None
    joined = "/".join(p for p in (rest, sub_path.strip("/")) if p)
    return artifacts.resolve(split_segments(joined) if joined else [], joined)


def mlflow_error(exc) -> Response:
    """An MlflowException as MLflow's handlers would answer it (never a 500 for a client error)."""
    return Response(exc.serialize_as_json(), status=exc.get_http_status_code(), mimetype="application/json")


def file_infos(folder: Path, prefix: str) -> list[dict]:
    """MLflow FileInfo dicts for the entries of ``folder``, paths prefixed with ``prefix``."""
    files = []
    for entry in Storage.list_dir(folder):
        item = {"path": f"{prefix}/{entry.name}" if prefix else entry.name, "is_dir": entry.is_dir}
        if not entry.is_dir:
            item["file_size"] = entry.size
        files.append(item)
    return files


def json_response(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
