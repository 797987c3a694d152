"""Entra ID's token endpoints for a service principal (client-credentials grant), v1 and v2.

Users outside a compute instance authenticate as a service principal: azure-identity's
``ClientSecretCredential`` / ``EnvironmentCredential`` (``AZURE_CLIENT_ID``, ``AZURE_CLIENT_SECRET``,
``AZURE_TENANT_ID``), or raw ``POST <login>/<tenant>/oauth2/token`` (v1, ``resource=``) and
``/oauth2/v2.0/token`` (v2, ``scope=<resource>/.default``) followed by MLflow REST calls with the
bearer token. Served here for the workspace's tenant and ONE service principal, whose id and secret
derive from the workspace token (``emulator status --json`` prints them): its tokens are the
workspace's signed tokens (tokens.mint), so nothing else opens the workspace. Also the discovery
documents MSAL reads first (OpenID configuration, instance discovery).

Reached as ``login.microsoftonline.com`` through the CONNECT proxy (arrangement A) or at the HTTPS
listener, which the cloud metadata names as ``loginEndpoint`` (arrangement B). The routes answer
before the workspace's token check: on the real service they are anonymous.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, request

from emulator.pipeline import journal
from emulator.services.azureml import hosts, tokens
from emulator.settings import ServerConfig

LOGIN_HOST = hosts.LOGIN_HOST
TOKEN_TTL_SECONDS = 3599  # what Entra's client-credentials tokens report
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/(?P<v2>v2\.0/)?token$")
_OPENID = re.compile(r"^/(?P<tenant>[^/]+)(?P<v2>/v2\.0)?/\.well-known/openid-configuration$")
_INSTANCE = "/common/discovery/instance"


def login_base(config: ServerConfig) -> str:
    """Where this request's client reaches Entra: the real name if it came by Azure names, else here."""
    if hosts.uses_azure_names(config, request):
        return f"https://{LOGIN_HOST}"
    return hosts.service_url(config, request)


def _entra_error(error: str, code: int, text: str, status: int) -> Response:
    # fidelity: Azure ML real clients
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                             f"Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://{LOGIN_HOST}/error?code={code}",
    }
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _token(config: ServerConfig, tenant: str, v2: bool) -> Response:
    our_tenant = tokens.tenant_id(config.subscription_id)
    if tenant.lower() != our_tenant:
        return _entra_error("invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have "
                            "the correct tenant ID and are signing into the correct cloud.", 400)
    form = request.form
    if form.get("grant_type") != "client_credentials":
        return _entra_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type "
                            f"'{form.get('grant_type') or ''}'. The emulator serves client_credentials only.", 400)
    client_id, secret = tokens.service_principal(config.token)
    if not form.get("client_id"):
        return _entra_error("invalid_request", 900144,
                            "The request body must contain the following parameter: 'client_id'.", 400)
    if form["client_id"].lower() != client_id:
        return _entra_error("unauthorized_client", 700016, f"Application with identifier '{form['client_id']}' "
                            f"was not found in the directory '{our_tenant}'.", 400)
    if not form.get("client_secret"):
        return _entra_error("invalid_client", 7000218, "The request body must contain the following parameter: "
                            "'client_assertion' or 'client_secret'.", 401)
    if not hmac.compare_digest(form["client_secret"].encode(), secret.encode()):
        return _entra_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being "
                            "sent in the request is the client secret value, not the client secret ID, for a "
                            f"secret added to app '{client_id}'.", 401)
    if v2:
        scope = form.get("scope", "")
        if not scope:
            return _entra_error("invalid_request", 900144,
                                "The request body must contain the following parameter: 'scope'.", 400)
        if not scope.endswith("/.default") or " " in scope.strip():
            return _entra_error("invalid_scope", 1002012, f"The provided value for scope {scope} is not valid. "
                                "Client credential flows must have a scope value with /.default suffixed to the "
                                "resource identifier (application ID URI).", 400)
        resource = scope.strip().removesuffix("/.default")
    else:
        resource = form.get("resource", "")
        if not resource:
            return _entra_error("invalid_resource", 500011, "The resource principal was not found: the request "
                                "body must name a 'resource'.", 400)
    minted = tokens.mint(config.token, resource, config.subscription_id, ttl=TOKEN_TTL_SECONDS,
                         principal=f"service-principal:{client_id}")
    answer = {"token_type": "Bearer", "expires_in": TOKEN_TTL_SECONDS, "ext_expires_in": TOKEN_TTL_SECONDS,
              "access_token": minted["access_token"]}
    if not v2:  # v1 answers numbers as strings and names the resource
        answer = {**{k: str(v) for k, v in answer.items()}, "expires_on": minted["expires_on"],
                  "not_before": minted["not_before"], "resource": resource}
    return Response(json.dumps(answer), mimetype="application/json")


def _openid(config: ServerConfig, tenant: str, v2: bool) -> Response:
    base = f"{login_base(config)}/{tenant}"
    suffix = "/v2.0" if v2 else ""
    issuer = f"{base}/v2.0" if v2 else f"https://sts.windows.net/{tenant}/"
    doc = {
        "token_endpoint": f"{base}/oauth2{suffix}/token",
        "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
        "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
        "issuer": issuer,
        "jwks_uri": f"{login_base(config)}/{tenant}/discovery{suffix}/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
    }
    return Response(json.dumps(doc), mimetype="application/json")


def _instance_discovery(config: ServerConfig) -> Response:
    host = login_base(config).removeprefix("https://")
    doc = {"tenant_discovery_endpoint": f"https://{host}/common/v2.0/.well-known/openid-configuration",
           "api-version": "1.1",
           "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]}
    return Response(json.dumps(doc), mimetype="application/json")


def install(app: Flask, config: ServerConfig) -> None:
    def _entra():
        path = request.path
        if request.method == "POST" and (m := _TOKEN.match(path)):
            request.environ[journal.SECRET_BODIES] = True  # a client secret in, a token out
            return _token(config, m["tenant"], bool(m["v2"]))
        if request.method == "GET" and (m := _OPENID.match(path)):
            return _openid(config, m["tenant"], bool(m["v2"]))
        if request.method == "GET" and path == _INSTANCE:
            return _instance_discovery(config)
        return None

    # First of all hooks: the tenant is part of the path, so no fixed public prefix fits, and
    # these answers must not be the workspace's 401.
    app.before_request_funcs.setdefault(None, []).insert(0, _entra)
