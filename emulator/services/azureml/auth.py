"""Which tokens the Azure ML workspace accepts, and its 401 answers.

Accepted: the workspace token (``MLFLOW_TRACKING_TOKEN`` for the vanilla MLflow client) and
unexpired tokens from the MSI endpoint for an ARM / Azure ML audience. A 401 carries
``WWW-Authenticate`` as Azure's services send it; ARM paths get ARM's error body, MLflow paths
MLflow's ``{"error_code": "UNAUTHENTICATED", "message"}`` (the client shows that message).
"""

from __future__ import annotations

from flask import Flask, request

from emulator.pipeline import auth as common_auth
from emulator.services.azureml import hosts, tokens
from emulator.services.azureml.azure_errors import (
    arm_error,
    is_azure_path,
    mlflow_error,
)
from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig) -> None:
    tenant = tokens.tenant_id(config.subscription_id)
    # With ARM_CLOUD_METADATA_URL (arrangement B) the resource manager is this HTTPS listener, and
    # clients ask for tokens with it as audience.
    own = frozenset(f"https://{host}:{port}" for host in ("127.0.0.1", "localhost", hosts.public_host(config))
                    for port in {config.tls_port, config.tls_public_port} if port)

    def check(presented: str) -> str | None:
        return tokens.check(presented, config.token, own)

    def unauthenticated(message: str):
        missing = common_auth.presented_token(request) is None
        challenge = f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant}"'
        if not missing:
            challenge += f', error="invalid_token", error_description="{message}"'
        headers = {"WWW-Authenticate": challenge}
        if is_azure_path(request.path):
            if missing:
                return arm_error("AuthenticationFailed",
                                 "Authentication failed. The 'Authorization' header is missing.", 401, headers)
            return arm_error("InvalidAuthenticationToken", message, 401, headers)
        return mlflow_error("UNAUTHENTICATED", message, 401, headers=headers)

    app.config["EMULATOR_TOKEN_CHECK"] = check
    app.config["EMULATOR_UNAUTHENTICATED"] = unauthenticated
