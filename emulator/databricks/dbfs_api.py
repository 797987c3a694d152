"""The DBFS REST API (``/api/2.0/dbfs/...``) that users' code, ``w.dbfs`` and ``dbfs:/`` artifact URIs use.

``dbfs:/databricks/mlflow-tracking/<rest>`` is the workspace's MLflow artifact root (the same
files the Files API serves); every other DBFS path lives under ``<state>/dbfs/``. Contents travel
base64-encoded, at most 1 MB per call, as on Databricks; streaming uploads use create / add-block /
close handles (kept in memory: a restart drops open handles, as an expired handle would). Also
serves ``GET|POST /dbfs/<path>``, which MLflow's ``DbfsRestArtifactRepository`` uses for ``dbfs:/``
artifact locations outside the tracking root.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import tempfile
import threading
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.databricks.files_api import file_response
from emulator.databricks.storage import Storage, bad_path, split_segments
from emulator.errors import EmulatorError

MAX_BLOCK = 1024 * 1024
TRACKING = ["databricks", "mlflow-tracking"]


def _missing(path: str) -> EmulatorError:
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {path}.", 404)


def _exists(path: str) -> EmulatorError:
    return EmulatorError(
        "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path {path}.", 400
    )


def _decode(data, what: str) -> bytes:
    try:
        raw = base64.b64decode(data or "", validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"{what} must be base64-encoded.", 400) from None
    if len(raw) > MAX_BLOCK:
        raise EmulatorError("MAX_BLOCK_SIZE_EXCEEDED", "The block of data exceeds 1 MB.", 400)
    return raw


class Dbfs:
    def __init__(self, artifacts: Storage, dbfs_root: Storage):
        self.artifacts = artifacts
        self.root = dbfs_root
        self._handles: dict[int, tuple[Path, Path]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def locate(self, path) -> tuple[Path, str]:
        """(local path, canonical '/x' form) for 'dbfs:/x' or '/x'."""
        if not isinstance(path, str) or not path:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing required field: path", 400)
        shown = path
        if path.startswith("dbfs:"):
            path = path[len("dbfs:"):]
        if not path.startswith("/"):
            raise bad_path(shown, "DBFS paths must be absolute (dbfs:/... or /...)")
        segments = split_segments(path.rstrip("/")[1:], shown) if path.rstrip("/") else []
        canonical = "/" + "/".join(segments)
        if segments[:2] == TRACKING:
            return self.artifacts.resolve(segments[2:], shown), canonical
        return self.root.resolve(segments, shown), canonical

    @staticmethod
    def info(local: Path, canonical: str) -> dict:
        entry = Storage.entry(local)
        return {"path": canonical, "is_dir": entry.is_dir, "file_size": entry.size,
                "modification_time": entry.mtime_ms}

    def open_handle(self, target: Path) -> int:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        os.close(fd)
        with self._lock:
            handle = next(self._ids)
            self._handles[handle] = (target, Path(tmp))
        return handle

    def handle(self, handle, pop: bool = False) -> tuple[Path, Path]:
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
        files = [Dbfs.info(local / e.name, f"{base}/{e.name}") for e in Storage.list_dir(local)]
        return jsonify({"files": files} if files else {})

    @app.route("/api/2.0/dbfs/mkdirs", methods=["POST"])
    def _dbfs_mkdirs():
        local, canonical = dbfs.locate(body().get("path"))
        if local.is_file():
            raise _exists(canonical)
        local.mkdir(parents=True, exist_ok=True)
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
        local, canonical = dbfs.locate(path)
        if local.is_dir() or (local.exists() and not overwrite):
            raise _exists(canonical)
        if stream is None:
            import io

            stream = io.BytesIO(contents)
        dbfs.root.write_stream(local, stream)
        return jsonify({})

    @app.route("/api/2.0/dbfs/create", methods=["POST"])
    def _dbfs_create():
        data = body()
        local, canonical = dbfs.locate(data.get("path"))
        if local.is_dir() or (local.exists() and not data.get("overwrite")):
            raise _exists(canonical)
        return jsonify({"handle": dbfs.open_handle(local)})

    @app.route("/api/2.0/dbfs/add-block", methods=["POST"])
    def _dbfs_add_block():
        data = body()
        _, tmp = dbfs.handle(data.get("handle"))
        dbfs.root.append(tmp, _decode(data.get("data"), "data"))
        return jsonify({})

    @app.route("/api/2.0/dbfs/close", methods=["POST"])
    def _dbfs_close():
        target, tmp = dbfs.handle(body().get("handle"), pop=True)
        os.replace(tmp, target)
        return jsonify({})

    @app.route("/api/2.0/dbfs/delete", methods=["POST"])
    def _dbfs_delete():
        data = body()
        local, canonical = dbfs.locate(data.get("path"))
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
        src, src_name = dbfs.locate(data.get("source_path"))
        dst, dst_name = dbfs.locate(data.get("destination_path"))
        if not src.exists():
            raise _missing(src_name)
        if dst.exists():
            raise _exists(dst_name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return jsonify({})

    @app.before_request
    def _dbfs_raw():
        # MLflow's DbfsRestArtifactRepository: GET /dbfs/<path> downloads, POST uploads raw bytes.
        if not request.path.startswith("/dbfs/"):
            return None
        local, canonical = dbfs.locate(request.path[len("/dbfs"):])
        if request.method == "POST":
            if local.is_dir():
                raise _exists(canonical)
            dbfs.root.write_stream(local, request.stream)
            return jsonify({})
        if request.method in ("GET", "HEAD"):
            if not local.is_file():
                raise _missing(canonical)
            return file_response(local, request.method)
        raise EmulatorError("ENDPOINT_NOT_FOUND", f"{request.method} is not supported on {request.path}", 405)
