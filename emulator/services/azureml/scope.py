"""The Azure ML scope prefix, stripped before Flask routes the request.

Azure ML serves MLflow under ``/mlflow/v1.0/<scope>/`` and ``/mlflow/v2.0/<scope>/`` where
``<scope>`` is the workspace's ARM id (``subscriptions/<sub>/resourceGroups/<rg>/providers/
Microsoft.MachineLearningServices/workspaces/<ws>``). The middleware moves that prefix from
PATH_INFO to SCRIPT_NAME, so MLflow's own routes (and the proxied-artifact routes that
``mlflow-artifacts:/`` URIs resolve to under the same prefix) answer unchanged. A prefix naming
another workspace is not served: it is marked on the environ and answered 404 after the token
check (an unauthenticated caller learns nothing about which workspaces exist).
"""

from __future__ import annotations

import re

from emulator.settings import ServerConfig

SCOPE_ERROR = "emulator.services.azureml.scope_error"

_PREFIX = re.compile(r"^/mlflow/v(?:1|2)\.0(?=/|$)")
_SCOPE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)(?=/|$)",
    re.IGNORECASE,  # ARM ids are case-insensitive
)


def scope_problem(config: ServerConfig, sub: str, rg: str, ws: str) -> tuple[str, str] | None:
    """(Azure error code, message) when the ids do not name this workspace, else None."""
    if sub.lower() != config.subscription_id.lower():
        return "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
    if rg.lower() != config.resource_group.lower():
        return "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
    if ws.lower() != config.workspace_name.lower():
        return (
            "ResourceNotFound",
            f"The Resource 'Microsoft.MachineLearningServices/workspaces/{ws}' under resource group "
            f"'{rg}' was not found.",
        )
    return None


class ScopePrefixMiddleware:
    def __init__(self, wsgi_app, config: ServerConfig):
        self.wsgi_app = wsgi_app
        self.config = config

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        version = _PREFIX.match(path)
        if version:
            rest = path[version.end():]
            scope = _SCOPE.match(rest)
            if scope is None:
                environ[SCOPE_ERROR] = (
                    "ResourceNotFound",
                    f"'{path}' does not name an Azure ML workspace: expected {version.group(0)}/"
                    "subscriptions/<sub>/resourceGroups/<rg>/providers/"
                    "Microsoft.MachineLearningServices/workspaces/<workspace>/...",
                )
            else:
                problem = scope_problem(self.config, scope["sub"], scope["rg"], scope["ws"])
                if problem:
                    environ[SCOPE_ERROR] = problem
                prefix = version.group(0) + rest[: scope.end()]
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = rest[scope.end():] or "/"
        return self.wsgi_app(environ, start_response)
