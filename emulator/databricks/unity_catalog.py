"""The Unity Catalog registry (``databricks-uc``, MLflow 3's default for tracking URI "databricks").

Not emulated yet. A name without three levels gets the real service's answer (400
INVALID_PARAMETER_VALUE "Bad model name..."); anything else a clear 501 pointing at the workspace
registry, which the seed uses.
"""

from __future__ import annotations

from flask import Flask, request

from emulator.errors import error_response

PREFIX = "/api/2.0/mlflow/unity-catalog/"
BAD_NAME = (
    "Bad model name: please specify all three levels of the model in the form "
    "`catalog_name.schema_name.model_name`"
)


def install(app: Flask) -> None:
    @app.before_request
    def _unity_catalog():
        if not request.path.startswith(PREFIX):
            return None
        body = request.get_json(force=True, silent=True) if request.method != "GET" else None
        name = (body or {}).get("name") if isinstance(body, dict) else None
        name = name or request.args.get("name")
        if isinstance(name, str) and len(name.split(".")) != 3:
            return error_response("INVALID_PARAMETER_VALUE", BAD_NAME, 400)
        return error_response(
            "NOT_IMPLEMENTED",
            f"The Databricks emulator does not implement the Unity Catalog model registry "
            f"({request.method} {request.path}). Use the workspace model registry: "
            f'mlflow.set_registry_uri("databricks").',
            501,
        )
