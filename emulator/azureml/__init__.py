"""The Azure Machine Learning workspace stand-in (ARM discovery and the scoped MLflow REST API).

One module per job: discovery (ARM + discovery document), scope (the /mlflow/v*.0/<scope>
prefix), auth + tokens + msi (who may call), validation (bad input), async_logging (AML's
preview batch endpoints).
"""

from __future__ import annotations

import os

from flask import Flask, request

from emulator.settings import ServerConfig


def _tracking_store():
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def install(app: Flask, config: ServerConfig) -> None:
    from emulator.azureml import async_logging, auth, discovery, msi, validation
    from emulator.azureml.azure_errors import arm_error, is_arm_path, mlflow_error, request_ids
    from emulator.azureml.scope import SCOPE_ERROR, ScopePrefixMiddleware

    # Over-long params/tags are a 400, not silently cut (this server process only).
    os.environ["MLFLOW_TRUNCATE_LONG_VALUES"] = "false"

    app.wsgi_app = ScopePrefixMiddleware(app.wsgi_app, config)
    auth.install(app, config)
    discovery.install(app, config)
    msi.install(app, config)
    async_logging.install(app)

    # Registered after the token check (common_routes), so both run only for authenticated calls.
    @app.before_request
    def _reject_other_scopes():
        problem = request.environ.get(SCOPE_ERROR)
        if problem:
            code, message = problem
            return mlflow_error("RESOURCE_DOES_NOT_EXIST", message, 404, azure_code=code)
        return None

    app.before_request(validation.check_request)
    app.after_request(request_ids)

    def not_found():
        message = f"No API found for '{request.method} {request.path}'"
        if is_arm_path(request.path):
            return arm_error("InvalidResourceType", message, 404)
        return mlflow_error("ENDPOINT_NOT_FOUND", message, 404)

    app.config["EMULATOR_NOT_FOUND"] = not_found

    # Deploying to Azure ML (issue 13): the registry takes Databricks-tracked sources through the
    # mirror, ARM model assets are the registry, online endpoints serve registered versions.
    from emulator.azureml import arm_models, online_endpoints, registry_sources

    registry_sources.install(app, _tracking_store)
    arm_models.install(app, config)
    online_endpoints.install(app, config)
