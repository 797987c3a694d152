"""The Databricks Files API (``/api/2.0/fs/files|directories/<path>``) as MLflow and the SDK use it.

MLflow 3 writes run and logged-model artifacts through it (``databricks_sdk_artifact_repo.py``):

* ``/WorkspaceInternal/Mlflow/Artifacts/<exp>/Runs/<run>/...``           -> ``artifacts/<exp>/<run>/...``
* ``/WorkspaceInternal/Mlflow/Artifacts/<exp>/LoggedModels/<id>/...``    -> ``artifacts/<exp>/logged_models/<id>/...``

i.e. the same files as ``dbfs:/databricks/mlflow-tracking/<exp>/...``. ``/Volumes/<rest>`` maps to
``<state>/volumes/<rest>``. Multipart upload (``?action=initiate-upload``, used for >= 50 MiB) answers
501, so the SDK falls back to one PUT; ``create-download-url`` answers 404, so it does a plain GET;
``GET /fs/endpoints`` lists only this Files API, so an SDK that asks goes there directly.
Paths are dispatched in a before_request hook, not URL rules, so that ``//`` and dot segments reach
the path guard (and get a 400) instead of Werkzeug's slash merging and redirects.

MLflow paths must name an experiment and a run (or logged model) of this workspace that belong
together (``artifact_owners``), for reads as for writes. Artifacts can be written to existing runs
but not deleted (as MLflow's own Databricks repositories: "Not implemented"), and a write whose
parent is a file is a 409, never a 500.
"""

from __future__ import annotations

import json
import re
from email.utils import formatdate
from pathlib import Path

from flask import Flask, Response, request, stream_with_context

from emulator.errors import EmulatorError, error_response, not_implemented
from emulator.services.databricks import trace_spans
from emulator.services.databricks.artifact_owners import (
    LOGGED_MODELS,
    TRACES,
    ArtifactOwners,
)
from emulator.stores import trace_files
from emulator.stores.safe_paths import Storage, UnderAFile, bad_path, split_segments

FILES_PREFIX = "/api/2.0/fs/files"
DIRS_PREFIX = "/api/2.0/fs/directories"
MLFLOW_ROOT = ["WorkspaceInternal", "Mlflow", "Artifacts"]
KINDS = {"Runs": None, "LoggedModels": LOGGED_MODELS}


class FilesLocator:
    """Turns Files API paths into (storage, local path) and back."""

    def __init__(self, artifacts: Storage, volumes: Storage, owners: ArtifactOwners | None = None):
        self.artifacts = artifacts
        self.volumes = volumes
        self.owners = owners or ArtifactOwners()

    @staticmethod
    def is_mlflow(api_path: str) -> bool:
        return api_path.lstrip("/").split("/")[:3] == MLFLOW_ROOT

    @staticmethod
    def trace_data(api_path: str) -> tuple[str, str] | None:
        """(experiment, trace id) if the path is a trace's span file, ``.../Runs/traces/<id>/artifacts/traces.json``."""
        segments = api_path.lstrip("/").split("/")
        if segments[:3] != MLFLOW_ROOT or len(segments) != 9:
            return None
        exp, kind, owner, trace_id, folder, name = segments[3:]
        if (kind, owner, folder, name) != ("Runs", TRACES, "artifacts", trace_files.FILE_NAME):
            return None
        return exp, trace_id

    def locate(self, api_path: str) -> Path:
        if not api_path.startswith("/"):
            raise bad_path(api_path, "Files API paths must be absolute")
        segments = split_segments(api_path[1:], api_path)
        if segments[:3] == MLFLOW_ROOT:
            rest = segments[3:]
            if len(rest) < 3 or rest[1] not in KINDS:
                raise bad_path(
                    api_path,
                    "MLflow artifact paths look like /WorkspaceInternal/Mlflow/Artifacts/<experiment>/"
                    "Runs/<run>/... or .../<experiment>/LoggedModels/<model>/...",
                )
            exp, kind, ident, tail = rest[0], rest[1], rest[2], rest[3:]
            local = [exp, ident] if KINDS[kind] is None else [exp, KINDS[kind], ident]
            target = self.artifacts.resolve(local + tail, api_path)
            # fidelity: Databricks workspace
            if kind == "Runs" and ident == TRACES and tail:
                # MLflow 3 trace data: the client's run repository writes Runs/traces/<trace id>/...
                self.owners.trace(exp, tail[0], api_path)
            elif kind == "Runs":
                self.owners.run(exp, ident, api_path)
            else:
                self.owners.logged_model(exp, ident, api_path)
            return target
        if segments[:1] == ["Volumes"] and len(segments) > 1:
            return self.volumes.resolve(segments[1:], api_path)
        raise bad_path(
            api_path,
            "the emulated Files API serves /Volumes/... and MLflow's /WorkspaceInternal/Mlflow/Artifacts/...",
        )


def _not_found(kind: str, api_path: str) -> Response:
    return error_response("NOT_FOUND", f"The {kind} being accessed is not found: {api_path}", 404)


def _http_date(mtime: float) -> str:
    return formatdate(mtime, usegmt=True)


