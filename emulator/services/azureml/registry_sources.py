"""Registering in Azure ML a model that was tracked in the linked Databricks workspace.

With tracking URI ``databricks`` and the Azure ML registry, the MLflow client sends
``model-versions/create`` with ``source=models:/m-<databricks id>``, ``model_id`` and the
Databricks ``run_id`` (older flows: ``runs:/<databricks run>/model`` or a
``dbfs:/databricks/mlflow-tracking/...`` location). None of those exist in Azure ML; MLflow's
handler would fail deep in the SQL store with a bare MlflowException, i.e. a 500 that the client
retries for minutes. Here such sources are resolved to the mirrored copy before MLflow's own
handler runs: runs are found by their ``emulator.source_run_id`` tag and logged models by
``emulator.source_model_id`` (both set by the mirror's relay), so it works after restarts and
needs nothing from the Databricks side.

Mirror lag: a model registered right after ``log_model`` may not be mirrored yet. If this
workspace has received mirrored runs (it is a link target), the create waits up to
``EMULATOR_AZUREML_MIRROR_WAIT_S`` seconds (default 30) for the copy to arrive complete (logged
model READY: the relay delivers files before the finalize); if it never has, 5 s at most (the
first run after linking may still be on its way). Then a 404 ``RESOURCE_DOES_NOT_EXIST`` naming
the source and why (never a 5xx, which the client would retry for minutes).

A ``runs:/`` source whose run neither this workspace nor the mirror holds, sent without the
Databricks ``run_link`` the client adds for Databricks-tracked runs, is an unknown run: 404
``Run with id=<id> not found`` at once, as Azure ML answers for runs it does not hold; so is
one of this workspace's ``mlflow-artifacts:/`` locations sent with such a ``run_id`` (MLflow's
own handler would say "Invalid model version source" there).
"""

from __future__ import annotations

import os
import re
import time
import urllib.parse
from dataclasses import dataclass

from emulator.errors import EmulatorError

SOURCE_RUN_TAG = "emulator.source_run_id"
SOURCE_WORKSPACE_TAG = "emulator.source_workspace"
SOURCE_MODEL_TAG = "emulator.source_model_id"
WAIT_ENV = "EMULATOR_AZUREML_MIRROR_WAIT_S"
DEFAULT_WAIT_S = 30.0
POLL_S = 0.2
UNLINKED_GRACE_S = 5.0

_MODEL_ID_URI = re.compile(r"^models:/(?P<model>m-[0-9a-zA-Z]+)/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)(?:/(?P<path>.*))?$")
_DBFS_TRACKING = re.compile(
    r"^dbfs:/databricks/mlflow-tracking/(?P<exp>[^/]+)/"
    r"(?:logged_models/(?P<model>m-[0-9a-zA-Z]+)|(?P<run>[0-9a-f]{32}))/artifacts(?:/(?P<path>.*))?$"
)


class NotMirroredYet(Exception):
    """The source is a Databricks object whose mirrored copy is not (completely) here."""


@dataclass
class Resolved:
    source: str
    run_id: str | None
    model_id: str | None


def wait_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, DEFAULT_WAIT_S)))
    except ValueError:
        return DEFAULT_WAIT_S


