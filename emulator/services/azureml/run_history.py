"""Azure ML's run-history artifact API, as the azureml-mlflow plugin uses it for run artifacts.

Under ``/history/v1.0/<scope>/experiments/<exp>/runs/<run>/artifacts`` (``<exp>``: what the
plugin read from ``azureml://experiments/<exp>/runs/<run>/artifacts``: the experiment's name (its
last segment), or its GUID; ``<run>`` a run id or an MLflow 3 logged-model id, see artifact_views.py):

* ``POST .../batch/metadata`` ``{"paths": [{"path"}]}`` -> per path an artifact and a write SAS URL
  (``artifactContentInformation``), or a per-path error (``errors``) for a path that escapes;
* ``GET .../artifacts`` (and ``.../artifacts/path?path=<prefix>``) -> ``{"value", "nextLink"}``,
  paged by ``continuationToken``;
* ``GET .../artifacts/contentinfo?path=`` (and ``.../metadata?path=``) -> read SAS URL, 404 if the
  file does not exist (404 is part of normal ``runs:/`` resolution).

Errors are Azure's ``{"error": {"code", "message"}}``, never 5xx (azure-core retries those).
Files live where MLflow's proxied artifact API keeps them, so vanilla clients see the same bytes.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlencode, urlparse

from flask import Flask, jsonify, request
from mlflow.exceptions import MlflowException

from emulator.services.azureml import artifact_views, experiment_guids, hosts, run_guids
from emulator.services.azureml.azure_errors import arm_error
from emulator.services.azureml.scope import scope_problem
from emulator.services.blob import sas as blob_sas
from emulator.services.blob.service import CONTAINER
from emulator.settings import ServerConfig

PREFIX = ("/history/v1.0/subscriptions/<sub>/resourceGroups/<rg>/providers/"
          "Microsoft.MachineLearningServices/workspaces/<ws>/<kind>/<exp>/runs/<run_id>/artifacts")
PAGE_SIZE = 100
MAX_BATCH = 500


class HistoryError(Exception):
    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def _store():
    from mlflow.server import handlers

    return handlers._get_tracking_store()


def owner_location(run_id: str) -> tuple[str, str]:
    """(experiment id, artifact URI) of a run or, for ``m-...`` ids, an MLflow 3 logged model."""
    try:
        if run_id.startswith("m-"):
            model = _store().get_logged_model(run_id)
            return model.experiment_id, model.artifact_location
        # fidelity: Azure ML experiment ids -- run ids: the plugin's URIs name the run by its GUID
        run = _store().get_run(run_guids.internal(run_id))
        return run.info.experiment_id, run.info.artifact_uri
    except MlflowException:
        raise HistoryError("NotFound", f"Run {run_id} was not found.", 404) from None


def _experiment_matches(experiment_id: str, given: str, by_id: bool, workspace_key: str) -> bool:
    # fidelity: Azure ML experiment ids -- the GUID, never the store's integer
    if given.lower() == experiment_guids.from_store(workspace_key, _store()).external(experiment_id):
        return True
    if by_id:
        return False
    try:
        name = _store().get_experiment(experiment_id).name
    except MlflowException:
        return False
    # The plugin names ADB-style experiments by their last segment (get_aml_experiment_name), as
    # artifact_views writes it (quoted) or decoded.
    return given in (name, name.rstrip("/").rsplit("/", 1)[-1], artifact_views.uri_name(name),
                     unquote(artifact_views.uri_name(name)))


def relative_root(artifact_uri: str) -> str:
    """``mlflow-artifacts:/1/<run>/artifacts`` -> ``1/<run>/artifacts`` (under the artifact root)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme != "mlflow-artifacts":
        raise HistoryError("ValidationError", f"Artifacts at {artifact_uri!r} are not served by run history.", 400)
    return parsed.path.strip("/")


def clean_path(path) -> str | None:
    """The artifact path as a relative POSIX path, or None if it is empty or escapes the run."""
    if not isinstance(path, str):
        return None
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or not path or any(p in ("", ".", "..") or "\0" in p for p in parts):
        return None
    return "/".join(parts)


