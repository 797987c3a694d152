"""The Azure Machine Learning workspace stand-in (ARM discovery and the scoped MLflow REST API).

One module per job: discovery (ARM + discovery document), arm_cloud (cloud metadata,
subscriptions), scope (the /mlflow/v*.0/<scope> prefix), auth + tokens + msi (who may call),
async_logging (AML's preview batch endpoints); for the real Azure client stack: hosts (which
address a client gets), tls + listeners (HTTPS, CONNECT proxy), artifact_views (azureml://
artifact URIs for the plugin), run_history + blob_service + blob_sas (where the plugin reads and
writes artifacts), local_uploads (the same for uploads of no run: models registered from a
local folder). Bad input is refused by the shared ``emulator.pipeline.validation``.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, request

from emulator.settings import ServerConfig


def _tracking_store():
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def install(app: Flask, config: ServerConfig) -> None:
    from emulator.pipeline import validation
    from emulator.services.azureml import (
        arm_cloud,
        async_logging,
        auth,
        discovery,
        entra,
        local_uploads,
        msi,
        run_history,
        tls,
    )
    from emulator.services.azureml.artifact_views import ArtifactViewMiddleware
    from emulator.services.azureml.azure_errors import (
        arm_error,
        is_azure_path,
        mlflow_error,
        request_ids,
    )
    from emulator.services.azureml.blob_service import BlobService
    from emulator.services.azureml.experiment_guids import Owners, from_store
    from emulator.services.azureml.experiment_id_view import UNKNOWN, ExperimentIdView
    from emulator.services.azureml.scope import SCOPE_ERROR, ScopePrefixMiddleware
    from emulator.stores import artifact_locations

    # Outermost first: blob requests (SAS-authenticated) never reach MLflow; the plugin's view of
    # artifact URIs is applied to the raw bodies; then the scope prefix is stripped for MLflow.
    # Innermost: experiment GUIDs <-> the store's integer ids, on paths without the scope prefix.
    app.wsgi_app = ExperimentIdView(app.wsgi_app, lambda: from_store(config.scope, _tracking_store()))
    owners = ArtifactViewMiddleware(ScopePrefixMiddleware(app.wsgi_app, config),
                                    lambda: Owners(config.scope, _tracking_store()))
    app.wsgi_app = BlobService(owners, config)
    auth.install(app, config)
    discovery.install(app, config)
    arm_cloud.install(app, config)
    msi.install(app, config)
    entra.install(app, config)
    async_logging.install(app)
    run_history.install(app, config)
    local_uploads.install(app, config)

    app.config["EMULATOR_PUBLIC_PREFIXES"].append("/__emulator/ca.pem")

    @app.route("/__emulator/ca.pem")
    def _ca_certificate():
        # The emulator's CA certificate (public, like any CA's): clients add it to their trust.
        ca = tls.files_for(config.state_dir).ca
        if not ca.exists():
            return mlflow_error("RESOURCE_DOES_NOT_EXIST", "This workspace runs without HTTPS.", 404)
        return Response(ca.read_bytes(), mimetype="application/x-pem-file")

    # Registered after the token check (common_routes), so both run only for authenticated calls.
    @app.before_request
    def _reject_other_scopes():
        problem = request.environ.get(SCOPE_ERROR)
        if problem:
            code, message = problem
            return mlflow_error("RESOURCE_DOES_NOT_EXIST", message, 404, azure_code=code)
        unknown = request.environ.get(UNKNOWN)
        if unknown is not None:
            # fidelity: Azure ML experiment ids -- an id the workspace does not hold
            return mlflow_error("RESOURCE_DOES_NOT_EXIST", f"No Experiment with id={unknown} exists", 404)
        return None

    validation.install(app)
    # fidelity: Artifact locations
    artifact_locations.install_check(app, artifact_locations.AZUREML_SCHEMES)
    app.after_request(request_ids)

    def not_found():
        message = f"No API found for '{request.method} {request.path}'"
        if is_azure_path(request.path):
            return arm_error("InvalidResourceType", message, 404)
        return mlflow_error("ENDPOINT_NOT_FOUND", message, 404)

    app.config["EMULATOR_NOT_FOUND"] = not_found

    # Deploying to Azure ML (issue 13): the registry takes Databricks-tracked sources through the
    # mirror, ARM model assets are the registry, online endpoints serve registered versions.
    from emulator.services.azureml import (
        arm_models,
        datastores,
        legacy_mlflow,
        local_upload_versions,
        online_endpoints,
        registration_rules,
        registry_sources,
        run_param_limit,
    )

    registration_rules.install(app, config)  # what Azure ML's registry refuses, before any lookup
    run_param_limit.install(app, config)  # at most 200 params per run
    registry_sources.install(app, _tracking_store)
    # fidelity: Azure ML local uploads -- versions registered from a local folder
    local_upload_versions.install(app, Path(config.state_dir) / "artifacts")
    legacy_mlflow.install(app, _tracking_store)
    arm_models.install(app, config)
    datastores.install(app, config)  # azure-ai-ml's uploads of local model folders
    online_endpoints.install(app, config)