def install(app: Flask, locator: FilesLocator) -> None:
    @app.before_request
    def _files_api():
        path = request.path
        if path.startswith(FILES_PREFIX + "/"):
            return _file(locator, path[len(FILES_PREFIX):])
        if path.startswith(DIRS_PREFIX + "/"):
            return _directory(locator, path[len(DIRS_PREFIX):])
        return None

    @app.route("/api/2.0/fs/endpoints", methods=["GET"])
    def _endpoints():
        # fidelity: Databricks workspace (Files API endpoints)
        # Only this workspace's own Files API 2.0, single-shot: the SDK then never asks for presigned
        # URLs or multipart sessions. Listed at the address the caller reached, as the SDK skips (and
        # warns about) an http entry whose host is not the one it is configured with.
        own = {"api": "FILES_API", "api_version": "2.0", "scheme": request.scheme,
               "hostname": request.host, "multipart_upload_supported": False}
        return Response(json.dumps({"endpoints": [own]}), status=200, mimetype="application/json")

    @app.route("/api/2.0/fs/create-download-url", methods=["POST"])
    def _create_download_url():
        # fidelity: Databricks workspace (Files API endpoints)
        # No presigned URLs here: a 404 makes the SDK's built-in order move on at once to a plain GET
        # on /fs/files. The SDK sends the path as a query parameter.
        return _not_found("presigned download URL", request.args.get("path", ""))

    @app.route("/api/2.0/fs/create-upload-part-urls", methods=["POST"])
    def _no_presigned():
        return not_implemented("Databricks", request.method, request.path)


def _conflict(exc: UnderAFile) -> EmulatorError:
    # fidelity: Databricks workspace (the Files API's own code for a path taken by the other kind)
    return EmulatorError("ALREADY_EXISTS", exc.message, 409)


def _refuse_mlflow_delete(api_path: str) -> None:
    if FilesLocator.is_mlflow(api_path):
        # fidelity: Databricks workspace
        raise EmulatorError(
            "PERMISSION_DENIED",
            f"MLflow artifacts cannot be deleted through the Files API: {api_path}",
            403,
        )


def _file(locator: FilesLocator, api_path: str) -> Response:
    target = locator.locate(api_path)
    method = request.method
    if method == "PUT":
        if target.is_dir():
            raise EmulatorError("ALREADY_EXISTS", f"A directory exists at {api_path}", 409)
        if FilesLocator.is_mlflow(api_path) and len(api_path.strip("/").split("/")) <= 6:
            # A file in place of the run's (or model's) own folder would block all its artifacts.
            raise bad_path(api_path, "an MLflow artifact is a file inside a run's or logged model's folder")
        overwrite = request.args.get("overwrite", "true").lower() != "false"
        if target.exists() and not overwrite:
            raise EmulatorError("ALREADY_EXISTS", f"The file being created already exists: {api_path}", 409)
        try:
            locator.artifacts.write_stream(target, request.stream, api_path)
        except UnderAFile as exc:
            raise _conflict(exc) from None
        if trace := FilesLocator.trace_data(api_path):
            # fidelity: Tracing parity
            trace_spans.ingest(*trace, target)  # so that the server's trace search reads its spans
        return Response(status=204)
    if method == "POST":
        action = request.args.get("action", "")
        # initiate-upload (multipart, >= 50 MiB) and resumable uploads: the SDK falls back to one PUT.
        return error_response(
            "NOT_IMPLEMENTED",
            f"The Databricks emulator does not implement multipart uploads (action={action!r}) on "
            f"{request.path}; send the file in a single PUT.",
            501,
        )
    if method not in ("GET", "HEAD", "DELETE"):
        return error_response("ENDPOINT_NOT_FOUND", f"{method} is not supported on {request.path}", 405)
    if not target.is_file():
        return _not_found("file", api_path)
    if method == "DELETE":
        _refuse_mlflow_delete(api_path)
        target.unlink()
        return Response(status=204)
    return file_response(target, method)


def file_response(target: Path, method: str = "GET") -> Response:
    """The file's bytes (or only its headers for HEAD), honouring a single ``Range: bytes=a-b``."""
    st = target.stat()
    headers = {"Last-Modified": _http_date(st.st_mtime), "Accept-Ranges": "bytes"}
    if method == "HEAD":
        headers["Content-Length"] = str(st.st_size)
        return Response(status=200, headers=headers, content_type="application/octet-stream")
    start, length, status = 0, None, 200
    rng = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
    if rng and int(rng.group(1)) < st.st_size:
        start = int(rng.group(1))
        end = min(int(rng.group(2)) if rng.group(2) else st.st_size - 1, st.st_size - 1)
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
    headers["Content-Length"] = str(st.st_size if length is None else length)
    body = stream_with_context(Storage.iter_file(target, start, length))
    return Response(body, status=status, headers=headers, content_type="application/octet-stream")


def _directory(locator: FilesLocator, api_path: str) -> Response:
    target = locator.locate(api_path)
    method = request.method
    if method == "PUT":
        if target.is_file():
            raise EmulatorError("ALREADY_EXISTS", f"A file exists at {api_path}", 409)
        try:
            locator.artifacts.make_dirs(target, api_path)
        except UnderAFile as exc:
            raise _conflict(exc) from None
        return Response(status=204)
    if not target.is_dir():
        return _not_found("directory", api_path)
    if method == "HEAD":
        return Response(status=200)
    if method == "DELETE":
        _refuse_mlflow_delete(api_path)
        if any(target.iterdir()):
            raise EmulatorError("DIRECTORY_NOT_EMPTY", f"The directory is not empty: {api_path}", 400)
        target.rmdir()
        return Response(status=204)
    if method != "GET":
        return error_response("ENDPOINT_NOT_FOUND", f"{method} is not supported on {request.path}", 405)
    base = api_path.rstrip("/")
    contents = []
    for entry in Storage.list_dir(target):
        item = {"path": f"{base}/{entry.name}", "name": entry.name, "is_directory": entry.is_dir}
        if not entry.is_dir:
            item.update(file_size=entry.size, last_modified=entry.mtime_ms)
        contents.append(item)
    return Response(json.dumps({"contents": contents}), status=200, mimetype="application/json")
