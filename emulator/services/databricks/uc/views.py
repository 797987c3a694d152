"""Request parsing and the JSON shapes of UC's registry messages (databricks_uc_registry_messages.proto)."""

from __future__ import annotations

from flask import jsonify, request

from emulator.errors import EmulatorError
from emulator.services.databricks.uc.store import full_model_name

PREFIX = "/api/2.0/mlflow/unity-catalog"


def params() -> dict:
    """GET sends the message as query parameters, the other verbs as a JSON body (MLflow's call_endpoint)."""
    if request.method == "GET":
        return request.args.to_dict()
    body = request.get_json(force=True, silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise EmulatorError("MALFORMED_REQUEST", "The request body must be a JSON object.", 400)
    return body


def required(data: dict, key: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Missing required parameter '{key}'.", 400)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Parameter '{key}' must be a string.", 400)
    return str(value)


def optional_str(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Parameter '{key}' must be a string.", 400)
    return value


def tag_list(data: dict, key: str = "tags") -> list[tuple[str, str]]:
    tags = data.get(key) or []
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str) for t in tags):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"'{key}' must be a list of {{key, value}} objects.", 400)
    return [(t["key"], str(t.get("value", ""))) for t in tags]


def ok(payload: dict | None = None):
    return jsonify(payload or {})


def model_json(db, model, full: bool = True) -> dict:
    out = {
        "name": full_model_name(model),
        "creation_timestamp": model["created"],
        "last_updated_timestamp": model["updated"],
        "user_id": model["user_id"],
        "description": model["description"] or "",
    }
    if full:
        out["aliases"] = [{"alias": r["alias"], "version": str(r["version"])} for r in
                          db.execute("SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias", (model["id"],))]
        out["tags"] = [{"key": r["key"], "value": r["value"]} for r in
                       db.execute("SELECT key, value FROM model_tags WHERE model = ? ORDER BY key", (model["id"],))]
    return out


def version_json(db, model, version, full: bool = True) -> dict:
    out = {
        "name": full_model_name(model),
        "version": str(version["version"]),
        "creation_timestamp": version["created"],
        "last_updated_timestamp": version["updated"],
        "user_id": version["user_id"],
        "description": version["description"] or "",
        "source": version["source"] or "",
        "run_id": version["run_id"] or "",
        "status": version["status"],
        "storage_location": version["storage_location"],
    }
    if version["logged_model_id"]:
        out["model_id"] = version["logged_model_id"]
    if version["run_tracking_server_id"]:
        out["run_tracking_server_id"] = version["run_tracking_server_id"]
    if version["status_message"]:
        out["status_message"] = version["status_message"]
    if full:
        out["aliases"] = [{"alias": r["alias"], "version": str(r["version"])} for r in db.execute(
            "SELECT alias, version FROM aliases WHERE model = ? AND version = ? ORDER BY alias",
            (model["id"], version["version"]))]
        out["tags"] = [{"key": r["key"], "value": r["value"]} for r in db.execute(
            "SELECT key, value FROM version_tags WHERE model = ? AND version = ? ORDER BY key",
            (model["id"], version["version"]))]
    return out


def page(items: list, data: dict, default_max: int = 100) -> tuple[list, str | None]:
    """Offset paging with an opaque-enough token (the offset as a string)."""
    try:
        max_results = int(data.get("max_results") or default_max)
        offset = int(data.get("page_token") or 0)
    except (TypeError, ValueError):
        raise EmulatorError("INVALID_PARAMETER_VALUE", "Invalid 'max_results' or 'page_token'.", 400) from None
    if max_results < 1 or offset < 0:
        raise EmulatorError("INVALID_PARAMETER_VALUE", "'max_results' must be positive.", 400)
    max_results = min(max_results, 1000)  # larger asks (the client's default is 200,000) get pages of 1,000
    chunk = items[offset:offset + max_results]
    token = str(offset + max_results) if offset + max_results < len(items) else None
    return chunk, token
