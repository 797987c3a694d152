"""Shared plumbing for the workspace's ARM child resources (models, online endpoints).

Routes are registered under the workspace's ARM id; the checks every ARM call gets (``api-version``
present and well formed, the ids naming this workspace) answer ARM's error shape. Flask prefers
these routes to discovery's catch-all ``/subscriptions/<path>``: they have more static parts.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from flask import Flask, request

from emulator.services.azureml.azure_errors import arm_error
from emulator.services.azureml.scope import scope_problem
from emulator.settings import ServerConfig

PROVIDER = "Microsoft.MachineLearningServices"
WORKSPACE_RULE = ("/subscriptions/<sub>/resourceGroups/<rg>/providers/"
                  "Microsoft.MachineLearningServices/workspaces/<ws>")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


class ArmError(Exception):
    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def iso(ms: int | float | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def system_data(created: str, modified: str | None = None, user: str = "someone@example.com") -> dict:
    return {"createdAt": created, "createdBy": user, "createdByType": "User",
            "lastModifiedAt": modified or created, "lastModifiedBy": user, "lastModifiedByType": "User"}


def check(config: ServerConfig, sub: str, rg: str, ws: str):
    """None if the call may proceed, else the ARM error answer."""
    api_version = request.args.get("api-version")
    if not api_version:
        return arm_error("MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all requests.", 400)
    if not _API_VERSION.match(api_version):
        return arm_error("InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid.", 400)
    problem = scope_problem(config, sub, rg, ws)
    if problem:
        return arm_error(problem[0], problem[1], 404)
    return None


def workspace_id(config: ServerConfig) -> str:
    return f"/{config.scope}"


def json_body() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ArmError("BadRequest", "The request body must be a JSON object.", 400)
    return body


def arm_route(app: Flask, config: ServerConfig, suffix: str, methods: list[str]):
    """Decorator: an ARM route under this workspace; the view gets the rest of the rule's args."""

    def decorator(view):
        def handler(sub, rg, ws, **kwargs):
            answer = check(config, sub, rg, ws)
            if answer is not None:
                return answer
            try:
                return view(**kwargs)
            except ArmError as exc:
                return arm_error(exc.code, exc.message, exc.status)

        handler.__name__ = f"arm_{view.__name__}"
        app.add_url_rule(WORKSPACE_RULE + suffix, endpoint=handler.__name__, view_func=handler, methods=methods)
        return view

    return decorator


def new_id() -> str:
    return str(uuid.uuid4())
