"""MLflow's server-side artifact routes for artifacts that live under ``dbfs:/``.

A stock server answers these with a 500 for ``dbfs:`` roots (it would need DBFS credentials), and
the client retries 5xx for minutes. Here they read the workspace's own files:

* ``artifacts/list`` (runs; the client's fallback repository and the UI) and ``get-artifact``
* ``logged-models/<id>/artifacts/directories`` and the UI's ``.../artifacts/files``
* the UI's ``model-versions/get-artifact``

Runs or models of experiments with a user-given ``dbfs:/`` location read the workspace's DBFS
(``<state>/dbfs``). Others (none: ``emulator.stores.artifact_locations`` allows only ``dbfs:/``) fall
through to MLflow's own handlers.
"""

from __future__ import annotations

import re

from flask import Flask, request

from emulator.errors import EmulatorError
from emulator.services.databricks.artifact_paths import (
    file_infos,
    json_response,
    local_path,
    mlflow_error,
)
from emulator.services.databricks.files_api import file_response
from emulator.stores.safe_paths import Storage, split_segments

_API = r"/(?:ajax-)?api/2\.0/mlflow/"
RUN_LIST = re.compile(_API + r"artifacts/list")
RUN_GET = re.compile(r"(?:/get-artifact|/ajax-api/2\.0/mlflow/get-artifact)")
MODEL_LIST = re.compile(_API + r"logged-models/(?P<model_id>[^/]+)/artifacts/directories")
MODEL_GET = re.compile(_API + r"logged-models/(?P<model_id>[^/]+)/artifacts/files")
VERSION_GET = re.compile(r"(?:/ajax-api/2\.0/mlflow)?/model-versions/get-artifact")


def _clean(path: str | None) -> str:
    path = (path or "").strip("/")
    if path:
        split_segments(path)  # 400 for '..' and friends before anything is resolved
    return path


def _in_dbfs(dbfs: Storage, root: str, path: str):
    """A run or model under a user-given ``dbfs:/`` location outside the tracking root: its files
    are in the workspace's DBFS (where the client put them through the DBFS API), read from there
    - never through MLflow's DBFS client, which would look for real Databricks credentials."""
    if not (root or "").startswith("dbfs:/") or root.startswith("dbfs://"):
        return None
    joined = "/".join(p for p in (root[len("dbfs:/"):].strip("/"), path) if p)
    return dbfs.resolve(split_segments(joined) if joined else [], joined)


def install(app: Flask, artifacts: Storage, dbfs: Storage | None = None) -> None:
    from mlflow.exceptions import MlflowException

    def root_of(match: re.Match, kind: str) -> str:
        from mlflow.server.handlers import (
            _get_model_registry_store,
            _get_tracking_store,
        )

        if kind == "run":
            run_id = request.args.get("run_id") or request.args.get("run_uuid")
            if not run_id:
                raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'.", 400)
            return _get_tracking_store().get_run(run_id).info.artifact_uri
        if kind == "model":
            return _get_tracking_store().get_logged_model(match.group("model_id")).artifact_location
        return _get_model_registry_store().get_model_version_download_uri(
            request.args.get("name"), request.args.get("version")
        )

    routes = [
        (RUN_LIST, "run", "list", "path"),
        (RUN_GET, "run", "get", "path"),
        (MODEL_LIST, "model", "list", "artifact_directory_path"),
        (MODEL_GET, "model", "get", "artifact_file_path"),
        (VERSION_GET, "version", "get", "path"),
    ]

    @app.before_request
    def _dbfs_artifacts():
        if request.method != "GET":
            return None
        for pattern, kind, action, arg in routes:
            match = pattern.fullmatch(request.path)
            if match:
                break
        else:
            return None
        path = _clean(request.args.get(arg))
        try:
            root = root_of(match, kind)
        except MlflowException as exc:
            return mlflow_error(exc)
        target = local_path(artifacts, root, path)
        if target is None and dbfs is not None:
            target = _in_dbfs(dbfs, root, path)
        if target is None:
            return None  # not a dbfs:/ location: MLflow's own handler
        if action == "get":
            if not target.is_file():
                raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No artifact at {path!r}.", 404)
            return file_response(target)
        body = {"root_uri": root}
        if target.is_dir():
            body["files"] = file_infos(target, path)
        return json_response(body)
