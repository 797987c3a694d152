"""The DBFS REST API (``/api/2.0/dbfs/...``) that users' code, ``w.dbfs`` and ``dbfs:/`` artifact URIs use.

``dbfs:/databricks/mlflow-tracking/<rest>`` is the workspace's MLflow artifact root (the same
files the Files API serves); every other DBFS path lives under ``<state>/dbfs/``. Contents travel
base64-encoded, at most 1 MB per call, as on Databricks; streaming uploads use create / add-block /
close handles (kept in memory: a restart drops open handles, as an expired handle would). Also
serves ``GET|POST /dbfs/<path>``, which MLflow's ``DbfsRestArtifactRepository`` uses for ``dbfs:/``
artifact locations outside the tracking root.

Under ``dbfs:/databricks/mlflow-tracking`` DBFS is read-only and shows only what this workspace
holds (``artifact_owners``: the experiment and run or logged model must exist and belong
together); MLflow writes artifacts through the Files API. The MLflow-managed roots
(``mlflow-tracking``, ``mlflow-registry``) and their ancestors can't be moved, deleted or
overwritten, so no DBFS call makes MLflow's artifacts or the registry's copies vanish. A write
below an existing file is RESOURCE_ALREADY_EXISTS (as ``dbfs/mkdirs`` documents), not a 500.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
import tempfile
import threading
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.pipeline.validation import INT64_MAX
from emulator.services.databricks.artifact_owners import ArtifactOwners
from emulator.services.databricks.files_api import file_response
from emulator.stores.safe_paths import Storage, bad_path, split_segments

MAX_BLOCK = 1024 * 1024
_SLASHES = re.compile("/{2,}")
TRACKING = ["databricks", "mlflow-tracking"]
# Where Databricks keeps MLflow's files: run and model artifacts, and the workspace registry's
# copies of model versions (dbfs:/databricks/mlflow-registry on Databricks).
MANAGED_ROOTS = [TRACKING, ["databricks", "mlflow-registry"]]

READ, MKDIRS, WRITE = "read", "mkdirs", "write"


def _missing(path: str) -> EmulatorError:
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {path}.", 404)


def _exists(path: str) -> EmulatorError:
    return EmulatorError(
        "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path {path}.", 400
    )


def _decode(data, what: str) -> bytes:
    if data is not None and not isinstance(data, str):  # [] or {} would pass as no data: an empty file
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"{what} must be a base64-encoded string.", 400)
    try:
        raw = base64.b64decode(data or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"{what} must be base64-encoded.", 400) from None
    if len(raw) > MAX_BLOCK:
        raise EmulatorError("MAX_BLOCK_SIZE_EXCEEDED", "The block of data exceeds 1 MB.", 400)
    return raw


def _protected(canonical: str, why: str) -> EmulatorError:
    # fidelity: Databricks workspace
    return EmulatorError("PERMISSION_DENIED", f"{canonical} {why}; use MLflow to manage its files.", 403)


def _check_access(segments: list[str], canonical: str, access: str) -> None:
    """Refuse changes to the MLflow-managed roots: inside them any write (mkdirs too), and on their
    ancestors ('/', '/databricks') anything but mkdirs, since moving or deleting those takes the
    roots along."""
    if access == READ:
        return
    for root in MANAGED_ROOTS:
        if segments[: len(root)] == root:
            raise _protected(canonical, "is managed by MLflow and read-only through DBFS")
        if access == WRITE and root[: len(segments)] == segments:
            raise _protected(canonical, f"contains the MLflow-managed /{'/'.join(root)}")


class Dbfs:
    def __init__(self, artifacts: Storage, dbfs_root: Storage, owners: ArtifactOwners | None = None):
        self.artifacts = artifacts
        self.root = dbfs_root
        self.owners = owners or ArtifactOwners()
        self._handles: dict[int, tuple[Path, Path]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def locate(self, path, access: str = READ, collapse_slashes: bool = True) -> tuple[Path, str]:
        """(local path, canonical '/x' form) for 'dbfs:/x' or '/x', once ``access`` is allowed.
        ``collapse_slashes=False``: '//' is refused (a run artifact path of the credentials API)."""
        if not isinstance(path, str) or not path:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing required field: path", 400)
        shown = path
        if path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        if not path.startswith("/"):
            raise bad_path(shown, "DBFS paths must be absolute (dbfs:/... or /...)")
        # fidelity: Databricks workspace (DBFS paths) -- repeated slashes name one separator, as on DBFS: MLflow's own
        # registration from an outside tracking server writes to 'tmp-external-source//<run>/...'.
        if collapse_slashes:
            path = _SLASHES.sub("/", path)
        segments = split_segments(path.rstrip("/")[1:], shown) if path.rstrip("/") else []
        canonical = "/" + "/".join(segments)
        _check_access(segments, canonical, access)
        if segments[:2] == TRACKING:
            local = self.artifacts.resolve(segments[2:], shown)
            self.owners.check_root_path(segments[2:], shown)  # fidelity: Databricks workspace
            return local, canonical
        return self.root.resolve(segments, shown), canonical

    def is_tracking_root(self, canonical: str) -> bool:
        return canonical == "/" + "/".join(TRACKING)

    def holds_experiment(self, name: str) -> bool:
        try:
            self.owners.experiment(name, name)
        except EmulatorError:
            return False
        return True

    @staticmethod
    def info(local: Path, canonical: str) -> dict:
        entry = Storage.entry(local)
        return {"path": canonical, "is_dir": entry.is_dir, "file_size": entry.size,
                "modification_time": entry.mtime_ms}

    def open_handle(self, target: Path, canonical: str) -> int:
        self.root.make_dirs(target.parent, canonical.rsplit("/", 1)[0])
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        os.close(fd)
        with self._lock:
            handle = next(self._ids)
            self._handles[handle] = (target, Path(tmp))
        return handle

    def handle(self, handle, pop: bool = False) -> tuple[Path, Path]:
        if handle is not None and (not isinstance(handle, int) or isinstance(handle, bool)):
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid value {json.dumps(handle)} for parameter "
                                "'handle': expected an integer.", 400)
        with self._lock:
            found = self._handles.pop(handle, None) if pop else self._handles.get(handle)
        if found is None:
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No open stream with handle {handle}.", 404)
        return found


def install(app: Flask, dbfs: Dbfs) -> None:
    def body() -> dict:
        data = request.get_json(force=True, silent=True)
        return data if isinstance(data, dict) else {}

    @app.route("/api/2.0/dbfs/get-status", methods=["GET"])
    def _dbfs_get_status():
        local, canonical = dbfs.locate(request.args.get("path"))
        if not local.exists():
            raise _missing(canonical)
        return jsonify(Dbfs.info(local, canonical))

    @app.route("/api/2.0/dbfs/list", methods=["GET"])
    def _dbfs_list():
        local, canonical = dbfs.locate(request.args.get("path"))
        if not local.exists():
            raise _missing(canonical)
        if local.is_file():
            return jsonify({"files": [Dbfs.info(local, canonical)]})
        base = canonical.rstrip("/")
        entries = Storage.list_dir(local)
        if dbfs.is_tracking_root(canonical):  # only experiments, not the registry's copies
            entries = [e for e in entries if dbfs.holds_experiment(e.name)]
        files = [Dbfs.info(local / e.name, f"{base}/{e.name}") for e in entries]
        return jsonify({"files": files} if files else {})

    @app.route("/api/2.0/dbfs/mkdirs", methods=["POST"])
    def _dbfs_mkdirs():
        local, canonical = dbfs.locate(body().get("path"), MKDIRS)
        if local.is_file():
            raise _exists(canonical)
        dbfs.root.make_dirs(local, canonical)
        return jsonify({})

    @app.route("/api/2.0/dbfs/read", methods=["GET"])
    def _dbfs_read():
        local, canonical = dbfs.locate(request.args.get("path"))
        if not local.is_file():
            raise _missing(canonical) if not local.exists() else bad_path(canonical, "it is a directory")
        try:
            offset = int(request.args.get("offset", 0))
            length = int(request.args.get("length", 512 * 1024))
        except ValueError:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "offset and length must be integers.", 400) from None
        if offset < 0 or length < 0:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "offset and length must not be negative.", 400)
        if offset > INT64_MAX or length > INT64_MAX:  # fidelity: Databricks workspace  (int64 fields)
            raise EmulatorError("INVALID_PARAMETER_VALUE", "offset and length must fit in a 64-bit integer.", 400)
        if length > MAX_BLOCK:
            raise EmulatorError("MAX_READ_SIZE_EXCEEDED", "Cannot read more than 1 MB at a time.", 400)
        data = b"".join(Storage.iter_file(local, offset, length))
        return jsonify({"bytes_read": len(data), "data": base64.b64encode(data).decode()})

    @app.route("/api/2.0/dbfs/put", methods=["POST"])
    def _dbfs_put():
        if request.files:  # multipart form upload: contents as a file part
            fields = request.form
            upload = next(iter(request.files.values()))
            path, overwrite, stream = fields.get("path"), fields.get("overwrite", "false"), upload.stream
            overwrite = str(overwrite).lower() == "true"
        else:
            data = body()
            path, overwrite = data.get("path"), bool(data.get("overwrite"))
            stream = None
            contents = _decode(data.get("contents"), "contents")
        local, canonical = dbfs.locate(path, WRITE)
        if local.is_dir() or (local.exists() and not overwrite):
            raise _exists(canonical)
        if stream is None:
            import io

            stream = io.BytesIO(contents)
        dbfs.root.write_stream(local, stream, canonical)
        return jsonify({})

    @app.route("/api/2.0/dbfs/create", methods=["POST"])
    def _dbfs_create():
        data = body()
        local, canonical = dbfs.locate(data.get("path"), WRITE)
        if local.is_dir() or (local.exists() and not data.get("overwrite")):
            raise _exists(canonical)
        Storage.check_not_under_file(local, canonical)
        return jsonify({"handle": dbfs.open_handle(local, canonical)})

    @app.route("/api/2.0/dbfs/add-block", methods=["POST"])
    def _dbfs_add_block():
        data = body()
        _, tmp = dbfs.handle(data.get("handle"))
        dbfs.root.append(tmp, _decode(data.get("data"), "data"))
        return jsonify({})

    @app.route("/api/2.0/dbfs/close", methods=["POST"])
    def _dbfs_close():
        target, tmp = dbfs.handle(body().get("handle"), pop=True)
        try:
            os.replace(tmp, target)
        except OSError:  # the target became a folder, or its folder went away, since create
            tmp.unlink(missing_ok=True)
            raise _exists(target.name) if target.is_dir() else _missing(target.name) from None
        return jsonify({})

    @app.route("/api/2.0/dbfs/delete", methods=["POST"])
    def _dbfs_delete():
        data = body()
        local, canonical = dbfs.locate(data.get("path"), WRITE)
        if local in (dbfs.root.resolve([]), dbfs.artifacts.resolve([])):
            raise EmulatorError("PERMISSION_DENIED", f"Cannot delete the root {canonical}.", 403)
        if not local.exists():
            return jsonify({})  # as on Databricks: deleting a missing path succeeds
        if local.is_dir() and any(local.iterdir()) and not data.get("recursive"):
            raise EmulatorError("IO_ERROR", f"Directory {canonical} is not empty; use recursive=true.", 400)
        Storage.delete(local, recursive=bool(data.get("recursive")))
        return jsonify({})

    @app.route("/api/2.0/dbfs/move", methods=["POST"])
    def _dbfs_move():
        data = body()
        src, src_name = dbfs.locate(data.get("source_path"), WRITE)
        dst, dst_name = dbfs.locate(data.get("destination_path"), WRITE)
        if not src.exists():
            raise _missing(src_name)
        if dst.exists():
            raise _exists(dst_name)
        if src == dst or src in dst.parents:
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Cannot move {src_name} into itself ({dst_name}).", 400)
        dbfs.root.make_dirs(dst.parent, dst_name.rsplit("/", 1)[0])
        os.replace(src, dst)
        return jsonify({})

    @app.before_request
    def _dbfs_raw():
        # MLflow's DbfsRestArtifactRepository: GET /dbfs/<path> downloads, POST uploads raw bytes.
        if not request.path.startswith("/dbfs/"):
            return None
        access = WRITE if request.method == "POST" else READ
        local, canonical = dbfs.locate(request.path[len("/dbfs"):], access)
        if request.method == "POST":
            if local.is_dir():
                raise _exists(canonical)
            dbfs.root.write_stream(local, request.stream, canonical)
            return jsonify({})
        if request.method in ("GET", "HEAD"):
            if not local.is_file():
                raise _missing(canonical)
            return file_response(local, request.method)
        raise EmulatorError("ENDPOINT_NOT_FOUND", f"{request.method} is not supported on {request.path}", 405)
