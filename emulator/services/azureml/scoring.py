"""The online endpoints' data plane: ``POST <scoringUri>`` = ``/inference/<endpoint>/score``.

Real endpoints live at ``https://<endpoint>.<region>.inference.ml.azure.com/score``; here one
path per endpoint on the workspace's own listeners (plain and TLS), named in the endpoint's
``scoringUri``. Authentication is the endpoint's, not the workspace's: ``Authorization: Bearer
<primary or secondary key>`` (Key), a token from ``.../token`` (AMLToken), or an Entra-style token
of the workspace (AADToken: the workspace token or an MSI token).

Routing: the ``azureml-model-deployment`` header picks a deployment (any traffic, even 0);
otherwise a deployment is drawn by the endpoint's traffic weights. The request is proxied to the
deployment's own process; the answer carries ``azureml-model-deployment`` naming who served it.
A deployment that hangs past its request timeout gets a 408, one whose process died a 502 (and it
is restarted) — the workspace itself keeps answering.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import re
import threading
import time

import requests
from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from emulator.pipeline import auth as common_auth
from emulator.pipeline import body_limits
from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)

PREFIX = "/inference"
DEPLOYMENT_HEADER = "azureml-model-deployment"
TOKEN_LIFETIME_S = 24 * 3600
DEFAULT_REQUEST_TIMEOUT = "PT1M"  # the real default is PT5S: too tight for loaded CI machines
_DURATION = re.compile(r"^PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?$")
_random = random.SystemRandom()
# Proxied scoring requests hold a server thread each (the server runs 8): at most this many at once,
# so slow or hung models never starve the workspace's own API. Others wait briefly, then 429.
SCORING_SLOTS = 4
QUEUE_WAIT_S = 0.5  # as the real max_queue_wait_ms default (500 ms)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    # fidelity: Online endpoints - scoring errors
    return Response(json.dumps({"error": {"code": code, "message": message}}), status=status,
                    mimetype="application/json", headers=headers or {})


# -- AMLToken tokens ------------------------------------------------------------------------------
def _token_key(config: ServerConfig) -> bytes:
    return hashlib.sha256(b"emulator-endpoint-token:" + config.token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_token(config: ServerConfig, endpoint: str) -> dict:
    now = int(time.time())
    claims = _b64(json.dumps({"endpoint": endpoint, "exp": now + TOKEN_LIFETIME_S}).encode())
    signature = _b64(hmac.new(_token_key(config), claims.encode(), hashlib.sha256).digest())
    return {"accessToken": f"amlep.{claims}.{signature}", "tokenType": "Bearer",
            "expiryTimeUtc": now + TOKEN_LIFETIME_S, "refreshAfterTimeUtc": now + TOKEN_LIFETIME_S // 2}


def token_problem(config: ServerConfig, endpoint: str, token: str) -> str | None:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != "amlep":
        return "Not an endpoint token (get one from the endpoint's token action)."
    expected = _b64(hmac.new(_token_key(config), parts[1].encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2]):
        return "Invalid endpoint token."
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return "Invalid endpoint token."
    if claims.get("endpoint") != endpoint:
        return f"The token was issued for endpoint '{claims.get('endpoint')}', not '{endpoint}'."
    if claims.get("exp", 0) < time.time():
        return "The endpoint token has expired."
    return None


# -- routing ------------------------------------------------------------------------------------
def duration_seconds(value) -> float | None:
    """ISO 8601 durations as ARM sends them (PT5S, PT1M30S, PT0.5S); None if not one."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None or value == "PT":
        return None
    return int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + float(m["s"] or 0)


def request_timeout(dep: dict) -> float:
    """The deployment's requestSettings.requestTimeout."""
    value = ((dep.get("properties") or {}).get("requestSettings") or {}).get("requestTimeout")
    return duration_seconds(value) or duration_seconds(DEFAULT_REQUEST_TIMEOUT)


def choose(ep: dict, wanted: str | None) -> tuple[str | None, str | None]:
    """(deployment name, None) or (None, why not)."""
    deployments = ep["deployments"]
    if wanted:
        if wanted not in deployments:
            return None, f"Deployment '{wanted}' does not exist on endpoint '{ep['name']}'."
        return wanted, None
    weights = {d: w for d, w in ep["properties"].get("traffic", {}).items() if w > 0 and d in deployments}
    if not weights:
        return None, ("No valid deployments to route to. Please check that the endpoint has at least one "
                      "deployment with positive weight values or use a deployment specific header to route.")
    names = sorted(weights)
    # fidelity: Online endpoints - traffic
    return _random.choices(names, weights=[weights[n] for n in names])[0], None


