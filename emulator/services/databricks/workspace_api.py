"""The Workspace API folder calls the databricks-sdk makes (``w.workspace.mkdirs/get_status/list/delete``).

Folders come from ``WorkspaceTree``; experiments show up as ``MLFLOW_EXPERIMENT`` objects at their
names, as in a real workspace. Deleting a folder recursively deletes the experiments in it.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.services.databricks.experiment_rules import (
    experiment_named,
    experiments_in,
)
from emulator.services.databricks.workspace_tree import WorkspaceTree, normalize


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


def _path_arg(source: dict) -> str:
    path = source.get("path")
    if not path:
        raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing required field: path", 400)
    return normalize(path)


def install(app: Flask, tree: WorkspaceTree) -> None:
    def status_of(path: str) -> dict:
        folder_id = tree.folder_id(path)
        if folder_id is not None:
            return _folder_info(path, folder_id)
        exp = experiment_named(path)
        if exp is not None:
            return _experiment_info(exp)
        raise _missing(path)

    @app.route("/api/2.0/workspace/mkdirs", methods=["POST"])
    def _workspace_mkdirs():
        path = _path_arg(request.get_json(force=True, silent=True) or {})
        tree.mkdirs(path, is_blocked=lambda p: experiment_named(p) is not None)
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
        objects = [_folder_info(p, i) for p, i in tree.child_folders(path)]
        objects += [_experiment_info(e) for e in experiments_in(path)]
        return jsonify({"objects": sorted(objects, key=lambda o: o["path"])} if objects else {})

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
        if path in tree.builtin:
            raise EmulatorError("PERMISSION_DENIED", f"Folder ({path}) cannot be deleted.", 403)
        below = _experiments_below(path)
        if (below or tree.child_folders(path)) and not body.get("recursive"):
            raise EmulatorError("DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty", 400)
        for exp in below:
            store.delete_experiment(exp.experiment_id)
        tree.delete_folders(path)
        return jsonify({})

    def _experiments_below(path: str) -> list:
        found, stack = [], [path]
        while stack:
            folder = stack.pop()
            found += experiments_in(folder)
            stack += [p for p, _ in tree.child_folders(folder)]
        return found
