"""Fault rules: make chosen calls fail the way real services fail, to reproduce client bugs.

A rule (as the Databricks CLI's test server keys them) names a method and a path pattern, can
narrow on the request body, nested fields included (``{"name": "my-model"}``, ``{"tags[].key":
"mlflow.user"}``, ``{"source": {"prefix": "dbfs:/"}}``: emulator.pipeline.fault_match), lets the
first ``skip`` matching calls pass, fires ``times`` times (unlimited when absent), and has one effect:

* ``status``: answer that HTTP status in the backend's own error shape (or ``shape``'s:
  ``databricks``, ``uc``, ``azureml``), with ``retry_after``;
* ``delay_s``: added latency, then the call proceeds (may accompany any other effect);
* ``drop``: close the connection without an answer (the client sees a reset / remote disconnect);
* ``after_commit``: let the server perform the call, then lose its answer: ``"status"`` answers
  ``status`` (default 503) instead, ``"drop"`` closes the connection — the lost-response case;
* ``hold_pending_s`` / ``fail_registration``: Databricks ``model-versions/create`` (workspace
  registry and Unity Catalog) only — the version stays ``PENDING_REGISTRATION`` for N seconds, or
  ends ``FAILED_REGISTRATION`` with this message (read by
  ``emulator.services.databricks.registration_lifecycle`` and, at finalize, ``...uc.registration_faults``).

Rules live in memory only: a restart or ``POST /__emulator/reset`` clears them. Faults apply to
authenticated calls only (an unauthenticated caller gets the plain 401) and never to
``/__emulator/*`` (so a ``*`` rule cannot lock out the admin routes).
"""

from __future__ import annotations

import fnmatch
import io
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields

from werkzeug.wrappers import Request, Response

from emulator.errors import EmulatorError
from emulator.pipeline import auth, fault_match

_logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/__emulator/"
ENVIRON_RULE = "emulator.fault.rule"  # the rule that fired on this request (read by the lifecycle)
MAX_BODY_MATCH = 1024 * 1024  # bodies beyond this are never buffered for body matching
MAX_DELAY_S = 600.0
# The client's socket (its file descriptor, set by the server): a delay ends when the client leaves.
CONNECTION_FILENO = "emulator.connection_fileno"
_DELAY_CHECK_S = 0.25

# The Azure ML scope prefix, so one rule path (/api/2.0/mlflow/...) matches on both workspaces.
_AZURE_SCOPE = re.compile(
    r"^/mlflow/v[12]\.0/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/[^/]+(?=/|$)", re.IGNORECASE)

# fidelity: Fault injection
DATABRICKS_CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                    404: "RESOURCE_DOES_NOT_EXIST", 408: "REQUEST_TIMEOUT", 409: "RESOURCE_CONFLICT",
                    429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 502: "BAD_GATEWAY",
                    503: "TEMPORARILY_UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
# Unity Catalog answers Databricks' shape with the platform's newer codes where it has them (the
# databricks-sdk's error mapping: ALREADY_EXISTS, RESOURCE_EXHAUSTED, CANCELLED); 404 as the
# emulated UC answers it.
UC_CODES = {**DATABRICKS_CODES, 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
            501: "NOT_IMPLEMENTED"}
