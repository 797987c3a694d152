"""The Workspace API calls the databricks-sdk makes (``w.workspace.mkdirs/get_status/list/delete``,
``import_``/``upload`` and ``export``/``download``).

Folders come from ``WorkspaceTree``; notebooks and files from ``WorkspaceObjects``; experiments show
up as ``MLFLOW_EXPERIMENT`` objects at their names, as in a real workspace. Deleting a folder
recursively deletes the experiments, notebooks and files in it.
"""

from __future__ import annotations

import base64
import binascii
import json

from flask import Flask, Response, jsonify, request

from emulator.errors import EmulatorError
from emulator.services.databricks.experiment_rules import (
    experiment_named,
    experiments_in,
)
from emulator.services.databricks.workspace_objects import (
    SOURCE_HEADER,
    WorkspaceObjects,
    jupyter_of_source,
    source_of_jupyter,
)
from emulator.services.databricks.workspace_tree import WorkspaceTree, normalize, parent_of

MAX_IMPORT_BYTES = 10 * 1024 * 1024  # fidelity: Workspace notebooks — import is limited to 10 MB


def _missing(path: str) -> EmulatorError:
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.", 404)


def _folder_info(path: str, object_id: int) -> dict:
    return {"object_type": "DIRECTORY", "path": path, "object_id": object_id, "resource_id": str(object_id)}


def _experiment_info(exp) -> dict:
    return {
        "object_type": "MLFLOW_EXPERIMENT",
        "path": exp.name,
        "object_id": int(exp.experiment_id),
        "resource_id": str(exp.experiment_id),
        "created_at": exp.creation_time,
        "modified_at": exp.last_update_time,
    }


def _object_info(obj: dict) -> dict:
    info = {"object_type": obj["object_type"], "path": obj["path"], "object_id": obj["object_id"],
            "resource_id": str(obj["object_id"]), "created_at": obj["created_ms"], "modified_at": obj["modified_ms"]}
    if obj["object_type"] == "NOTEBOOK":
        info["language"] = "PYTHON"
    else:
        info["size"] = len(obj["content"])
    return info


def _path_arg(source: dict) -> str:
    path = source.get("path")
    if not path:
        raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing required field: path", 400)
    return normalize(path)


def install(app: Flask, tree: WorkspaceTree, objects: WorkspaceObjects) -> None:
    def status_of(path: str) -> dict:
        folder_id = tree.folder_id(path)
        if folder_id is not None:
            return _folder_info(path, folder_id)
        obj = objects.get(path)
        if obj is not None:
            return _object_info(obj)
        exp = experiment_named(path)
        if exp is not None:
            return _experiment_info(exp)
        raise _missing(path)

    @app.route("/api/2.0/workspace/mkdirs", methods=["POST"])
    def _workspace_mkdirs():
        path = _path_arg(request.get_json(force=True, silent=True) or {})
        tree.mkdirs(path, is_blocked=lambda p: experiment_named(p) is not None or objects.get(p) is not None)
        return jsonify({})

    @app.route("/api/2.0/workspace/get-status", methods=["GET"])
    def _workspace_get_status():
        return jsonify(status_of(_path_arg(request.args)))

    @app.route("/api/2.0/workspace/list", methods=["GET"])
    def _workspace_list():
        path = _path_arg(request.args)
        info = status_of(path)
        if info["object_type"] != "DIRECTORY":
            return jsonify({"objects": [info]})
        found = [_folder_info(p, i) for p, i in tree.child_folders(path)]
        found += [_experiment_info(e) for e in experiments_in(path)]
        found += [_object_info(o) for o in objects.children(path)]
        return jsonify({"objects": sorted(found, key=lambda o: o["path"])} if found else {})

    @app.route("/api/2.0/workspace/delete", methods=["POST"])
    def _workspace_delete():
        from mlflow.server.handlers import _get_tracking_store

        body = request.get_json(force=True, silent=True) or {}
        path = _path_arg(body)
        info = status_of(path)
        store = _get_tracking_store()
        if info["object_type"] == "MLFLOW_EXPERIMENT":
            store.delete_experiment(info["resource_id"])
            return jsonify({})
        if info["object_type"] != "DIRECTORY":
            objects.delete(path)
            return jsonify({})
        if path in tree.builtin:
            raise EmulatorError("PERMISSION_DENIED", f"Folder ({path}) cannot be deleted.", 403)
        below = _experiments_below(path)
        if (below or tree.child_folders(path) or objects.children(path)) and not body.get("recursive"):
            raise EmulatorError("DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty", 400)
        for exp in below:
            store.delete_experiment(exp.experiment_id)
        objects.delete(path)
        tree.delete_folders(path)
        return jsonify({})

    def _experiments_below(path: str) -> list:
        found, stack = [], [path]
        while stack:
            folder = stack.pop()
            found += experiments_in(folder)
            stack += [p for p, _ in tree.child_folders(folder)]
        return found

    @app.route("/api/2.0/workspace/import", methods=["POST"])
    def _workspace_import():
        # The SDK's upload() sends multipart form data (a "content" file part); import_() sends JSON.
        if request.files or request.form:
            body = dict(request.form.items())
            part = request.files.get("content")
            raw = part.read(MAX_IMPORT_BYTES + 1) if part is not None else b""
        else:
            body = request.get_json(force=True, silent=True) or {}
            raw = _decoded(body.get("content"))
        if len(raw) > MAX_IMPORT_BYTES:
            raise EmulatorError("MAX_NOTEBOOK_SIZE_EXCEEDED", "File size imported is too large.", 400)
        path = _path_arg(body)
        overwrite = body.get("overwrite") in (True, "true", "True")
        object_type, kind, content, path = _imported(path, raw, str(body.get("format") or "SOURCE").upper(),
                                                     body.get("language"))
        if tree.is_folder(path) or experiment_named(path) is not None:
            # fidelity: Workspace notebooks — not even overwrite replaces a folder
            raise EmulatorError("RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists.", 400)
        if objects.get(path) is not None and not overwrite:
            # fidelity: Workspace notebooks
            raise EmulatorError("RESOURCE_ALREADY_EXISTS", f"Path ({path}) already exists.", 400)
        parent = parent_of(path)
        if not tree.is_folder(parent):
            # fidelity: Workspace notebooks — import does not create missing parents
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist.", 404)
        objects.put(path, object_type, kind, content)
        return jsonify({})

    @app.route("/api/2.0/workspace/export", methods=["GET"])
    def _workspace_export():
        path = _path_arg(request.args)
        info = status_of(path)
        if info["object_type"] == "DIRECTORY":
            # fidelity: Workspace notebooks — folders export only as DBC/ZIP archives, not emulated
            raise EmulatorError("INVALID_PARAMETER_VALUE",
                                f"Exporting a folder ({path}) is not supported by the Databricks emulator.", 400)
        obj = objects.get(path)
        if obj is None:
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Path ({path}) is not a notebook or a file.", 400)
        fmt = str(request.args.get("format") or "SOURCE").upper()
        content, file_type = _exported(obj, fmt)
        if request.args.get("direct_download") in ("true", "True"):
            return Response(content, mimetype="application/octet-stream")
        return jsonify({"content": base64.b64encode(content).decode(), "file_type": file_type})


