"""The Azure Machine Learning workspace stand-in (ARM discovery and the scoped MLflow REST API).

One module per job: discovery (ARM + discovery document), scope (the /mlflow/v*.0/<scope>
prefix), auth + tokens + msi (who may call), async_logging (AML's preview batch endpoints);
bad input is refused by the shared ``emulator.validation``.
"""

from __future__ import annotations

from flask import Flask, request

from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig) -> None:
    from emulator import artifact_locations, validation
    from emulator.azureml import async_logging, auth, discovery, msi
    from emulator.azureml.azure_errors import arm_error, is_arm_path, mlflow_error, request_ids
    from emulator.azureml.scope import SCOPE_ERROR, ScopePrefixMiddleware

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

    validation.install(app)
    # fidelity: Artifact locations
    artifact_locations.install_check(app, artifact_locations.AZUREML_SCHEMES)
    app.after_request(request_ids)

    def not_found():
        message = f"No API found for '{request.method} {request.path}'"
        if is_arm_path(request.path):
            return arm_error("InvalidResourceType", message, 404)
        return mlflow_error("ENDPOINT_NOT_FOUND", message, 404)

    app.config["EMULATOR_NOT_FOUND"] = not_found
