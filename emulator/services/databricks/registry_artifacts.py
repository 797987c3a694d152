"""Model-version artifacts of the workspace registry, as Databricks serves them.

* ``model-versions/create``: like Databricks, the SERVER copies the version's files from its source
  (the client uploads nothing) into ``<state>/artifacts/model-registry/<name>/<version>/``.
* ``model-versions/list-artifacts`` and ``model-versions/get-signed-download-uri``: what
  ``DatabricksModelsArtifactRepository`` (``models:/name/1``) calls.
* ``/__emulator/databricks/signed/model-version``: the "signed URL". The client fetches it without
  the workspace token (as it would a cloud storage URL), so it carries an HMAC of name, version,
  path and expiry keyed with the workspace token, and it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode

from flask import Flask, request

from emulator.errors import EmulatorError
from emulator.services.databricks.artifact_paths import (
    file_infos,
    json_response,
    local_path,
    mlflow_error,
)
from emulator.services.databricks.files_api import file_response
from emulator.services.databricks.registration_lifecycle import FAILED, set_status
from emulator.settings import ServerConfig
from emulator.stores.safe_paths import Storage, split_segments

_logger = logging.getLogger(__name__)

REGISTRY_FOLDER = "model-registry"
SIGNED_PATH = "/__emulator/databricks/signed/model-version"
URL_LIFETIME_S = 3600
# Databricks' status_message for a source path with nothing at it (mlflow/mlflow#4630, #3490).
SOURCE_MISSING = "Failed registration. The given source path does not exist."
_EXPIRES = re.compile(r"[0-9]{1,12}")


def _version_segments(name: str, version: str) -> list[str]:
    # Quoted and prefixed so no model name can become '.', '..' or contain a separator.
    return [REGISTRY_FOLDER, "n-" + quote(name, safe=""), "v-" + quote(str(version), safe="")]


class RegistryArtifacts:
    def __init__(self, artifacts: Storage, token: str, dbfs_locate: Callable[[str], Path] | None = None):
        self.artifacts = artifacts
        self._key = token.encode()
        # fidelity: Databricks workspace (DBFS paths) -- other dbfs:/ sources (MLflow's
        # 'tmp-external-source' copies of a model tracked elsewhere) are the workspace's DBFS files.
        self._dbfs_locate = dbfs_locate

    def _source_path(self, source_uri: str) -> Path | None:
        src = local_path(self.artifacts, source_uri)
        if src is None and self._dbfs_locate and (source_uri or "").startswith("dbfs:/"):
            src = self._dbfs_locate(source_uri)
        return src

    def copy_dir(self, name: str, version: str) -> Path:
        return self.artifacts.resolve(_version_segments(name, version))

    def copy_from_source(self, name: str, version: str, source_uri: str) -> str | None:
        """Copy the source's files; the registration's failure message if it holds no files."""
        from mlflow.exceptions import MlflowException

        try:
            src = self._source_path(source_uri)
        except (MlflowException, EmulatorError):  # a runs:/ or models:/ source this workspace lacks
            src = None
        if src is None or not src.is_dir() or not any(p.is_file() for p in src.rglob("*")):
            _logger.warning("model %s v%s: source %s holds no files in this workspace", name, version, source_uri)
            # fidelity: Registration lifecycle
            return SOURCE_MISSING
        dst = self.copy_dir(name, version)
        if dst.exists():
            # The SQL store reuses a deleted version's number: never mix in the old files.
            Storage.delete(dst, recursive=True)
        Storage.copy_tree(src, dst)
        return None

    def version_root(self, name: str, version: str) -> Path:
        """The version's files: the server's copy, else (older state) its source."""
        from mlflow.server.handlers import _get_model_registry_store

        store = _get_model_registry_store()
        mv = store.get_model_version(name, version)  # 404 for unknown versions
        copy = self.copy_dir(name, mv.version)
        if copy.is_dir():
            return copy
        src = self._source_path(store.get_model_version_download_uri(name, mv.version))
        if src is None:
            raise EmulatorError(
                "RESOURCE_DOES_NOT_EXIST", f"Model version {name}/{version} has no files in this workspace.", 404
            )
        return src

    def sign(self, name: str, version: str, path: str, expires: int) -> str:
        msg = "\n".join([name, str(version), path, str(expires)]).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()


def _args() -> tuple[str, str, str]:
    name, version = request.args.get("name"), request.args.get("version")
    if not name or not version:
        raise EmulatorError("INVALID_PARAMETER_VALUE", "Both 'name' and 'version' are required.", 400)
    return name, version, (request.args.get("path") or "").strip("/")


def install(app: Flask, config: ServerConfig, registry: RegistryArtifacts) -> None:
    from mlflow.exceptions import MlflowException

    app.config["EMULATOR_PUBLIC_PREFIXES"].append(SIGNED_PATH)

    # Wrap MLflow's own model-versions/create view: after a successful create, copy the files.
    def wrap(original):
        def create_and_copy(*args, **kwargs):
            response = original(*args, **kwargs)
            if getattr(response, "status_code", 200) == 200:
                mv = (response.get_json(silent=True) or {}).get("model_version") or {}
                if mv.get("name") and mv.get("version"):
                    try:
                        from mlflow.server.handlers import _get_model_registry_store

                        source = _get_model_registry_store().get_model_version_download_uri(
                            mv["name"], mv["version"]
                        )
                        failure = registry.copy_from_source(mv["name"], mv["version"], source)
                        if failure:
                            set_status(mv["name"], mv["version"], FAILED, failure)
                    except (MlflowException, EmulatorError, OSError):
                        # The version exists either way; list-artifacts falls back to its source.
                        _logger.exception("copying files of %s v%s failed", mv["name"], mv["version"])
            return response

        return create_and_copy

    # /api and /ajax-api share one view function: wrap it once.
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.rule.endswith("/mlflow/model-versions/create")}
    for endpoint in endpoints:
        app.view_functions[endpoint] = wrap(app.view_functions[endpoint])

    @app.route("/api/2.0/mlflow/model-versions/list-artifacts", methods=["GET"])
    def _mv_list_artifacts():
        name, version, path = _args()
        try:
            root = registry.version_root(name, version)
        except MlflowException as exc:
            return mlflow_error(exc)
        target = registry.artifacts.resolve(
            [*root.relative_to(registry.artifacts.resolve([])).parts, *(split_segments(path) if path else [])],
            path,
        )
        if target.is_file():
            st = target.stat()
            return json_response({"files": [{"path": path, "is_dir": False, "file_size": st.st_size}]})
        if not target.is_dir():
            return json_response({"files": []})
        return json_response({"files": file_infos(target, path)})

    @app.route("/api/2.0/mlflow/model-versions/get-signed-download-uri", methods=["GET"])
    def _signed_download_uri():
        name, version, path = _args()
        try:
            registry.version_root(name, version)
        except MlflowException as exc:
            return mlflow_error(exc)
        if path:
            split_segments(path)
        expires = int(time.time()) + URL_LIFETIME_S
        query = urlencode(
            {"name": name, "version": version, "path": path, "expires": expires,
             "sig": registry.sign(name, version, path, expires)}
        )
        # The configured address, never the Host header a caller sent.
        base = config.public_url.rstrip("/")
        return json_response({"signed_uri": f"{base}{SIGNED_PATH}?{query}", "headers": []})

    @app.route(SIGNED_PATH, methods=["GET", "HEAD"])
    def _signed_download():
        name, version, path = _args()
        expires, sig = request.args.get("expires", ""), request.args.get("sig", "")
        # ASCII digits only: str.isdigit() also takes '²', which int() refuses (a 500, not a 403).
        good = _EXPIRES.fullmatch(expires) is not None and hmac.compare_digest(
            sig.encode(), registry.sign(name, version, path, int(expires)).encode())
        if not good:
            raise EmulatorError("PERMISSION_DENIED", "The signature of this download URL is not valid.", 403)
        if int(expires) < time.time():
            raise EmulatorError("PERMISSION_DENIED", "This download URL has expired.", 403)
        try:
            root = registry.version_root(name, version)
        except MlflowException as exc:
            return mlflow_error(exc)
        base = registry.artifacts.resolve([])
        target = registry.artifacts.resolve(
            [*root.relative_to(base).parts, *(split_segments(path) if path else [])], path
        )
        if not target.is_file():
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No file at {path!r} in {name} v{version}.", 404)
        return file_response(target, request.method)
