"""Signed cloud-storage URLs for run and logged-model artifacts, as Azure Databricks hands them out.

MLflow clients before 3.4 move every Databricks run artifact this way (3.4+ when a Files API call
fails, and always with ``MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS=true``):
``POST /api/2.0/mlflow/artifacts/credentials-for-write|read`` ``{run_id, path: [...]}`` (and for
logged models ``/logged-models/<id>/artifacts/credentials-for-upload|download`` ``{paths}``) answer
``AZURE_SAS_URI`` credentials; the client then Put Block / Put Block List or GETs the blob there
(``mlflow/azure/client.py``, ``download_file_using_http_uri``). The URLs point at this workspace's
own blob endpoint (path-style ``<public url>/<account>.blob.core.windows.net/<container>/<blob>``,
the shared ``emulator.services.blob`` service), over the same files the Files API and DBFS serve: blob
``<exp>/<run>/artifacts/<path>`` is ``dbfs:/databricks/mlflow-tracking/<exp>/<run>/artifacts/<path>``.
Every path goes through the DBFS path guard and the artifact ownership checks, when signing and
again when the blob is used.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.services.blob import sas
from emulator.services.blob.service import BlobService
from emulator.services.databricks.artifact_owners import ArtifactOwners
from emulator.services.databricks.dbfs_api import READ, TRACKING, Dbfs
from emulator.settings import ServerConfig

CONTAINER = "mlflow-tracking"
AZURE_SAS_URI = "AZURE_SAS_URI"
TTL_SECONDS = 3600
MAX_PATHS = 5000  # more than a page of the client's own 2000-path batches (databricks_artifact_repo)
_TRACKING_URI = "dbfs:/" + "/".join(TRACKING) + "/"


def storage_account(workspace_id: str) -> str:
    # Azure Databricks' managed storage accounts are named dbstorage<random>; 24 characters at most.
    return f"dbstorage{workspace_id}"[:24]


def _bad(message: str) -> EmulatorError:
    return EmulatorError("INVALID_PARAMETER_VALUE", message, 400)


def _paths(body: dict, field: str) -> list[str]:
    paths = body.get(field, [])
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad(f"Invalid value for parameter '{field}': expected a list of strings")
    if len(paths) > MAX_PATHS:
        raise _bad(f"Too many paths ({len(paths)}) in one request; at most {MAX_PATHS}")
    return paths


class ArtifactCredentials:
    def __init__(self, config: ServerConfig, dbfs: Dbfs, workspace_id: str):
        self.config = config
        self.dbfs = dbfs
        self.account = storage_account(workspace_id)
        self.host = f"{self.account}.blob.core.windows.net"

    def blob_service(self, wsgi_app, artifacts_root: Path, staging: Path, owners: ArtifactOwners,
                     on_write=None) -> BlobService:
        return BlobService(wsgi_app, token=self.config.token, account=self.account, host=self.host,
                           root=artifacts_root, staging=staging, container=CONTAINER,
                           check=lambda parts: owners.check_root_path(parts, "/".join(parts)),
                           on_write=on_write)

    def _blob(self, root_uri: str, path: str) -> str:
        """The blob name of ``path`` under an artifact root, through the DBFS guard and owner checks."""
        if not root_uri.startswith(_TRACKING_URI):
            raise _bad(f"Artifacts at {root_uri} are not in this workspace's MLflow artifact storage")
        _, canonical = self.dbfs.locate(root_uri.rstrip("/") + "/" + path.lstrip("/"), READ, collapse_slashes=False)
        parts = canonical.strip("/").split("/")[len(TRACKING):]
        if len(parts) < 3:
            raise _bad(f"Not an artifact path: {path!r}")
        return "/".join(parts)

    def credential(self, root_uri: str, path: str, permissions: str) -> dict:
        blob = self._blob(root_uri, path)
        # fidelity: Databricks artifact credentials
        query = sas.sign(self.config.token, self.account, CONTAINER, blob, permissions, ttl=TTL_SECONDS)
        base = f"{self.config.public_url.rstrip('/')}/{self.host}"
        return {"signed_uri": sas.blob_url(base, CONTAINER, blob, query), "type": AZURE_SAS_URI, "headers": []}


def _store():
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def _run_root(run_id) -> str:
    from mlflow.exceptions import MlflowException

    if not isinstance(run_id, str) or not run_id:
        raise _bad("Missing required field: run_id")
    try:
        return _store().get_run(run_id).info.artifact_uri
    except (MlflowException, ValueError):
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Run with id={run_id} not found", 404) from None


def _model_root(model_id: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return _store().get_logged_model(model_id).artifact_location
    except (MlflowException, ValueError):
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Logged model with ID '{model_id}' not found.", 404) from None


def _body() -> dict:
    body = request.get_json(silent=True, force=True)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise EmulatorError("MALFORMED_REQUEST", "The request body must be a JSON object", 400)
    return body


def install(app: Flask, credentials: ArtifactCredentials) -> None:
    def run_credentials(permissions: str):
        body = _body()
        run_id = body.get("run_id")
        root = _run_root(run_id)
        infos = []
        for path in _paths(body, "path"):
            info = credentials.credential(root, path, permissions)
            infos.append({"run_id": run_id, "path": path, **info})
        return jsonify({"credential_infos": infos})

    @app.route("/api/2.0/mlflow/artifacts/credentials-for-write", methods=["POST"])
    def _credentials_for_write():
        return run_credentials(sas.WRITE)

    @app.route("/api/2.0/mlflow/artifacts/credentials-for-read", methods=["POST"])
    def _credentials_for_read():
        return run_credentials(sas.READ)

    def model_credentials(model_id: str, permissions: str):
        body = _body()
        root = _model_root(model_id)
        infos = []
        for path in _paths(body, "paths"):
            info = credentials.credential(root, path, permissions)
            infos.append({"model_id": model_id, "credential_info": {"path": path, **info}})
        return jsonify({"credentials": infos})

    @app.route("/api/2.0/mlflow/logged-models/<model_id>/artifacts/credentials-for-upload", methods=["POST"])
    def _model_credentials_for_upload(model_id):
        return model_credentials(model_id, sas.WRITE)

    @app.route("/api/2.0/mlflow/logged-models/<model_id>/artifacts/credentials-for-download", methods=["POST"])
    def _model_credentials_for_download(model_id):
        return model_credentials(model_id, sas.READ)