AZURE_CODES = {400: "BadRequest", 401: "AuthenticationFailed", 403: "AuthorizationFailed", 404: "NotFound",
               408: "RequestTimeout", 409: "Conflict", 429: "TooManyRequests", 500: "InternalServerError",
               502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout"}

_FIELDS = {"method", "path", "body", "skip", "times", "status", "error_code", "message", "retry_after",
           "delay_s", "drop", "after_commit", "hold_pending_s", "fail_registration", "shape"}
SHAPES = ("databricks", "uc", "azureml")


def _bad(message: str) -> EmulatorError:
    return EmulatorError("INVALID_PARAMETER_VALUE", message, 400)


@dataclass
class FaultRule:
    path: str
    method: str = "*"
    body: dict = field(default_factory=dict)
    skip: int = 0
    times: int | None = None
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    delay_s: float = 0.0
    drop: bool = False
    after_commit: str | None = None  # "status" | "drop"
    hold_pending_s: float | None = None
    fail_registration: str | None = None
    shape: str | None = None  # the error body's shape; None: the workspace's own for the route
    id: int = 0
    matched: int = 0  # calls that matched method, path and body (skipped ones included)
    hits: int = 0  # calls the effect was applied to
    conditions: tuple = field(default=(), repr=False, compare=False)  # body, compiled

    @classmethod
    def from_json(cls, data) -> FaultRule:
        """Validated: a bad rule is a 400 naming the problem, never a rule that silently never fires."""
        if not isinstance(data, dict):
            raise _bad("A fault rule must be a JSON object.")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:
            raise _bad(f"Unknown fault rule fields: {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))}).")
        path = data.get("path")
        if not isinstance(path, str) or not path:
            raise _bad("A fault rule needs 'path': a path or glob pattern, e.g. '/api/2.0/mlflow/model-versions/create'.")
        method = data.get("method", "*")
        if not isinstance(method, str) or not re.fullmatch(r"\*|[A-Za-z]+", method):
            raise _bad("'method' must be an HTTP method or '*'.")
        body = data.get("body") or {}
        if not isinstance(body, dict):
            raise _bad("'body' must be an object of field -> value to match.")
        try:
            conditions = fault_match.conditions(body)
        except fault_match.BadMatch as exc:
            raise _bad(str(exc)) from None

        def int_field(name, low, high, default=None):
            value = data.get(name, default)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(f"'{name}' must be an integer from {low} to {high}.")
            return value

        def seconds(name):
            value = data.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_DELAY_S:
                raise _bad(f"'{name}' must be a number of seconds from 0 to {MAX_DELAY_S:.0f}.")
            return float(value)

        rule = cls(
            path=path, method=method.upper(), body={str(k): v for k, v in body.items()},
            skip=int_field("skip", 0, 10**9, 0), times=int_field("times", 1, 10**9),
            status=int_field("status", 400, 599), retry_after=int_field("retry_after", 0, 86400),
            delay_s=seconds("delay_s") or 0.0, hold_pending_s=seconds("hold_pending_s"), conditions=conditions,
        )
        for name in ("error_code", "message", "fail_registration", "shape"):
            value = data.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise _bad(f"'{name}' must be a non-empty string.")
            setattr(rule, name, value)
        drop = data.get("drop", False)
        if not isinstance(drop, bool):
            raise _bad("'drop' must be true or false.")
        if rule.shape is not None and rule.shape not in SHAPES:
            raise _bad(f"'shape' must be one of {', '.join(SHAPES)} (default: the workspace's own).")
        rule.drop = drop
        after = data.get("after_commit")
        if after not in (None, "status", "drop"):
            raise _bad("'after_commit' must be \"status\" (answer an error after the write) or \"drop\".")
        rule.after_commit = after
        effects = [n for n in ("status", "drop", "after_commit", "hold_pending_s", "fail_registration")
                   if getattr(rule, n) not in (None, False)]
        if after == "status":  # its status is the answer that replaces the lost one
            effects = [e for e in effects if e != "status"]
            rule.status = rule.status or 503
        if len(effects) > 1:
            raise _bad(f"A fault rule has one effect; this one has {', '.join(effects)}.")
        if not effects and not rule.delay_s:
            raise _bad("A fault rule needs an effect: status, delay_s, drop, after_commit, hold_pending_s "
                       "or fail_registration.")
        if rule.retry_after is not None and rule.status is None:
            raise _bad("'retry_after' goes with 'status' (e.g. 429 or 503).")
        if rule.shape is not None and rule.status is None:
            raise _bad("'shape' goes with 'status' or 'after_commit': \"status\" (it shapes the error answer).")
        return rule

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclass_fields(self) if f.name != "conditions"}
        return {k: v for k, v in data.items() if v not in (None, {}) or k in ("times",)}

    def matches_route(self, method: str, paths: tuple[str, ...]) -> bool:
        return self.method in ("*", method) and any(fnmatch.fnmatchcase(p, self.path) for p in paths)

    def matches(self, method: str, paths: tuple[str, ...], fields: dict) -> bool:
        if not self.matches_route(method, paths):
            return False
        return fault_match.matches_all(self.conditions, fields)


