"""What both workspaces share: token checks, JSON errors for every failure, the admin info route."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, g, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from emulator.errors import EmulatorError, error_response, from_exception, not_implemented
from emulator.pipeline import auth, login_page, same_origin
from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)

# Reachable without a token: liveness probes and what real services also serve anonymously.
ALWAYS_PUBLIC = ("/health", "/version", "/__emulator/info")
ADMIN_PREFIX = "/__emulator/"


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR"] = config
    app.config.setdefault("EMULATOR_PUBLIC_PREFIXES", list(ALWAYS_PUBLIC))

    login_cookie = auth.cookie_name(config.role, config.public_url)
    app.config["EMULATOR_LOGIN_COOKIE"] = login_cookie
    same_origin.install_headers(app)

    @app.before_request
    def _check_token():
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in app.config["EMULATOR_PUBLIC_PREFIXES"]):
            return None
        if auth.is_ui_login(request):
            return _ui_login(app, config, login_cookie)
        presented = auth.bearer_token(request)
        if presented is None:
            return _cookie_login(app, config, login_cookie)
        # A role may accept more than its static token (Azure ML: MSI-issued tokens); its check
        # returns why a token is refused, or None.
        role_check = app.config.get("EMULATOR_TOKEN_CHECK")
        if role_check is not None:
            problem = role_check(presented)
            if problem:
                return _unauthenticated(app, problem)
        elif not auth.token_matches(presented, config.token):
            return _unauthenticated(app, "Invalid access token.")
        if path.startswith(ADMIN_PREFIX) and request.method in same_origin.STATE_CHANGING:
            problem = _admin_body_problem()
            if problem:
                return error_response("INVALID_PARAMETER_VALUE", problem, 415)
        g.emulator_user = config.user
        return None

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
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException) and exc.get_http_status_code() < 500:
            # fidelity: Request bodies, input validation and serving (security hardening B)
            # MLflow's own refusal of bad input that a handler raised outside MLflow's catch (e.g.
            # an int check on datasets/<id>/records): its code and status, never a 500.
            return error_response(exc.error_code, exc.message, exc.get_http_status_code())
        # Logged with its traceback for the operator; the client gets the backend's JSON shape.
        _logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("INTERNAL_ERROR", f"Internal error: {type(exc).__name__}: {exc}", 500)

    @app.after_request
    def _disabled_feature(response):
        # fidelity: Request bodies, input validation and serving (security hardening B)
        # MLflow answers 503 for routes of features this server runs without (its multi-workspace
        # API); neither service has them, and a 503 makes clients retry for minutes: no such API.
        if (response.status_code == 503 and "/mlflow/workspaces" in request.path) or (
                response.status_code >= 500 and request.path.endswith("/mlflow/demo/generate")):
            # ... nor the UI's demo-data generator, which fails on these stores anyway.
            return not_implemented("Databricks" if config.role == "databricks" else "Azure ML", request.method,
                                   request.path)
        return response

    @app.route("/__emulator/info")
    def _info():
        # "instance": the id the launcher that started this process recorded (emulator.control.launcher.owned).
        # "state_dir": which state dir this is, so a second `up` or a test session on the same port can
        # name the workspace in its way (harness.port_owners); a path, no secret.
        return jsonify({"role": config.role, "url": config.public_url, "healthy": True,
                        "instance": os.environ.get("EMULATOR_INSTANCE_ID"),
                        "state_dir": str(Path(config.state_dir).resolve().parent)})

    # What stock MLflow serves only from its FastAPI app: OTLP span ingestion (tracing parity).
    from emulator.stores import otlp_traces

    otlp_traces.install(app)


def _ui_login(app: Flask, config: ServerConfig, cookie: str):
    """``/?token=<token>``: set the UI cookie and redirect to the URL without the token."""
    if not auth.token_matches(request.args.get(auth.LOGIN_PARAM), config.token):
        return _unauthenticated(app, "Invalid access token in ?token=.", config)
    # fidelity: Security promises — ?token= only logs the UI in
    response = redirect(auth.url_without_login(request), 302)
    response.set_cookie(cookie, auth.cookie_value(config.token, cookie), httponly=True,
                        samesite="Strict", path="/")
    return response


def _cookie_login(app: Flask, config: ServerConfig, cookie: str):
    """Requests without a bearer token: the UI's own routes may be authorised by its cookie."""
    if not (auth.in_ui_scope(request.path) and request.cookies.get(cookie) is not None):
        return _unauthenticated(app, "No access token was provided (Authorization: Bearer ...).", config)
    if not auth.cookie_matches(request, cookie, config.token):
        return _unauthenticated(app, "The UI login cookie is not valid; open the UI link with ?token= again.",
                                config)
    problem = same_origin.cross_site_problem(request, config.public_url, page_load=auth.is_page_load(request))
    if problem:
        return error_response("PERMISSION_DENIED", problem, 403)
    g.emulator_user = config.user
    return None


def _admin_body_problem() -> str | None:
    """State-changing admin calls take JSON only: no form or text/plain body a web page could send."""
    mimetype = request.mimetype
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if mimetype == "application/json" or (not mimetype and not has_body):
        return None
    return f"{request.method} {request.path} takes Content-Type: application/json, not {mimetype or 'none'}."


def _unauthenticated(app: Flask, message: str, config: ServerConfig | None = None):
    if config is not None and login_page.wants_html(request):
        # fidelity: Security promises — a browser without a login gets a page saying how to log in
        return login_page.response(config.role, config.public_url, message)
    shape = app.config.get("EMULATOR_UNAUTHENTICATED")
    return shape(message) if shape else error_response("UNAUTHENTICATED", message, 401)


def _not_found():
    return error_response("ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'", 404)
