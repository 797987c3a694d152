"""What Azure ML's registry refuses on ``model-versions/create``, refused the way it does.

A stock MLflow server stores a model version from almost any source string. Azure ML sorts a
source into run/model based ones (``runs:/``, ``models:/``, the workspace's own artifact URIs)
and "from file" ones, which must name an upload of its artifact service:
``azureml://artifacts/<origin>/<container>/<artifact_prefix>`` (what azureml-mlflow turns a
``file://`` source into after uploading it, ``LocalUpload/<container>/<dir>``). Anything else,
including the placeholder source MLflow's ``register_prompt`` sends, is a 400 ``ValidationError``
in the service's own error body (``azure_errors.service_validation_error``).

Accepted here: ``runs:/`` and ``models:/`` (MLflow's handler and ``registry_sources`` judge what
they name), ``azureml://`` URIs (the plugin's view of run and logged-model artifacts, uploads,
datastores; an ``azureml://artifacts/`` one needs its three parts), the emulator's own store URIs
``mlflow-artifacts:/<path>`` (what it hands to vanilla clients as artifact locations), and
``dbfs:/`` (Databricks-tracked models, resolved through the mirror by ``registry_sources``).
"""

from __future__ import annotations

from urllib.parse import urlparse

from flask import Flask, request

from emulator.services.azureml.azure_errors import service_validation_error
from emulator.settings import ServerConfig

RUN_OR_MODEL_SCHEMES = ("runs", "models")
PASSED_ON_SCHEMES = ("dbfs",)  # Databricks-tracked sources: registry_sources resolves them
ARTIFACT_UPLOADS = "artifacts"  # azureml://artifacts/<origin>/<container>/<artifact_prefix>


def source_problem(source: str) -> str | None:
    """Azure ML's message refusing ``source``, or None when it takes it."""
    parsed = urlparse(source)
    scheme = parsed.scheme.lower()
    if scheme in RUN_OR_MODEL_SCHEMES or scheme in PASSED_ON_SCHEMES:
        return None
    if scheme == "mlflow-artifacts" and not parsed.netloc and source.startswith("mlflow-artifacts:/"):
        return None  # this workspace's own artifact store, as it hands it out
    if scheme == "azureml":
        if parsed.netloc.lower() != ARTIFACT_UPLOADS:
            return None
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) >= 3:
            return None
    # fidelity: Azure ML registration rules
    return ("Model source from file must be in the following format: "
            f"azureml://artifacts/<origin>/<container>/<artifact_prefix>. Provided model source: {source}")


def install(app: Flask, config: ServerConfig) -> None:
    """A before_request hook on every prefix's ``model-versions/create`` (after auth and validation)."""

    @app.before_request
    def _refuse_unsupported_sources():
        if request.method != "POST" or not request.path.endswith("/mlflow/model-versions/create"):
            return None
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("source"), str) or not body["source"]:
            return None  # MLflow's own 400s for a missing or mistyped source
        problem = source_problem(body["source"])
        if problem:
            return service_validation_error(problem, config.location)
        return None
