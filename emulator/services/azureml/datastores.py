"""The workspace's default datastore, ``workspaceblobstore``: ARM ``.../workspaces/<ws>/datastores``.

azure-ai-ml uploads a local ``Model(path=...)`` (and code, data, environments) to the default
datastore before it registers the asset (``_artifacts/_artifact_utilities.py``): it lists
``datastores?isDefault=true`` (or gets one by name), asks ``POST .../datastores/<n>/listSecrets``
with ``{"expirableSecret": true, "expireAfterHours": 1}`` and writes with azure-storage-blob to
``https://<accountName>.blob.<storage suffix>/<containerName>/LocalUpload/<hash>/<dir>/...``.
The asset then points at ``azureml://subscriptions/../workspaces/<ws>/datastores/workspaceblobstore/paths/<path>``.

Here the datastore's container is served by the workspace's blob plane (blob_service.py) over
``<artifact root>/datastores/workspaceblobstore/``: inside MLflow's artifact root, so a model
version registered from it has an ordinary ``mlflow-artifacts:/`` source that MLflow, the model
asset routes and online deployments read like any other. One datastore, read-only over ARM.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.services.azureml import arm_paging, discovery, hosts
from emulator.services.azureml.arm_resources import PROVIDER, ArmError, arm_route, system_data, workspace_id
from emulator.services.blob import sas as blob_sas
from emulator.settings import ServerConfig

DEFAULT = "workspaceblobstore"
FOLDER = "datastores"  # under the artifact root: mlflow-artifacts:/datastores/<name>/<path>
_CREATED = "2024-01-01T00:00:00Z"  # the workspace's creation time (discovery.py)
MAX_SAS_HOURS = 24


def container_name(config: ServerConfig) -> str:
    # fidelity: Azure ML datastores -- the default datastore
    return f"azureml-blobstore-{discovery.workspace_id(config)}"


def artifact_root(config: ServerConfig) -> Path:
    return Path(config.state_dir) / "artifacts"


def root(config: ServerConfig, name: str = DEFAULT) -> Path:
    return artifact_root(config) / FOLDER / name


def source_of(name: str, path: str) -> str:
    """The MLflow source of datastore path ``path`` (no leading slash)."""
    return f"mlflow-artifacts:/{FOLDER}/{name}/{path}"


_SOURCE = re.compile(rf"^mlflow-artifacts:/{FOLDER}/(?P<name>[^/]+)/(?P<path>.+)$")


def uri_of_source(config: ServerConfig, source: str) -> str | None:
    """``azureml://subscriptions/.../datastores/<name>/paths/<path>`` for a source made by source_of."""
    m = _SOURCE.match(source or "")
    if not m:
        return None
    return (f"azureml://subscriptions/{config.subscription_id}/resourcegroups/{config.resource_group}"
            f"/workspaces/{config.workspace_name}/datastores/{m['name']}/paths/{m['path']}")


def get(name: str) -> None:
    if name != DEFAULT:
        # fidelity: Azure ML datastores -- refusals
        raise ArmError("UserError", f"Could not find datastore: {name}.", 404)


def resource(config: ServerConfig) -> dict:
    return {
        "id": f"{workspace_id(config)}/datastores/{DEFAULT}",
        "name": DEFAULT,
        "type": f"{PROVIDER}/workspaces/datastores",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "isDefault": True,
            "credentials": {"credentialsType": "AccountKey"},
            "datastoreType": "AzureBlob",
            "accountName": hosts.storage_account(config),
            "containerName": container_name(config),
            "endpoint": "core.windows.net",
            "protocol": "https",
            "serviceDataAccessAuthIdentity": "None",
            "subscriptionId": config.subscription_id,
            "resourceGroup": config.resource_group,
        },
        "systemData": system_data(_CREATED),
    }


def _sas_hours(body: dict) -> int:
    raw = body.get("expireAfterHours", 1)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_SAS_HOURS:
        raise ArmError("UserError", f"expireAfterHours must be an integer from 1 to {MAX_SAS_HOURS}, got {raw!r}.", 400)
    return raw


def install(app: Flask, config: ServerConfig) -> None:
    def read_only():
        raise ArmError("MethodNotAllowed",
                       f"{request.method} on datastores is not supported by the emulator: the workspace has one "
                       f"datastore, '{DEFAULT}' (its default), which cannot be changed or removed.", 405)

    @arm_route(app, config, "/datastores", ["GET"])
    def list_datastores():
        values = [resource(config)]
        default = request.args.get("isDefault")
        names = [n for n in (request.args.get("names") or "").split(",") if n]
        return jsonify(arm_paging.page(values, where=lambda d: (
            default in (None, "true", "True") or not d["properties"]["isDefault"])
            and (not names or d["name"] in names)))

    @arm_route(app, config, "/datastores/<name>", ["GET", "PUT", "DELETE"])
    def datastore(name):
        if request.method != "GET":
            read_only()
        get(name)
        return jsonify(resource(config))

    @arm_route(app, config, "/datastores/<name>/listSecrets", ["POST"])
    def list_secrets(name):
        get(name)
        body = request.get_json(force=True, silent=True)
        body = body if isinstance(body, dict) else {}
        # fidelity: Azure ML datastores -- secrets
        # An expirable container SAS, whatever expirableSecret says: the emulator hands out no
        # long-lived account key (azure-ai-ml >= 1.18 asks for expirable secrets and takes either).
        query = blob_sas.sign_container(config.token, hosts.storage_account(config), container_name(config),
                                        blob_sas.CONTAINER_ALL, ttl=_sas_hours(body) * 3600)
        return jsonify({"secretsType": "Sas", "sasToken": query})
