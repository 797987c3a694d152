"""Model assets = the MLflow registry: ARM ``.../workspaces/<ws>/models[/<name>[/versions[/<v>]]]``.

In Azure ML a model registered through MLflow *is* a workspace model asset (type
``mlflow_model``): the studio lists it, ``ml_client.models.get(name, version)`` returns it and
``azureml:<name>:<version>`` in a deployment resolves to it. Here those ARM routes read MLflow's
registry store directly, so there is nothing to keep in sync. Registering goes through MLflow
(``model-versions/create``) or, for a folder azure-ai-ml uploaded to the default datastore, ARM
PUT on a version (model_registration.py); other PUT/PATCH/DELETE answer 405 saying so.
"""

from __future__ import annotations

import logging

import yaml
from flask import Flask, jsonify, request

from emulator.services.azureml import (
    arm_paging,
    datastores,
    model_registration,
    run_guids,
)
from emulator.services.azureml.arm_resources import (
    PROVIDER,
    ArmError,
    arm_route,
    iso,
    json_body,
    system_data,
    workspace_id,
)
from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)

MODEL_TYPE = "mlflow_model"


def _registry():
    from mlflow.server.handlers import _get_model_registry_store

    return _get_model_registry_store()


def _not_found(what: str) -> ArmError:
    return ArmError("ResourceNotFound", f"{what} was not found in this workspace's model registry.", 404)


def get_registered_model(name: str):
    from mlflow.exceptions import MlflowException

    try:
        model = _registry().get_registered_model(name)
    except MlflowException:
        raise _not_found(f"Model container '{name}'") from None
    if model._is_prompt():  # prompts share MLflow's registry tables but are not model assets
        raise _not_found(f"Model container '{name}'")
    return model


def get_model_version(name: str, version: str):
    from mlflow.exceptions import MlflowException

    get_registered_model(name)
    try:
        return _registry().get_model_version(name, str(version))
    except MlflowException:
        raise _not_found(f"Model version '{name}:{version}'") from None


def _versions(name: str) -> list:
    found = _registry().search_model_versions(f"name = '{_quote(name)}'", max_results=10_000)
    return sorted(found, key=lambda mv: int(mv.version))


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def container(config: ServerConfig, model) -> dict:
    versions = [int(v.version) for v in _versions(model.name)]
    latest = max(versions) if versions else 0
    return {
        "id": f"{workspace_id(config)}/models/{model.name}",
        "name": model.name,
        "type": f"{PROVIDER}/workspaces/models",
        "properties": {
            "description": model.description or None,
            "tags": dict(model.tags or {}),
            "properties": {},
            "isArchived": False,
            "latestVersion": str(latest) if latest else None,
            "nextVersion": str(latest + 1),
            "provisioningState": "Succeeded",
        },
        "systemData": system_data(iso(model.creation_timestamp), iso(model.last_updated_timestamp)),
    }


def _flavors(mv) -> dict:
    """The MLmodel's flavors as ARM's FlavorData ({"data": {str: str}}); {} if unreadable."""
    try:
        from urllib.parse import urlparse

        from mlflow.server.handlers import _get_artifact_repo_mlflow_artifacts

        location = _registry().get_model_version_download_uri(mv.name, mv.version)
        if not location.startswith("mlflow-artifacts:"):
            return {}
        rel = urlparse(location).path.strip("/")
        repo = _get_artifact_repo_mlflow_artifacts()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = repo.download_artifacts(f"{rel}/MLmodel", tmp)
            with open(path) as fh:
                mlmodel = yaml.safe_load(fh) or {}
        return {name: {"data": {k: str(v) for k, v in (conf or {}).items() if not isinstance(v, (dict, list))}}
                for name, conf in (mlmodel.get("flavors") or {}).items()}
    except Exception:  # a version whose files are unreadable is still listed
        _logger.debug("no flavors for %s v%s", mv.name, mv.version, exc_info=True)
        return {}


