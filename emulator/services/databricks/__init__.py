"""The Azure Databricks workspace stand-in (tracking URI ``databricks``).

MLflow's own server handles the standard ``/api/2.0/mlflow/...`` calls; the modules here add what a
Databricks workspace does on top (see docs/pages/databricks.md):

* ``experiment_rules``   absolute experiment paths, parent folders, owner tags, run ownership
* ``workspace_api``      ``/api/2.0/workspace/mkdirs|get-status|list|delete|import|export``
                         (folders: ``workspace_tree``; notebooks and files: ``workspace_objects``)
* ``jobs_api``           ``/api/2.1|2.2/jobs/...`` notebook-task jobs and runs (``jobs_store``, ``jobs_runner``)
* ``files_api``          ``/api/2.0/fs/files|directories/...`` (MLflow 3's artifact transport)
* ``artifact_credentials`` ``artifacts/credentials-for-*`` signed blob URLs (MLflow 2.x's transport)
* ``dbfs_api``           ``/api/2.0/dbfs/...`` and ``/dbfs/<path>``
* ``registry_artifacts`` server-side copy of model-version files, list-artifacts, signed downloads
* ``server_artifacts``   MLflow's server-side artifact routes (list, get) for ``dbfs:/`` locations
* ``uc``                 the Unity Catalog model registry (``databricks-uc``) and its catalogs/schemas
* ``secrets_api``        ``/api/2.0/secrets/...`` scopes and secrets (``w.secrets``, ``dbutils.secrets``)
* ``scim``               ``/api/2.0/preview/scim/v2/Me``
* ``ui_links``           the client's printed ``/ml/experiments/...`` links -> MLflow UI pages
* ``clusters_api``       ``clusters/list-node-types|list|get`` (one emulated notebook cluster)
* ``run_lineage``        ``mlflow.rootRunId`` on every run (root of its nested-run tree)
* ``logged_model_metric_limit`` the quota of 1000 metrics per MLflow 3 logged model
* ``managed_evals``      ``managed-evals/datasets`` (how the client searches evaluation datasets there)
* ``trace_spans``        spans the client uploads as ``traces.json``: searchable, shown by the UI
* ``traces_v4``          the V4 (Unity Catalog) trace API answers ENDPOINT_NOT_FOUND (V3 fallback)
* ``storage``            the path guard every file access goes through
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import error_response, not_implemented
from emulator.pipeline import access_log, reset, validation
from emulator.services import mirror
from emulator.services.databricks import (
    artifact_credentials,
    clusters_api,
    dbfs_api,
    experiment_rules,
    files_api,
    jobs_api,
    logged_model_metric_limit,
    managed_evals,
    registration_lifecycle,
    registry_artifacts,
    registry_names,
    run_lineage,
    scim,
    secrets_api,
    server_artifacts,
    trace_spans,
    traces_v4,
    uc,
    ui_links,
    workspace_api,
)
from emulator.services.databricks.artifact_owners import ArtifactOwners
from emulator.services.databricks.jobs_runner import RunExecutor
from emulator.services.databricks.jobs_store import JobsStore
from emulator.services.databricks.workspace_objects import WorkspaceObjects
from emulator.services.databricks.workspace_tree import WorkspaceTree
from emulator.services.mirror.recorder import blob_recorder
from emulator import settings
from emulator.settings import ServerConfig
from emulator.stores import pristine
from emulator.stores.safe_paths import Storage

_access_log = logging.getLogger("emulator.services.databricks.access")

# Stable, fake workspace id: the client sends it back as x-databricks-org-id.
WORKSPACE_ID = "1234567890123456"


def install(app: Flask, config: ServerConfig) -> None:
    state = Path(config.state_dir)
    artifacts = Storage(state / "artifacts")
    tree = WorkspaceTree(state, config.user)

    app.config["EMULATOR_PUBLIC_PREFIXES"].append("/.well-known/databricks-config")

    @app.route("/.well-known/databricks-config", methods=["GET"])
    def _databricks_config():
        # The SDK asks this before its first call; with a workspace_id it stops warning.
        # The configured address, never the Host header a caller sent.
        return jsonify({"workspace_id": WORKSPACE_ID, "host": config.public_url.rstrip("/")})

    # Order matters for the before_request hooks: auth (common_routes) runs first, then these.
    # fidelity: Bad input
    validation.install(app)  # as strict as Azure ML: bad input is a 400 before any handler runs
    uc.install(app, config, WORKSPACE_ID)
    experiment_rules.install(app, config, tree)
    registry_names.install(app)  # the workspace registry refuses '/', '.', ':' in model names
    logged_model_metric_limit.install(app)  # at most 1000 metrics per logged model
    objects = WorkspaceObjects(state)  # notebooks and files (workspace/import|export)
    workspace_api.install(app, tree, objects)
    jobs = JobsStore(state)
    # A job's notebook tasks call this server back; at its own address, not the public one (Docker).
    local_host = "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host
    executor = RunExecutor(jobs, objects, state / "job-runs", f"http://{local_host}:{config.port}", config.token,
                           config.user, config.s3_url,
                           tables={settings.SPARK_TABLES_ENV: settings.spark_tables_dir(str(state)),
                                   settings.SPARK_CATALOG_CACHE_ENV: settings.spark_catalog_cache(str(state))})
    jobs_api.install(app, jobs, executor, config.user, config.public_url)  # fidelity: Jobs API
    owners = ArtifactOwners()  # one cache of which runs/models exist, for the Files API and DBFS
    files_api.install(app, files_api.FilesLocator(artifacts, Storage(state / "volumes"), owners))
    dbfs_root = Storage(state / "dbfs")
    dbfs = dbfs_api.Dbfs(artifacts, dbfs_root, owners)
    dbfs_api.install(app, dbfs)
    # MLflow's own server-side artifact code resolves dbfs:/ here too (emulator.stores.artifact_repositories).
    app.config["EMULATOR_DBFS_LOCATE"] = lambda uri: dbfs.locate(uri)[0]
    credentials = artifact_credentials.ArtifactCredentials(config, dbfs, WORKSPACE_ID)
    artifact_credentials.install(app, credentials)
    registry_artifacts.install(app, config, registry_artifacts.RegistryArtifacts(
        artifacts, config.token, dbfs_locate=app.config["EMULATOR_DBFS_LOCATE"]))
    registration_lifecycle.install(app)  # PENDING_REGISTRATION -> READY / FAILED_REGISTRATION
    server_artifacts.install(app, artifacts, dbfs_root)  # fidelity: Artifact locations
    scim.install(app, config)
    secrets_api.install(app, secrets_api.SecretStore(state))  # fidelity: Secrets API
    ui_links.install(app)
    clusters_api.install(app, config)
    managed_evals.install(app)  # search_datasets on tracking URI "databricks"
    traces_v4.install(app)  # V4 trace search -> 404, so mlflow.search_traces falls back to V3
    trace_spans.install(app, artifacts)  # traces/get of spans the client uploaded as a file
    linked = mirror.install(app, config)  # linked workspaces: dual tracking to Azure ML
    # Blob requests carry a SAS, not the bearer token: answered before the app's auth hooks. Blobs
    # written there (MLflow 2.x-3.3's artifacts) are mirrored as Files API uploads are.
    app.wsgi_app = credentials.blob_service(app.wsgi_app, state / "artifacts", state / "blob-staging", owners,
                                            on_write=blob_recorder(linked))
    # After the mirror: Flask runs after_request hooks last-registered first, so the run's root id
    # is in the runs/create answer the mirror copies (as it copies mlflow.parentRunId).
    run_lineage.install(app)
    for extra in ("volumes", "dbfs", "blob-staging"):  # blob-staging: uncommitted Put Blocks
        reset.on_reset(app, lambda root=state / extra: pristine.empty_dir(root))
        reset.on_holds_data(app, lambda root=state / extra: pristine.holds_files(root))
    reset.on_reset(app, tree.reset)
    reset.on_holds_data(app, tree.holds_folders)
    reset.on_reset(app, objects.reset)
    reset.on_reset(app, lambda: (executor.cancel_all(), jobs.reset()))
    reset.on_holds_data(app, jobs.holds_data)
    reset.on_holds_data(app, objects.holds_objects)
    reset.on_reset(app, owners.forget_all)

    if os.environ.get("EMULATOR_ACCESS_LOG"):
        # The WSGI server (cheroot) writes no access log; this one helps find routes a client calls that 404/501.
        _access_log.setLevel(logging.INFO)

        @app.after_request
        def _log_access(response):
            _access_log.info("%s %s -> %s", access_log.printable(request.method),
                             access_log.request_target(request), response.status_code)
            return response

    @app.before_request
    def _no_proxied_artifacts():
        # MLflow's proxied-artifact API is not a Databricks API; MLflow's handlers would answer a
        # plain-text 503 (retried by clients for minutes) since this server does not serve them.
        if request.path.startswith(("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")):
            return not_implemented("Databricks", request.method, request.path)
        return None

    def not_found():
        # Databricks clients retry 5xx for minutes and treat 404 as "missing"; an unknown API is
        # reported as not implemented, naming the path.
        if request.path.startswith("/api/"):
            return not_implemented("Databricks", request.method, request.path)
        return error_response("ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'", 404)

    app.config["EMULATOR_NOT_FOUND"] = not_found