class SourceResolver:
    def __init__(self, tracking_store):
        self._store = tracking_store  # callable -> this workspace's MLflow tracking store

    @property
    def store(self):
        return self._store()

    # -- lookups -------------------------------------------------------------------------------
    def _local_run(self, run_id: str):
        try:
            return self.store.get_run(run_id)
        except Exception:
            return None

    def _local_model(self, model_id: str):
        try:
            return self.store.get_logged_model(model_id)
        except Exception:
            return None

    def mirrored_run(self, source_run_id: str):
        from mlflow.store.tracking.dbmodels.models import SqlTag

        with self.store.ManagedSessionMaker() as session:
            row = (session.query(SqlTag.run_uuid)
                   .filter(SqlTag.key == SOURCE_RUN_TAG, SqlTag.value == source_run_id).first())
        return self._local_run(row[0]) if row else None

    def mirrored_model(self, source_model_id: str):
        from mlflow.store.tracking.dbmodels.models import SqlLoggedModelTag

        with self.store.ManagedSessionMaker() as session:
            row = (session.query(SqlLoggedModelTag.model_id)
                   .filter(SqlLoggedModelTag.tag_key == SOURCE_MODEL_TAG,
                           SqlLoggedModelTag.tag_value == source_model_id).first())
        return self._local_model(row[0]) if row else None

    def is_link_target(self) -> bool:
        """Has a Databricks workspace ever mirrored a run here (i.e. is this workspace linked)?"""
        from mlflow.store.tracking.dbmodels.models import SqlTag

        with self.store.ManagedSessionMaker() as session:
            return session.query(SqlTag.run_uuid).filter(SqlTag.key == SOURCE_WORKSPACE_TAG).first() is not None

    # -- resolution ----------------------------------------------------------------------------
    def foreign(self, source: str, run_id: str | None, model_id: str | None) -> bool:
        """Does the request name something that is not in this workspace (a Databricks object)?"""
        if source.startswith("dbfs:"):
            return True
        if model_id and self._local_model(model_id) is None:
            return True
        m = _MODEL_ID_URI.match(source)
        if m and self._local_model(m["model"]) is None:
            return True
        r = _RUNS_URI.match(source)
        return bool(r and self._local_run(r["run"]) is None)

    def resolve_once(self, source: str, run_id: str | None, model_id: str | None) -> Resolved:
        """The request rewritten to the mirrored copy; NotMirroredYet if it is not here (yet)."""
        dbfs = _DBFS_TRACKING.match(source)
        if source.startswith("dbfs:") and dbfs is None:
            raise EmulatorError(
                "INVALID_PARAMETER_VALUE",
                f"Invalid model version source '{source}': only MLflow tracking locations "
                "(dbfs:/databricks/mlflow-tracking/<experiment>/<run>/artifacts/... or "
                ".../logged_models/<model id>/artifacts) of the linked Databricks workspace are "
                "mirrored to Azure ML; other DBFS files are not.", 400)
        m = _MODEL_ID_URI.match(source)
        source_model = (m and m["model"]) or (dbfs and dbfs["model"]) or model_id
        if source_model:
            return self._from_model(source, source_model, run_id, (dbfs and dbfs["path"]) or "")
        r = _RUNS_URI.match(source)
        source_run = (r and r["run"]) or (dbfs and dbfs["run"])
        path = ((r and r["path"]) or (dbfs and dbfs["path"]) or "").strip("/")
        return self._from_run(source, source_run, path)

    def _from_model(self, source: str, source_model: str, run_id: str | None, path: str) -> Resolved:
        model = self._local_model(source_model) or self.mirrored_model(source_model)
        if model is None:
            raise NotMirroredYet(f"logged model {source_model} has no mirrored copy in this workspace")
        if str(model.status) != "READY":
            raise NotMirroredYet(f"the mirrored copy of logged model {source_model} ({model.model_id}) "
                                 f"is still {model.status}: its files are being mirrored")
        new_source = f"models:/{model.model_id}"
        if path:
            new_source = model.artifact_location.rstrip("/") + "/" + path
        mapped_run = model.source_run_id
        if run_id and not mapped_run:
            run = self._local_run(run_id) or self.mirrored_run(run_id)
            mapped_run = run.info.run_id if run else None
        return Resolved(new_source, mapped_run, model.model_id)

    def _from_run(self, source: str, source_run: str, path: str) -> Resolved:
        run = self._local_run(source_run) or self.mirrored_run(source_run)
        if run is None:
            raise NotMirroredYet(f"run {source_run} has no mirrored copy in this workspace")
        # A directory with an MLmodel among the run's artifacts (MLflow 2 layout) ...
        try:
            names = {f.path.rsplit("/", 1)[-1] for f in self._run_artifacts(run, path)}
        except Exception:
            names = set()
        if "MLmodel" in names:
            return Resolved(run.info.artifact_uri.rstrip("/") + ("/" + path if path else ""), run.info.run_id, None)
        # ... else an MLflow 3 logged model of that run named like the path.
        models = self.store.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{path}'",
        )
        ready = [x for x in models if str(x.status) == "READY"]
        if ready:
            return Resolved(f"models:/{ready[0].model_id}", run.info.run_id, ready[0].model_id)
        raise NotMirroredYet(f"the mirrored run {run.info.run_id} of {source_run} has no model at '{path}' yet")

    @staticmethod
    def _run_artifacts(run, path: str):
        from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts
        from mlflow.store.artifact.artifact_repository_registry import (
            get_artifact_repository,
        )

        uri = run.info.artifact_uri
        if uri.startswith("mlflow-artifacts:"):  # served from this workspace's artifact root
            repo = _get_artifact_repo_mlflow_artifacts()
            rel = urllib.parse.urlparse(uri).path.lstrip("/")
            return repo.list_artifacts("/".join(p for p in (rel, path) if p))
        return get_artifact_repository(uri).list_artifacts(path or None)

    def unknown_run(self, source: str, run_id: str | None, model_id: str | None,
                    run_link: str | None) -> str | None:
        """The id of the run a ``runs:/`` source names (or the ``run_id`` sent with one of this
        workspace's artifact locations) when it is not a Databricks one and not held here."""
        if model_id or _is_databricks_run_link(run_link):
            return None
        r = _RUNS_URI.match(source)
        candidate = r["run"] if r else (run_id if source.startswith("mlflow-artifacts:") else None)
        if not candidate or self._local_run(candidate) or self.mirrored_run(candidate):
            return None
        return candidate

    def resolve(self, source: str, run_id: str | None, model_id: str | None,
                wait: float | None = None, run_link: str | None = None) -> Resolved | None:
        """None when nothing in the request is foreign (MLflow handles it as usual)."""
        unknown = self.unknown_run(source, run_id, model_id, run_link)
        if unknown:
            # fidelity: Azure ML workspace (unknown runs)
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Run with id={unknown} not found", 404)
        if not self.foreign(source, run_id, model_id):
            return None
        started = time.monotonic()
        wait = wait_seconds() if wait is None else wait
        while True:
            try:
                return self.resolve_once(source, run_id, model_id)
            except NotMirroredYet as why:
                # fidelity: Registering a Databricks-tracked model in Azure ML
                waited = time.monotonic() - started
                if not self.is_link_target():
                    # Right after linking the first mirrored run can take a moment (the relay may
                    # be backing off): a short grace, not the full wait, before "not linked".
                    if waited >= min(wait, UNLINKED_GRACE_S):
                        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", _not_linked(source), 404) from None
                elif waited >= wait:
                    raise EmulatorError("RESOURCE_DOES_NOT_EXIST", _not_mirrored(source, str(why)), 404) from None
            time.sleep(POLL_S)