def files_under(folder: Path, prefix: str = "") -> list[str]:
    """The files below ``folder`` (relative POSIX paths, sorted) that start with ``prefix``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(folder).as_posix()
        for name in sorted(filenames):
            if name.startswith(".blob-"):  # an upload in progress
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel.startswith(prefix):
                found.append(rel)
    return found


def existing_artifact(root: Path, base: str, where: str = "") -> tuple[str, str]:
    """(path, blob name) of the ``?path=`` artifact under ``base``: 400 for a bad path, 404 (the
    message ending with ``where``) when there is no such file."""
    path = clean_path(request.args.get("path"))
    if path is None:
        raise HistoryError("ValidationError", "The path query parameter is missing or not a valid "
                           "relative artifact path.", 400)
    try:
        found = (root / base / path).is_file()
    except OSError:  # e.g. a name too long for the file system: it can't exist
        found = False
    if not found:
        raise HistoryError("NotFound", f"Artifact {path} was not found{where}.", 404)
    return path, f"{base}/{path}"


def batch_answer(base: str, owner_id: str, inside: str, artifact, content) -> dict:
    """POST .../batch/metadata (a run's artifacts, a LocalUpload container): an artifact and a write
    SAS per valid path of the body, an error per invalid one."""
    body = request.get_json(silent=True)
    paths = body.get("paths") if isinstance(body, dict) else None
    if not isinstance(paths, list) or not paths:
        raise HistoryError("ValidationError", 'The body must be {"paths": [{"path": "..."}, ...]}.', 400)
    if len(paths) > MAX_BATCH:
        raise HistoryError("ValidationError", f"At most {MAX_BATCH} paths per batch.", 400)
    answer = {"artifacts": {}, "artifactContentInformation": {}, "errors": {}}
    for item in paths:
        given = item.get("path") if isinstance(item, dict) else None
        path = clean_path(given)
        if path is None:
            # fidelity: Azure ML real clients -- per-path errors in the batch answer
            answer["errors"][str(given)] = {"error": {
                "code": "ValidationError",
                "message": f"The artifact path {given!r} is not a valid relative path inside the {inside}."}}
            continue
        answer["artifacts"][path] = artifact(owner_id, path)
        answer["artifactContentInformation"][path] = content(owner_id, path, f"{base}/{path}", blob_sas.WRITE)
    return answer


def install(app: Flask, config: ServerConfig) -> None:
    root = (Path(config.state_dir) / "artifacts").resolve()
    account = hosts.storage_account(config)

    @app.errorhandler(HistoryError)
    def _history_error(exc: HistoryError):
        return arm_error(exc.code, exc.message, exc.status)

    def owner(sub, rg, ws, kind, exp, run_id) -> str:
        problem = scope_problem(config, sub, rg, ws)
        if problem:
            raise HistoryError(problem[0], problem[1], 404)
        if kind not in ("experiments", "experimentids"):
            raise HistoryError("NotFound", f"No API found for '{request.method} {request.path}'", 404)
        experiment_id, artifact_uri = owner_location(run_id)
        if not _experiment_matches(experiment_id, exp, kind == "experimentids", config.scope):
            raise HistoryError("NotFound", f"Run {run_id} was not found in experiment {exp}.", 404)
        return relative_root(artifact_uri)

    def artifact(run_id: str, path: str, blob: str | None = None) -> dict:
        info = {"artifactId": f"ExperimentRun/dcid.{run_id}/{path}", "origin": "ExperimentRun",
                "container": f"dcid.{run_id}", "path": path}
        if blob is not None:
            stat = (root / blob).stat()
            info["etag"] = f'"{stat.st_mtime_ns:x}"'
            info["createdTime"] = datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat()
        return info

    def content(run_id: str, path: str, blob: str, permissions: str) -> dict:
        query = blob_sas.sign(config.token, account, CONTAINER, blob, permissions)
        url = blob_sas.blob_url(hosts.blob_base_url(config, request), CONTAINER, blob, query)
        return {"contentUri": url, "origin": "ExperimentRun", "container": f"dcid.{run_id}", "path": path}

    def page(run_id: str, base: str, prefix: str = ""):
        try:
            offset = int(request.args.get("continuationToken") or 0)
        except ValueError:
            raise HistoryError("ValidationError", "continuationToken is not valid.", 400) from None
        paths = files_under(root / base, prefix)
        chunk = paths[offset: offset + PAGE_SIZE]
        more = offset + PAGE_SIZE < len(paths)
        args = {k: v for k, v in request.args.items() if k != "continuationToken"}
        next_link = None
        if more:
            args["continuationToken"] = str(offset + PAGE_SIZE)
            next_link = f"{request.base_url}?{urlencode(args)}"
        return jsonify({"value": [artifact(run_id, p, f"{base}/{p}") for p in chunk],
                        "continuationToken": args.get("continuationToken") if more else None,
                        "nextLink": next_link})

    @app.route(PREFIX, methods=["GET"])
    def _list(sub, rg, ws, kind, exp, run_id):
        return page(run_id, owner(sub, rg, ws, kind, exp, run_id))

    @app.route(PREFIX + "/path", methods=["GET"])
    def _list_in_path(sub, rg, ws, kind, exp, run_id):
        base = owner(sub, rg, ws, kind, exp, run_id)
        prefix = request.args.get("path", "")
        return page(run_id, base, prefix.strip("/") + "/" if prefix.strip("/") else "")

    def existing(base: str) -> tuple[str, str]:
        # fidelity: Azure ML real clients -- contentinfo 404 is part of runs:/ resolution
        return existing_artifact(root, base)

    @app.route(PREFIX + "/contentinfo", methods=["GET"])
    def _content_info(sub, rg, ws, kind, exp, run_id):
        path, blob = existing(owner(sub, rg, ws, kind, exp, run_id))
        return jsonify(content(run_id, path, blob, blob_sas.READ))

    @app.route(PREFIX + "/metadata", methods=["GET"])
    def _metadata(sub, rg, ws, kind, exp, run_id):
        path, blob = existing(owner(sub, rg, ws, kind, exp, run_id))
        return jsonify(artifact(run_id, path, blob))

    @app.route(PREFIX + "/batch/metadata", methods=["POST"])
    def _batch_create(sub, rg, ws, kind, exp, run_id):
        base = owner(sub, rg, ws, kind, exp, run_id)
        return jsonify(batch_answer(base, run_id, "run", artifact, content))
