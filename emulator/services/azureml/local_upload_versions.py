"""Model versions whose source is a local-folder upload (``azureml://artifacts/LocalUpload/...``).

After uploading the folder (local_uploads.py), azureml-mlflow sends ``model-versions/create`` with
``source=azureml://artifacts/LocalUpload/<container>/<folder>`` and no ``run_id``; artifact_views.py
has rewritten it to ``mlflow-artifacts:/LocalUpload/<container>/<folder>``. MLflow's own handler
accepts an ``mlflow-artifacts:`` source only inside the artifacts of the request's run
(``_validate_source_run``), so such a create would be refused. Azure ML registers it: here the
source is checked instead (a container folder of this workspace holding an ``MLmodel``, no
escaping segments, no ``run_id``) and the version is created in the registry store directly;
anything else goes on to MLflow's handler unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.stores.safe_paths import split_segments

_SOURCE = re.compile(r"^mlflow-artifacts:/(?P<rel>LocalUpload/.*)$")


def upload_folder(source: str, artifact_root: Path) -> Path | None:
    """The uploaded folder a LocalUpload source names (None: not such a source); 400 if unusable."""
    match = _SOURCE.match(source)
    if match is None:
        return None
    try:
        segments = split_segments(match["rel"].rstrip("/"), source)
    except EmulatorError:
        segments = []
    folder = artifact_root.joinpath(*segments) if len(segments) >= 3 else None
    if folder is None or not folder.resolve().is_relative_to(artifact_root.resolve()):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid model version source: '{source}': "
                            "expected azureml://artifacts/LocalUpload/<container>/<path>.", 400)
    if not (folder / "MLmodel").is_file():
        # fidelity: Azure ML local uploads -- registering a location with no uploaded model
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Model version source '{source}' has no uploaded "
                            "model: no MLmodel file was uploaded to that location.", 404)
    return folder


def install(app, artifact_root: Path) -> None:
    """Wrap MLflow's model-versions/create view (every prefix shares one view function)."""
    from flask import request
    from mlflow.entities.model_registry import ModelVersionTag
    from mlflow.exceptions import MlflowException
    from mlflow.protos.model_registry_pb2 import CreateModelVersion
    from mlflow.server.handlers import _get_model_registry_store, _wrap_response

    def wrap(original):
        def create_from_upload(*args, **kwargs):
            body = request.get_json(force=True, silent=True)
            source = body.get("source") if isinstance(body, dict) else None
            if not isinstance(source, str) or upload_folder(source, artifact_root) is None:
                return original(*args, **kwargs)
            if body.get("run_id") or body.get("model_id"):
                # The plugin itself refuses a run_id with a file:// source (ValueError, before sending).
                raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid model version source: '{source}': "
                                    "a local upload belongs to no run or logged model; send no run_id/model_id.", 400)
            name = body.get("name")
            tags = body.get("tags") or []
            if not isinstance(name, str) or not name or not isinstance(tags, list) or not all(
                    isinstance(t, dict) and isinstance(t.get("key"), str) for t in tags):
                raise EmulatorError("INVALID_PARAMETER_VALUE", "Expected a model name (string) and tags as "
                                    '[{"key": ..., "value": ...}].', 400)
            try:
                version = _get_model_registry_store().create_model_version(
                    name=name, source=source, run_id=None,
                    tags=[ModelVersionTag(t["key"], str(t.get("value", ""))) for t in tags],
                    run_link=body.get("run_link") if isinstance(body.get("run_link"), str) else None,
                    description=body.get("description") if isinstance(body.get("description"), str) else None)
            except MlflowException as exc:  # e.g. the registered model does not exist: MLflow's answer
                raise EmulatorError(exc.error_code, exc.message, exc.get_http_status_code()) from None
            # fidelity: Azure ML local uploads -- the version is registered from the uploaded folder
            return _wrap_response(CreateModelVersion.Response(model_version=version.to_proto()))

        return create_from_upload

    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.rule.endswith("/mlflow/model-versions/create")}
    for endpoint in endpoints:
        app.view_functions[endpoint] = wrap(app.view_functions[endpoint])
