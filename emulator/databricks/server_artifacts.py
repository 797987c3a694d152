"""MLflow's server-side artifact routes for runs whose artifacts live under ``dbfs:/``.

A stock server answers ``/api/2.0/mlflow/artifacts/list`` with a 500 for ``dbfs:`` roots (it
would need DBFS credentials), which the client retries for minutes. Here the listing (used by the
client's fallback repository and the UI) and ``/get-artifact`` (the UI's file viewer) read the
workspace's own files.
"""

from __future__ import annotations

from flask import Flask, request

from emulator.databricks.artifact_paths import file_infos, json_response, local_path, mlflow_error
from emulator.databricks.files_api import file_response
from emulator.databricks.storage import Storage
from emulator.errors import EmulatorError

LIST_ROUTES = ("/api/2.0/mlflow/artifacts/list", "/ajax-api/2.0/mlflow/artifacts/list")
GET_ROUTES = ("/get-artifact", "/ajax-api/2.0/mlflow/get-artifact")


def install(app: Flask, artifacts: Storage) -> None:
    from mlflow.exceptions import MlflowException

    def run_artifact_path():
        from mlflow.server.handlers import _get_tracking_store

        run_id = request.args.get("run_id") or request.args.get("run_uuid")
        if not run_id:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'.", 400)
        path = (request.args.get("path") or "").strip("/")
        root = _get_tracking_store().get_run(run_id).info.artifact_uri
        return root, path, local_path(artifacts, root, path)

    @app.before_request
    def _run_artifacts():
        if request.method != "GET" or request.path not in LIST_ROUTES + GET_ROUTES:
            return None
        try:
            root, path, target = run_artifact_path()
        except MlflowException as exc:
            return mlflow_error(exc)
        if target is None:
            return None  # not a dbfs:/ run: MLflow's own handler
        if request.path in GET_ROUTES:
            if not target.is_file():
                raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No artifact at {path!r}.", 404)
            return file_response(target)
        body = {"root_uri": root}
        if target.is_dir():
            body["files"] = file_infos(target, path)
        return json_response(body)