class FaultRules:
    """The workspace's rules, in the order added; the first rule that matches and fires wins."""

    def __init__(self):
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = next(self._ids)
            self._rules.append(rule)
        return rule

    def list(self) -> list[dict]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def clear(self, rule_id: int | None = None) -> int:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if rule_id is not None and r.id != rule_id]
            return before - len(self._rules)

    def candidates(self, method: str, paths: tuple[str, ...]) -> list[FaultRule]:
        """Rules whose method and path match (no body check): most calls have none, and skip the rest."""
        return [r for r in list(self._rules) if r.matches_route(method, paths)]

    def take(self, method: str, paths: tuple[str, ...], fields: dict) -> FaultRule | None:
        """Count the call against every matching rule; return the one whose effect applies."""
        fired = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, paths, fields):
                    continue
                rule.matched += 1
                if fired is not None or rule.matched <= rule.skip:
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                rule.hits += 1
                fired = rule
        return fired


def token_check(app, config):
    """Whether a request carries a token this workspace accepts (the same test as the Flask auth hook)."""

    def authenticated(environ) -> bool:
        presented = auth.presented_token(Request(environ))
        if presented is None:
            return False
        role_check = app.config.get("EMULATOR_TOKEN_CHECK")
        if role_check is not None:
            return not role_check(presented)
        return auth.token_matches(presented, config.token)

    return authenticated


# fidelity: Fault injection
def error_answer(role: str, path: str, rule: FaultRule) -> Response:
    """The error body in the rule's shape, else the workspace's own for the route: MLflow's on MLflow
    paths (plus Azure's ``error`` object on Azure ML), ARM's ``{"error": {...}}`` on ARM paths."""
    status = rule.status or 503
    message = rule.message or f"Injected fault #{rule.id}: {status}"
    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
    azure_code = AZURE_CODES.get(status, "InternalServerError" if status >= 500 else "BadRequest")
    arm = {"error": {"code": rule.error_code or azure_code, "message": message, "details": []}}
    shape = rule.shape or ("databricks" if role != "azureml" else
                           "azureml" if path.lower().startswith("/subscriptions/") else "azureml-mlflow")
    if shape == "azureml":
        payload = arm
    else:
        codes = UC_CODES if shape == "uc" else DATABRICKS_CODES
        code = rule.error_code or codes.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        payload = {"error_code": code, "message": message}
        if shape == "azureml-mlflow":  # Azure ML's MLflow routes: MLflow's shape, Azure's object beside it
            payload["error"] = {"code": azure_code, "message": message}
    return Response(json.dumps(payload), status=status, mimetype="application/json", headers=headers)


def drop_connection(environ) -> bool:
    """Shut the client's TCP connection down, so it reads no answer at all (as when a proxy or the
    network drops it). WSGI servers don't hand out the socket, so find it by its two addresses."""
    peer = (environ.get("REMOTE_ADDR"), str(environ.get("REMOTE_PORT")))
    local_port = str(environ.get("SERVER_PORT"))
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return False
    for name in fds:
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.type != socket.SOCK_STREAM:
                continue
            try:
                remote, local = sock.getpeername(), sock.getsockname()
            except OSError:
                continue
            if (str(remote[0]), str(remote[1])) == peer and str(local[1]) == local_port:
                # Linger 0: the close that follows sends a reset, not an orderly end of stream.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.shutdown(socket.SHUT_RDWR)
                return True
        finally:
            sock.close()
    return False