def _decoded(content) -> bytes:
    if content is None:
        return b""
    if not isinstance(content, str):
        raise EmulatorError("INVALID_PARAMETER_VALUE", "content must be a base64-encoded string.", 400)
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise EmulatorError("INVALID_PARAMETER_VALUE", "content must be base64-encoded.", 400) from None


def _imported(path: str, raw: bytes, fmt: str, language) -> tuple[str, str, bytes, str]:
    """(object type, stored kind, content, final path) of an import; 400 for what is not emulated."""
    if fmt == "AUTO":
        # fidelity: Workspace notebooks — AUTO: a notebook if the header/extension says so (the
        # extension is dropped), else a workspace file at the path as given
        if path.endswith(".ipynb"):
            fmt, path = "JUPYTER", path[: -len(".ipynb")]
        elif raw.startswith(SOURCE_HEADER.encode()):
            fmt, language = "SOURCE", "PYTHON"
            path = path.removesuffix(".py")
        else:
            return "FILE", "file", raw, path
    if fmt == "JUPYTER":
        try:
            notebook = json.loads(raw)
        except ValueError:
            notebook = None
        if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Unable to parse the content as a Jupyter notebook.", 400)
        return "NOTEBOOK", "ipynb", raw, path
    if fmt == "SOURCE":
        if language is None:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "The language field is required for SOURCE format.", 400)
        if str(language).upper() != "PYTHON":
            raise EmulatorError("INVALID_PARAMETER_VALUE",
                                f"Notebooks in {language} are not supported by the Databricks emulator (PYTHON only).",
                                400)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "A SOURCE notebook must be UTF-8 text.", 400) from None
        if not raw.startswith(SOURCE_HEADER.encode()):
            raw = (SOURCE_HEADER + "\n" + raw.decode("utf-8")).encode()
        return "NOTEBOOK", "py", raw, path
    if fmt in ("HTML", "DBC", "R_MARKDOWN", "RAW", "ZIP"):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Import format {fmt} is not supported by the Databricks "
                                                       f"emulator (SOURCE, JUPYTER and AUTO are).", 400)
    raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid format: {fmt}", 400)


def _exported(obj: dict, fmt: str) -> tuple[bytes, str]:
    if obj["object_type"] == "FILE":
        return obj["content"], "file"
    if fmt == "SOURCE":
        content = source_of_jupyter(obj["content"]) if obj["kind"] == "ipynb" else obj["content"]
        return content, "py"
    if fmt == "JUPYTER":
        content = obj["content"] if obj["kind"] == "ipynb" else jupyter_of_source(obj["content"])
        return content, "ipynb"
    if fmt in ("HTML", "DBC", "R_MARKDOWN", "RAW", "AUTO"):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Export format {fmt} is not supported by the Databricks "
                                                       f"emulator (SOURCE and JUPYTER are).", 400)
    raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid format: {fmt}", 400)