def _is_databricks_run_link(run_link: str | None) -> bool:
    """MLflow sets run_link (``<host>/?o=<ws>#mlflow/experiments/<exp>/runs/<run>``) only for runs
    tracked in Databricks that are registered elsewhere (``MlflowClient._create_model_version``)."""
    return bool(run_link) and ("#mlflow/experiments/" in run_link or "/ml/experiments/" in run_link)


def _not_linked(source: str) -> str:
    return (f"Model version source '{source}' names a model tracked in Azure Databricks, and this "
            "Azure ML workspace has no copy of it: no Databricks workspace is linked to it (link "
            "them, then log the model again), or the model was logged before linking. Register it "
            "in the Databricks workspace registry instead, or log it with tracking URI = Azure ML.")


def _not_mirrored(source: str, why: str) -> str:
    return (f"Model version source '{source}' names a model tracked in the linked Azure Databricks "
            f"workspace that is not mirrored to this Azure ML workspace: {why} after waiting "
            f"{wait_seconds():g} s. Runs and models logged before the workspaces were linked are not "
            "mirrored; if it was logged while linked, the mirror is behind (see `emulator status`).")


def install(app, tracking_store) -> SourceResolver:
    """Wrap MLflow's model-versions/create view (every prefix shares one view function)."""
    from flask import request

    resolver = SourceResolver(tracking_store)

    def wrap(original):
        def create_from_mirror(*args, **kwargs):
            body = request.get_json(force=True, silent=True)
            if isinstance(body, dict) and isinstance(body.get("source"), str):
                run_id = body.get("run_id") if isinstance(body.get("run_id"), str) else None
                model_id = body.get("model_id") if isinstance(body.get("model_id"), str) else None
                run_link = body.get("run_link") if isinstance(body.get("run_link"), str) else None
                resolved = resolver.resolve(body["source"], run_id or None, model_id or None,
                                            run_link=run_link)
                if resolved is not None:
                    new = dict(body, source=resolved.source)
                    for key, value in (("run_id", resolved.run_id), ("model_id", resolved.model_id)):
                        if value:
                            new[key] = value
                        else:
                            new.pop(key, None)
                    # MLflow's handler reads request.get_json(force=True, silent=True); Werkzeug caches it.
                    request._cached_json = (new, new)
            return original(*args, **kwargs)

        return create_from_mirror

    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.rule.endswith("/mlflow/model-versions/create")}
    for endpoint in endpoints:
        app.view_functions[endpoint] = wrap(app.view_functions[endpoint])
    return resolver