# fidelity: Fault injection
def delay(environ, seconds: float) -> None:
    """Sleep ``seconds``, unless the client goes first: a client that gave up (the mirror's 30 s
    timeout, then its retry) must not leave a worker thread asleep for the rest of the delay."""
    deadline = time.monotonic() + seconds
    fileno = environ.get(CONNECTION_FILENO)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, _DELAY_CHECK_S))
        if fileno is not None and _peer_closed(fileno):
            _logger.info("fault delay ended early: the client has gone")
            return


def _peer_closed(fileno: int) -> bool:
    """Whether the client closed its side: its end of stream is the next thing to read."""
    try:
        sock = socket.socket(fileno=os.dup(fileno))
    except OSError:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # still connected, nothing sent
    except OSError:
        return True  # reset
    finally:
        sock.close()


def _route_paths(path: str) -> tuple[str, ...]:
    scoped = _AZURE_SCOPE.match(path)
    return (path, path[scoped.end():] or "/") if scoped else (path,)


def _request_fields(environ, method: str, want_body: bool) -> dict:
    """Query args and, for a small JSON object body, its fields, nested ones as they are (the body
    is put back for the route)."""
    fields = dict(Request(environ).args.items())
    if not want_body or method in ("GET", "HEAD"):
        return fields
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return fields
    if not 0 < length <= MAX_BODY_MATCH:
        return fields
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    try:
        parsed = json.loads(raw)
    except ValueError:
        return fields
    if isinstance(parsed, dict):
        fields.update(parsed)
    return fields


class FaultMiddleware:
    def __init__(self, wsgi_app, rules: FaultRules, authenticated, role: str):
        self.wsgi_app = wsgi_app
        self.rules = rules
        self.authenticated = authenticated
        self.role = role

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not self.rules or path.startswith(ADMIN_PREFIX):
            return self.wsgi_app(environ, start_response)
        method, paths = environ.get("REQUEST_METHOD", "GET").upper(), _route_paths(path)
        candidates = self.rules.candidates(method, paths)
        if not candidates or not self.authenticated(environ):
            return self.wsgi_app(environ, start_response)
        fields = _request_fields(environ, method, any(r.body for r in candidates))
        rule = self.rules.take(method, paths, fields)
        if rule is None:
            return self.wsgi_app(environ, start_response)
        environ[ENVIRON_RULE] = rule
        _logger.info("fault #%s on %s %s", rule.id, method, path)
        if rule.delay_s:
            delay(environ, rule.delay_s)
        if rule.after_commit:
            return self._after_commit(rule, environ, start_response)
        if rule.drop:
            return self._drop(environ, start_response)
        if rule.status:
            return error_answer(self.role, path, rule)(environ, start_response)
        return self.wsgi_app(environ, start_response)  # latency or a registration fault: proceed

    def _after_commit(self, rule, environ, start_response):
        # The server performs the call completely (its write is committed), then the answer is lost.
        def swallow(status, headers, exc_info=None):
            return lambda data: None

        result = self.wsgi_app(environ, swallow)
        try:
            for _ in result:
                pass
        finally:
            if hasattr(result, "close"):
                result.close()
        if rule.after_commit == "drop":
            return self._drop(environ, start_response)
        return error_answer(self.role, environ.get("PATH_INFO", ""), rule)(environ, start_response)

    def _drop(self, environ, start_response):
        if not drop_connection(environ):
            _logger.warning("fault: could not find the connection to drop; answering 502 instead")
            return error_answer(self.role, environ.get("PATH_INFO", ""), FaultRule(path="*", status=502))(
                environ, start_response)
        # The server's own attempt to answer goes nowhere: the connection is already shut.
        start_response("502 Bad Gateway", [("Content-Length", "0"), ("Connection", "close")])
        return [b""]
