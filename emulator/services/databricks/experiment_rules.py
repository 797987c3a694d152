"""Databricks' rules for experiments and runs, applied to requests before MLflow's own handlers.

* Experiment names are absolute workspace paths whose parent folder exists (Workspace API folders or
  the built-in homes); a leading ``/Workspace`` is stripped; renames obey the same rules.
* New experiments get the tags a workspace adds (owner, source name, experiment type); a given
  artifact location must be a safe ``dbfs:/`` path (``emulator.stores.artifact_locations``).
* Runs are owned by the token's user, not by the OS user the client reports.

The hooks rewrite the request JSON (or query) that MLflow's handlers then read, so MLflow's store
and validation stay in charge of everything else.
"""

from __future__ import annotations

import hashlib

from flask import Flask, request
from werkzeug.datastructures import ImmutableMultiDict

from emulator.errors import EmulatorError
from emulator.services.databricks.workspace_tree import (
    WorkspaceTree,
    normalize,
    parent_of,
)
from emulator.settings import ServerConfig
from emulator.stores import artifact_locations

_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/")


def _mlflow_route(path: str) -> str | None:
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


def user_id(user: str) -> str:
    """A stable numeric id for the user, like a Databricks user id."""
    return str(int(hashlib.sha256(user.encode()).hexdigest()[:12], 16))


def invalid_name(name) -> EmulatorError:
    return EmulatorError(
        "INVALID_PARAMETER_VALUE",
        f"Got an invalid experiment name '{name}'. An experiment name must be an absolute path within "
        "the Databricks workspace, e.g. '/Users/<some-username>/my-experiment'.",
        400,
    )


def experiment_named(name: str):
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store().get_experiment_by_name(name)


def experiments_in(folder: str) -> list:
    """Active experiments directly inside ``folder``."""
    from mlflow.entities import ViewType
    from mlflow.server.handlers import _get_tracking_store

    store = _get_tracking_store()
    prefix = "/" if folder == "/" else folder + "/"
    escaped = prefix.replace("'", "\\'")
    found, token = [], None
    while True:
        page = store.search_experiments(
            view_type=ViewType.ACTIVE_ONLY, max_results=1000,
            filter_string=f"name LIKE '{escaped}%'", page_token=token,
        )
        found += [e for e in page if e.name.startswith(prefix) and "/" not in e.name[len(prefix):]]
        token = page.token
        if not token:
            return found


def check_experiment_path(tree: WorkspaceTree, name) -> str:
    """The normalized name, or the error Databricks gives for it."""
    if not isinstance(name, str) or not name.startswith("/"):
        raise invalid_name(name)
    try:
        name = normalize(name, "experiment path")
    except EmulatorError:
        raise invalid_name(name) from None
    if name == "/":
        raise invalid_name(name)
    parent = parent_of(name)
    if not tree.is_folder(parent):
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Parent directory {parent} does not exist.", 404)
    if tree.is_folder(name):
        raise EmulatorError(
            "RESOURCE_ALREADY_EXISTS", f"Node named '{name.rsplit('/', 1)[1]}' already exists", 400
        )
    return name


def _json_body() -> dict:
    body = request.get_json(force=True, silent=True)
    return dict(body) if isinstance(body, dict) else {}


def _tags(body: dict) -> list[dict]:
    tags = body.get("tags")
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
        raise EmulatorError("INVALID_PARAMETER_VALUE", "'tags' must be a list of {key, value} objects.", 400)
    return tags


def _replace_json(body: dict) -> None:
    # MLflow's handlers read request.get_json(force=True, silent=True); Werkzeug caches it here.
    request._cached_json = (body, body)


def install(app: Flask, config: ServerConfig, tree: WorkspaceTree) -> None:
    owner_tags = {
        "mlflow.ownerId": user_id(config.user),
        "mlflow.ownerEmail": config.user,
        "mlflow.experimentType": "MLFLOW_EXPERIMENT",
    }

    @app.before_request
    def _databricks_rules():
        route = _mlflow_route(request.path)
        if route is None:
            return None
        if route == "experiments/create" and request.method == "POST":
            body = _json_body()
            if not isinstance(body.get("name"), str) or not body["name"]:
                # fidelity: Databricks error text parity -- MLflow's own missing/type message
                return None
            # fidelity: Artifact locations
            artifact_locations.check(body.get("artifact_location"), artifact_locations.DATABRICKS_SCHEMES)
            name = check_experiment_path(tree, body.get("name"))
            tags = [t for t in _tags(body) if t.get("key") not in owner_tags]
            tags += [{"key": k, "value": v} for k, v in owner_tags.items()]
            tags = [t for t in tags if t.get("key") != "mlflow.experiment.sourceName"]
            tags.append({"key": "mlflow.experiment.sourceName", "value": name})
            body.update(name=name, tags=tags)
            _replace_json(body)
        elif route == "experiments/update" and request.method == "POST":
            body = _json_body()
            if isinstance(body.get("new_name"), str) and body["new_name"]:
                body["new_name"] = check_experiment_path(tree, body["new_name"])
                _replace_json(body)
        elif route == "experiments/get-by-name":
            name = request.args.get("experiment_name")
            if name and (name == "/Workspace" or name.startswith("/Workspace/")):
                args = request.args.to_dict(flat=False)
                args["experiment_name"] = [name[len("/Workspace"):] or "/"]
                request.args = ImmutableMultiDict(args)
        elif route == "runs/create-promptlab-run" and request.method == "POST":
            # fidelity: Databricks error text parity -- a prompt-lab run is owned by the token's user
            body = _json_body()
            body["user_id"] = config.user
            tags = [t for t in _tags(body) if t.get("key") != "mlflow.user"]
            if tags:
                # MLflow's handler passes these JSON objects on as RunTags and fails with a 500.
                raise EmulatorError("INVALID_PARAMETER_VALUE", "create-promptlab-run takes no 'tags'; set "
                                    "tags on the run afterwards with runs/set-tag.", 400)
            body["tags"] = []
            _replace_json(body)
        elif route == "runs/create" and request.method == "POST":
            body = _json_body()
            body["user_id"] = config.user
            tags = [t for t in _tags(body) if t.get("key") != "mlflow.user"]
            body["tags"] = tags + [{"key": "mlflow.user", "value": config.user}]
            _replace_json(body)
        return None
