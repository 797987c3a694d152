"""A managed-identity token endpoint, as App Service / Azure ML compute expose it.

Clients find it through ``IDENTITY_ENDPOINT=<url>/msi/token`` and ``IDENTITY_HEADER=<secret>``
and call ``GET /msi/token?resource=<audience>&api-version=2019-08-01`` with the header
``X-IDENTITY-HEADER: <secret>`` (older api-version 2017-09-01 clients send ``secret``). The secret
is ``EMULATOR_AZUREML_IDENTITY_HEADER`` or, by default, derived from the workspace token (see
tokens.identity_header; ``emulator status`` prints it).
"""

from __future__ import annotations

import hmac
import json

from flask import Flask, Response, request

from emulator.services.azureml import tokens
from emulator.settings import ServerConfig

PATH = "/msi/token"


def _oauth_error(error: str, description: str, status: int) -> Response:
    # The OAuth-style body managed-identity endpoints answer with (azure-identity reads it).
    body = json.dumps({"error": error, "error_description": description})
    return Response(body, status=status, mimetype="application/json")


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR_PUBLIC_PREFIXES"].append(PATH)  # guarded by the identity header instead

    # fidelity: Azure ML real clients -- azure-identity calls PATH, azureml-core PATH + "/"
    @app.route(PATH, methods=["GET"])
    @app.route(PATH + "/", methods=["GET"])
    def _msi_token():
        secret = request.headers.get("X-IDENTITY-HEADER") or request.headers.get("secret")
        if not secret:
            return _oauth_error("invalid_request",
                                "The X-IDENTITY-HEADER header (the IDENTITY_HEADER value) is missing.", 401)
        if not hmac.compare_digest(secret.encode(), tokens.identity_header(config.token).encode()):
            return _oauth_error("unauthorized_client", "The X-IDENTITY-HEADER value is not valid.", 401)
        if not request.args.get("api-version"):
            return _oauth_error("invalid_request", "The api-version query parameter is required.", 400)
        resource = request.args.get("resource") or request.args.get("scope", "").removesuffix("/.default")
        if not resource:
            return _oauth_error("invalid_request", "The resource query parameter is required.", 400)
        answer = tokens.mint(config.token, resource, config.subscription_id)
        return Response(json.dumps(answer), mimetype="application/json")