def install(app: Flask, config: ServerConfig, service, ws_tokens) -> None:
    app.config["EMULATOR_PUBLIC_PREFIXES"].append(PREFIX)  # the endpoint checks its own credentials
    slots = threading.BoundedSemaphore(SCORING_SLOTS)

    def authenticate(ep: dict) -> Response | None:
        presented = common_auth.presented_token(request)
        challenge = {"WWW-Authenticate": 'Bearer realm="endpoint"'}
        if presented is None:
            return _error(401, "Unauthorized", "No credentials: send Authorization: Bearer <endpoint key or token>.",
                          challenge)
        mode = ep["properties"]["authMode"]
        if mode == "Key":
            keys = [k for k in ep["keys"].values() if k]
            if any(hmac.compare_digest(presented.encode(), k.encode()) for k in keys):
                return None
            return _error(401, "Unauthorized", "Invalid endpoint key.", challenge)
        problem = (token_problem(config, ep["name"], presented) if mode == "AMLToken"
                   else ws_tokens.check(presented, config.token))
        return _error(401, "Unauthorized", problem, challenge) if problem else None

    def admit(endpoint: str) -> Response | tuple[dict, str]:
        """The endpoint and the deployment that serves this request, or the error answer."""
        with service.store.lock:
            ep = service.store.endpoints.get(endpoint)
            ep = json.loads(json.dumps(ep)) if ep else None
        if ep is None:
            return _error(404, "EndpointNotFound", f"Online endpoint '{endpoint}' does not exist.")
        problem = authenticate(ep)
        if problem is not None:
            return problem
        name, why = choose(ep, request.headers.get(DEPLOYMENT_HEADER))
        if name is None:
            return _error(404, "DeploymentNotFound", why)
        return ep, name

    def too_large(endpoint: str) -> Response:
        admitted = admit(endpoint)  # a caller without the key learns nothing, not even the limit
        if isinstance(admitted, Response):
            return admitted
        # fidelity: Online endpoints - scoring errors
        return _error(413, "PayloadTooLarge", f"The request body exceeds the scoring limit of "
                      f"{body_limits.MAX_JSON_BODY} bytes.", {DEPLOYMENT_HEADER: admitted[1]})

    def _cap_scoring_body():
        # Before the workspace-wide cap (body_limits), whose 413 has MLflow's shape: a declared
        # Content-Length over the limit gets the scoring route's own answer.
        parts = request.path.split("/")
        if (request.method == "POST" and len(parts) == 4 and f"/{parts[1]}" == PREFIX and parts[3] == "score"
                and (request.content_length or 0) > body_limits.MAX_JSON_BODY):
            return too_large(parts[2])
        return None

    app.before_request_funcs.setdefault(None, []).insert(0, _cap_scoring_body)

    @app.route(f"{PREFIX}/<endpoint>/score", methods=["POST"])
    def _score(endpoint):
        admitted = admit(endpoint)
        if isinstance(admitted, Response):
            return admitted
        ep, name = admitted
        try:
            body = request.get_data()
        except RequestEntityTooLarge:  # a chunked body that passed the cap
            return too_large(endpoint)
        if len(body) > body_limits.MAX_JSON_BODY:  # read up to the cap + 1: over it (body_limits)
            return too_large(endpoint)
        dep = ep["deployments"][name]
        state = dep["properties"].get("provisioningState")
        proc = service.pool.get(endpoint, name)
        if proc is None and state in ("Creating", "Updating"):
            # Just restarted: wait for the process (bounded) rather than fail the first requests.
            deadline = time.monotonic() + 120
            while proc is None and time.monotonic() < deadline:
                time.sleep(0.2)
                proc = service.pool.get(endpoint, name)
        headers = {DEPLOYMENT_HEADER: name}
        if proc is None:
            detail = f": {dep.get('error').splitlines()[0]}" if dep.get("error") else ""
            return _error(424, "DeploymentNotReady",
                          f"Deployment '{name}' is {state} and cannot score{detail}. See its logs.", headers)
        if not proc.alive():
            service.restart(endpoint, name)
            return _error(502, "ModelContainerCrashed",
                          f"The inference server of deployment '{name}' exited (code {proc.proc.returncode}); it is "
                          "being restarted. See the deployment logs.", headers)
        timeout = request_timeout(dep)
        if not slots.acquire(timeout=QUEUE_WAIT_S):
            # fidelity: Online endpoints - scoring errors
            return _error(429, "TooManyRequests", f"More than {SCORING_SLOTS} scoring requests are in flight on "
                          "this workspace; retry later.", {**headers, "Retry-After": "1"})
        try:
            answer = requests.post(f"http://127.0.0.1:{proc.port}/score", data=body,
                                   headers={"Content-Type": request.headers.get("Content-Type", "application/json"),
                                            "Authorization": f"Bearer {proc.secret}"},
                                   timeout=(5, timeout))
        except requests.Timeout:
            return _error(408, "RequestTimeout",
                          f"Deployment '{name}' did not answer within {timeout:g} s (requestSettings.requestTimeout).",
                          headers)
        except requests.ConnectionError as exc:
            service.restart_if_dead(endpoint, name, proc)
            return _error(502, "ModelContainerCrashed",
                          f"The inference server of deployment '{name}' dropped the request: {exc}", headers)
        finally:
            slots.release()
        headers["Content-Type"] = answer.headers.get("Content-Type", "application/json")
        return Response(answer.content, status=answer.status_code, headers=headers)

    @app.route(f"{PREFIX}/<endpoint>/swagger.json", methods=["GET"])
    def _swagger(endpoint):
        with service.store.lock:
            ep = service.store.endpoints.get(endpoint)
        if ep is None:
            return _error(404, "EndpointNotFound", f"Online endpoint '{endpoint}' does not exist.")
        problem = authenticate(ep)
        if problem is not None:
            return problem
        return Response(json.dumps({"swagger": "2.0", "info": {"title": endpoint, "version": "1.0"},
                                    "paths": {"/score": {"post": {"consumes": ["application/json"]}}}}),
                        mimetype="application/json")
