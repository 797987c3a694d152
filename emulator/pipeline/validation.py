"""Bad-input checks in front of MLflow's handlers, shared by both workspaces.

MLflow's server already rejects most bad requests with 400 INVALID_PARAMETER_VALUE; these cover
what it does not (it would answer a 500, or silently store something else): bodies that are not
JSON objects, list items that are not objects, integers that do not fit the store's 64-bit
columns, deeply nested or oversized bodies, unknown enum values. Values over MLflow's length
limits (param value 6000, tag value 8000) are rejected instead of silently truncated
(MLFLOW_TRUNCATE_LONG_VALUES=false in install()), as both real services do. On a PostgreSQL store
(emulator.stores.postgres) a string holding NUL (U+0000) is a 400 too: PostgreSQL text cannot hold
one, and MLflow's store would answer the driver's ValueError with a 500.
"""

from __future__ import annotations

import json
import math
import os

from flask import Flask, current_app, request

from emulator.errors import EmulatorError
from emulator.pipeline.body_limits import MAX_JSON_BODY, too_large

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 64
# Top-level repeated fields whose items are messages (objects) in MLflow's protos.
MESSAGE_LISTS = ("metrics", "params", "tags", "datasets", "models")
ID_FIELDS = ("experiment_id", "experiment_ids")
# Enum fields MLflow's handlers let through unparsed (the run then silently keeps its old value).
ENUMS = {
    "status": ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"),
    "run_view_type": ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"),
    "view_type": ("ACTIVE_ONLY", "DELETED_ONLY", "ALL"),
}
_ENUM_PATHS = ("/mlflow/runs/", "/mlflow/experiments/")
# Integer fields MLflow's handlers check with int() (``_assert_intlike``), which raises TypeError, a
# 500, for a list or an object (and, for max_results, null) instead of the 400 the check means.
INT_FIELDS = ("max_results", "timestamp", "step", "start_time", "end_time")
_API_PREFIXES = ("/api/", "/ajax-api/", "/graphql")
# Bodies that are files, whatever their Content-Type (a JSON artifact is not an API call): uploads.
_RAW_BODY_PREFIXES = ("/api/2.0/mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow/upload-artifact", "/api/2.0/fs/files/")
_UPLOADS = ("PUT", "POST")


def _bad(message: str) -> EmulatorError:
    return EmulatorError("INVALID_PARAMETER_VALUE", message, 400)


def _check_ids(name: str, value) -> None:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item.strip().lstrip("-").isdigit():
            if not INT64_MIN <= int(item) <= INT64_MAX:
                raise _bad(f"Invalid value {item!r} for parameter '{name}': out of range.")


NUL_FREE = "EMULATOR_TEXT_WITHOUT_NUL"  # app.config: the store cannot hold U+0000 in text


def _no_nul(path: str, value: str) -> None:
    # fidelity: Scaling out: PostgreSQL stores
    if "\x00" in value:
        raise _bad(f"Invalid value for parameter '{path or 'body'}': text cannot contain NUL (\\u0000) "
                   "characters (this workspace's store is PostgreSQL).")


def _path(entry) -> str:
    """The dotted path of a _walk entry, built only for an error message."""
    parts = []
    while entry is not None and entry[1] is not None:
        parts.append(entry[2])
        entry = entry[1]
    path = ""
    for key in reversed(parts):
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    return path


def _walk(body, nul_free: bool = False) -> None:
    """Iteratively (deep bodies must not blow the stack): integer ranges and nesting depth (and,
    with ``nul_free``, NUL characters in keys and strings). Entries are (value, parent, key,
    depth); paths are built only for an error (a 1,000-point log-batch has ~6,000 values)."""
    stack = [(body, None, None, 0)]
    while stack:
        entry = stack.pop()
        value, _, _, depth = entry
        if depth > MAX_DEPTH:
            raise _bad(f"The request body is nested more than {MAX_DEPTH} levels deep.")
        if isinstance(value, float) and math.isinf(value):
            # fidelity: Bad input  (a bare Infinity, or a number past double's range such as 1e309)
            # protobuf's JSON parser refuses both; MLflow's handlers would store 0 or the max double.
            raise _bad(f"Invalid value for parameter '{_path(entry) or 'body'}': couldn't parse Infinity or "
                       'value too large, use quoted "Infinity" instead.')
        if value is None or isinstance(value, (bool, float)):
            continue
        if isinstance(value, str):
            if nul_free and "\x00" in value:
                _no_nul(_path(entry), value)
            continue
        if isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise _bad(f"Invalid value {value} for parameter '{_path(entry) or 'body'}': it does not fit "
                           "in a 64-bit integer.")
        elif isinstance(value, dict):
            if nul_free:
                for key in value:
                    if "\x00" in str(key):
                        path = _path(entry)
                        _no_nul(f"{path}.{key}" if path else str(key), str(key))
            stack.extend((v, entry, k, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, entry, i, depth + 1) for i, v in enumerate(value))


_NON_FINITE = {"nan": "NaN"}