def _client_source(config: ServerConfig, source: str | None) -> str | None:
    from mlflow.server.handlers import _get_tracking_store

    from emulator.services.azureml.experiment_guids import from_store
    from emulator.services.azureml.experiment_id_view import (
        external_run_uri,
        external_uri,
    )

    # fidelity: Azure ML experiment ids -- the source names the experiment's and the run's GUIDs
    return external_run_uri(external_uri(source, from_store(config.scope, _get_tracking_store()))) if source else source


def version_resource(config: ServerConfig, mv, with_flavors: bool = True) -> dict:
    status = str(mv.status)
    state = {"READY": "Succeeded", "FAILED_REGISTRATION": "Failed"}.get(status, "Creating")
    tags, properties, model_type, anonymous = model_registration.arm_fields(mv)
    # A version made from a datastore upload answers the azureml:// URI it was created with.
    model_uri = datastores.uri_of_source(config, mv.source) or f"models:/{mv.name}/{mv.version}"
    # fidelity: Model assets = registry
    return {
        "id": f"{workspace_id(config)}/models/{mv.name}/versions/{mv.version}",
        "name": str(mv.version),
        "type": f"{PROVIDER}/workspaces/models/versions",
        "properties": {
            "description": mv.description or None,
            "tags": tags,
            "properties": {**properties, **{k: v for k, v in (("mlflow.source", _client_source(config, mv.source)),
                                                              ("mlflow.runId", run_guids.external(mv.run_id))) if v}},
            "isArchived": False,
            "isAnonymous": anonymous,
            "flavors": _flavors(mv) if with_flavors else {},
            "modelType": model_type or MODEL_TYPE,
            "modelUri": model_uri,
            # fidelity: Azure ML experiment ids -- run ids: an interactive run's job name is its GUID
            "jobName": run_guids.external(mv.run_id) or None,
            "stage": mv.current_stage or None,
            "provisioningState": state,
        },
        "systemData": system_data(iso(mv.creation_timestamp), iso(mv.last_updated_timestamp)),
    }


def _listed():
    """The listViewType filter (azure-ai-ml sends ActiveOnly by default); nothing here is ever archived."""
    view = (request.args.get("listViewType") or "ActiveOnly").lower()
    if view not in ("activeonly", "archivedonly", "all"):
        raise ArmError("BadArgument", f"Invalid listViewType '{request.args['listViewType']}': use ActiveOnly, "
                       "ArchivedOnly or All.", 400)
    return lambda resource: view != "archivedonly" or resource["properties"]["isArchived"]


def install(app: Flask, config: ServerConfig) -> None:
    def read_only():
        raise ArmError("MethodNotAllowed",
                       f"{request.method} on model assets is not supported by the emulator: models are "
                       "registered through MLflow (mlflow.register_model / log_model(..., "
                       "registered_model_name=...)) and appear here as model assets.", 405)

    @arm_route(app, config, "/models", ["GET"])
    def list_models():
        models = [m for m in _registry().search_registered_models(max_results=1000) if not m._is_prompt()]
        return jsonify(arm_paging.page([container(config, m) for m in models], where=_listed()))

    @arm_route(app, config, "/models/<name>", ["GET", "PUT", "PATCH", "DELETE"])
    def model_container(name):
        if request.method != "GET":
            read_only()
        return jsonify(container(config, get_registered_model(name)))

    @arm_route(app, config, "/models/<name>/versions", ["GET"])
    def list_versions(name):
        get_registered_model(name)
        values = [version_resource(config, mv, with_flavors=False) for mv in _versions(name)]
        version, listed = request.args.get("version"), _listed()
        return jsonify(arm_paging.page(values, where=lambda v: listed(v) and version in (None, v["name"])))

    @arm_route(app, config, "/models/<name>/versions/<version>", ["GET", "PUT", "PATCH", "DELETE"])
    def model_version(name, version):
        if request.method == "PUT":
            mv, created = model_registration.put_version(config, _registry(), name, version, json_body())
            return jsonify(version_resource(config, mv)), 201 if created else 200
        if request.method != "GET":
            read_only()
        return jsonify(version_resource(config, get_model_version(name, version)))
