"""What both workspaces share: token checks, JSON errors for every failure, the admin info route."""

from __future__ import annotations

import logging
import os

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from emulator import auth
from emulator.errors import EmulatorError, error_response, from_exception
from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)

# Reachable without a token: liveness probes and what real services also serve anonymously.
ALWAYS_PUBLIC = ("/health", "/version", "/__emulator/info")


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR"] = config
    app.config.setdefault("EMULATOR_PUBLIC_PREFIXES", list(ALWAYS_PUBLIC))

    @app.before_request
    def _check_token():
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in app.config["EMULATOR_PUBLIC_PREFIXES"]):
            return None
        presented = auth.presented_token(request)
        if presented is None:
            return _unauthenticated(app, "No access token was provided (Authorization: Bearer ...).")
        # A role may accept more than its static token (Azure ML: MSI-issued tokens); its check
        # returns why a token is refused, or None.
        role_check = app.config.get("EMULATOR_TOKEN_CHECK")
        if role_check is not None:
            problem = role_check(presented)
            if problem:
                return _unauthenticated(app, problem)
        elif not auth.token_matches(presented, config.token):
            return _unauthenticated(app, "Invalid access token.")
        g.emulator_user = config.user
        return None

    @app.after_request
    def _ui_login(response):
        return auth.remember_ui_login(request, response, config.token)

    @app.errorhandler(EmulatorError)
    def _emulator_error(exc: EmulatorError):
        return from_exception(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if exc.code == 404:
            return app.config.get("EMULATOR_NOT_FOUND", _not_found)()
        if exc.code == 405:
            return error_response(
                "ENDPOINT_NOT_FOUND", f"{request.method} is not supported on {request.path}", 405
            )
        if exc.code == 413:
            return error_response("INVALID_PARAMETER_VALUE", "Request body is too large.", 413)
        return error_response("BAD_REQUEST", exc.description or exc.name, exc.code or 400)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # Logged with its traceback for the operator; the client gets the backend's JSON shape.
        _logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("INTERNAL_ERROR", f"Internal error: {type(exc).__name__}: {exc}", 500)

    @app.route("/__emulator/info")
    def _info():
        # "instance": the id the launcher that started this process recorded (emulator.launcher.owned).
        return jsonify({"role": config.role, "url": config.public_url, "healthy": True,
                        "instance": os.environ.get("EMULATOR_INSTANCE_ID")})


def _unauthenticated(app: Flask, message: str):
    shape = app.config.get("EMULATOR_UNAUTHENTICATED")
    return shape(message) if shape else error_response("UNAUTHENTICATED", message, 401)


def _not_found():
    return error_response("ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'", 404)