def _non_finite_as_strings(value):
    """``value`` with every NaN float (a bare JSON token, which Python's parser accepts) replaced
    by protobuf's JSON spelling; the same object when there is none. Called after _walk(), so the
    depth is bounded and no infinity is left."""
    if isinstance(value, float) and not math.isfinite(value):
        return _NON_FINITE[repr(value)]
    if isinstance(value, dict):
        items = {k: _non_finite_as_strings(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if isinstance(value, list):
        items = [_non_finite_as_strings(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    return value


def parse_body() -> dict | None:
    # Capped by emulator.pipeline.body_limits; a chunked body is read at most one byte past the cap.
    raw = request.get_data(cache=True)
    if len(raw) > MAX_JSON_BODY:
        raise too_large(MAX_JSON_BODY)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
        if isinstance(body, str):  # MLflow accepts double-encoded JSON from old clients
            body = json.loads(body)
    except (ValueError, RecursionError) as exc:
        message = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
        raise _bad(f"Malformed JSON request body: {message}") from None
    if not isinstance(body, dict):
        raise _bad(f"The request body must be a JSON object, got {type(body).__name__}.")
    return body


def check_request() -> None:
    """before_request hook (after the token check)."""
    path = request.path
    if not path.startswith(_API_PREFIXES) or (path.startswith(_RAW_BODY_PREFIXES) and request.method in _UPLOADS):
        return
    for name in ID_FIELDS:
        if name in request.args:
            _check_ids(name, request.args.getlist(name))
    nul_free = current_app.config.get(NUL_FREE, False)
    if nul_free:
        for name, value in request.args.items(multi=True):
            _no_nul(name, f"{name}{value}")
    # Every method: MLflow 3's handlers read a GET's JSON body too (a list there was a 500).
    if not request.is_json:
        return
    body = parse_body()
    if body is None:
        return
    _walk(body, nul_free)
    exact = _non_finite_as_strings(body)
    if exact is not body:
        # fidelity: NaN metrics
        # MLflow's handlers (protobuf's parser) store a bare NaN token as 0.0; the client itself
        # sends the string "NaN", which they store exactly. Same value, same result.
        body = exact
        request._cached_json = (body, body)
    for name in ID_FIELDS:
        if name in body:
            _check_ids(name, body[name])
    for name in INT_FIELDS if "/mlflow/" in path else ():
        value = body.get(name)
        if isinstance(value, (list, dict)) or (name == "max_results" and name in body and value is None):
            # fidelity: Bad input  (MLflow's own message for a value that is not an integer)
            raise _bad(f"Invalid value {json.dumps(value)} for parameter '{name}' supplied: Hint: Value was of "
                       f"type '{type(value).__name__}'. See the API docs for more information about request "
                       "parameters.")
    _check_route_fields(path, body)
    if any(p in path for p in _ENUM_PATHS):
        for name, allowed in ENUMS.items():
            value = body.get(name)
            numbered = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(allowed)
            if name in body and value not in allowed and not numbered:
                raise _bad(f"Invalid value {json.dumps(body[name])} for parameter '{name}': "
                           f"expected one of {', '.join(allowed)}.")
    for name in MESSAGE_LISTS:
        items = body.get(name)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise _bad(f"Invalid value {json.dumps(item)} for parameter '{name}[{i}]': "
                               "expected an object.")


def _required(name: str) -> EmulatorError:
    # MLflow's own wording (handlers._assert_required)
    return _bad(f"Missing value for required parameter '{name}'. See the API docs for more information about "
                "request parameters.")


def _check_route_fields(path: str, body: dict) -> None:
    """Fields a few of MLflow's handlers use unchecked (a TypeError, JSONDecodeError or int('') there
    was a 500): GraphQL's ``query``, a dataset's ``tags`` (a JSON object as a string), the
    ``experiment_id`` of a trace started through the v2 API."""
    # fidelity: Bad input
    if path == "/graphql" and not isinstance(body.get("query"), str):
        raise _bad("A GraphQL request needs a 'query' string.")
    if path.endswith("/tags") and "/mlflow/datasets/" in path and isinstance(body.get("tags"), str):
        try:
            tags = json.loads(body["tags"])
        except ValueError:
            tags = None
        if not isinstance(tags, dict):
            raise _bad("Invalid value for parameter 'tags': expected a JSON object encoded as a string.")
    if path.endswith("/2.0/mlflow/traces") and request.method == "POST" and not str(body.get("experiment_id") or ""):
        raise _required("experiment_id")


def install(app: Flask) -> None:
    """Register the checks (after the token check) for this server process."""
    # fidelity: Bad input
    # Over-long params/tags are a 400 on Databricks and Azure ML alike, not silently cut.
    os.environ["MLFLOW_TRUNCATE_LONG_VALUES"] = "false"
    scheme = os.environ.get("_MLFLOW_SERVER_FILE_STORE", "").split("://", 1)[0]  # [emulator-databricks:]postgresql+...
    app.config[NUL_FREE] = "postgresql" in scheme
    app.before_request(check_request)
