"""The workspace model registry's rule for model names, before MLflow's own handlers.

Databricks' workspace registry refuses a name holding '/', '.' or ':' with a message that points at
Unity Catalog: the usual cause is a three-level UC name (``catalog.schema.model``) sent to the
workspace registry (registry URI ``databricks`` instead of ``databricks-uc``). MLflow's own server
accepts '.' and words the '/' and ':' refusal differently, so the emulator answers first.
Unity Catalog's routes (``/mlflow/unity-catalog/...``) are not touched.
"""

from __future__ import annotations

from flask import Flask, request

from emulator.errors import EmulatorError

_PREFIXES = ("/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/", "/api/2.0/preview/mlflow/",
             "/ajax-api/2.0/preview/mlflow/")
_FAMILIES = ("registered-models/", "model-versions/")
_FORBIDDEN = "/.:"
# Which request fields name a model (the search routes take filters, not names).
_NAME_FIELDS = ("name", "new_name")


def invalid_name(name: str) -> EmulatorError:
    # fidelity: Databricks workspace (registry names) -- the text of databricks/mlops-stacks#135
    return EmulatorError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid name '{name}'. A workspace registered model name must be a non-empty UTF-8 string and "
        "cannot contain forward slashes(/), periods(.), or colons(:). If trying to access models in the "
        "Unity Catalog, make sure to install version 2.4.1 or above of the MLflow Python client, then "
        "configure the MLflow client to access models in Unity Catalog via "
        "mlflow.set_registry_uri('databricks-uc') before accessing models.",
        400,
    )


def _route(path: str) -> str | None:
    for prefix in _PREFIXES:
        if path.startswith(prefix):
            rest = path[len(prefix):]
            return rest if rest.startswith(_FAMILIES) else None
    return None


def check(values: dict) -> None:
    for field in _NAME_FIELDS:
        name = values.get(field)
        if isinstance(name, str) and any(c in name for c in _FORBIDDEN):
            raise invalid_name(name)


def install(app: Flask) -> None:
    @app.before_request
    def _workspace_registry_names():
        route = _route(request.path)
        if route is None or route.endswith("/search"):
            return None
        check(request.args)
        if request.method in ("POST", "PATCH", "DELETE"):
            body = request.get_json(force=True, silent=True)
            if isinstance(body, dict):
                check(body)
        return None
