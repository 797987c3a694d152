"""ARM workspace discovery: what ``Workspace.get()`` asks Azure Resource Manager for.

``GET /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/
workspaces/<ws>?api-version=...`` answers the workspace resource, whose
``properties.mlFlowTrackingUri`` is ``azureml://<host:port>/mlflow/v2.0/<scope>``. Also the
list in a resource group and the service discovery document at ``properties.discoveryUrl``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

from emulator.services.azureml import hosts
from emulator.services.azureml.arm_cloud import subscription
from emulator.services.azureml.azure_errors import arm_error
from emulator.services.azureml.scope import scope_problem
from emulator.services.azureml.tokens import tenant_id
from emulator.settings import ServerConfig

PROVIDER = "Microsoft.MachineLearningServices"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_ARM = re.compile(
    r"^/?(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+)"
    r"(?P<coll>/providers/Microsoft\.MachineLearningServices/workspaces(?:/(?P<ws>[^/]+))?)?)?/?$",
    re.IGNORECASE,
)
# Fixed creation time per workspace: a real resource does not change it between calls.
_CREATED = datetime(2024, 1, 1, tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")


def workspace_id(config: ServerConfig) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-workspace:/{config.scope}".lower()))


def tracking_uri(config: ServerConfig, version: str = "v2.0", netloc: str | None = None) -> str:
    netloc = netloc or urlsplit(config.public_url).netloc
    return f"azureml://{netloc}/mlflow/{version}/{config.scope}"


def workspace_resource(config: ServerConfig, service_url: str | None = None) -> dict:
    """The workspace as ARM returns it (the fields azureml-core and the portal read).

    ``service_url``: where this caller reaches the workspace's services (hosts.service_url).
    """
    service_url = service_url or config.public_url
    rg_id = f"/subscriptions/{config.subscription_id}/resourceGroups/{config.resource_group}"
    short = re.sub(r"[^a-z0-9]", "", config.workspace_name.lower())[:12] or "ws"
    tid = tenant_id(config.subscription_id)
    return {
        "id": f"/{config.scope}",
        "name": config.workspace_name,
        "type": f"{PROVIDER}/workspaces",
        "location": config.location,
        "tags": {},
        "etag": None,
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-principal:{config.scope}")),
            "tenantId": tid,
        },
        "properties": {
            "friendlyName": config.workspace_name,
            "description": "Local Azure ML workspace emulator",
            "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/{hosts.storage_account(config)}",
            "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/{short}keyvault",
            "applicationInsights": f"{rg_id}/providers/Microsoft.insights/components/{short}insights",
            "containerRegistry": None,
            "hbiWorkspace": False,
            "provisioningState": "Succeeded",
            # fidelity: Azure ML real clients -- azureml://<tls netloc> for the plugin, https discovery
            "discoveryUrl": f"{service_url}/discovery",
            "mlFlowTrackingUri": tracking_uri(config, netloc=urlsplit(service_url).netloc),
            "workspaceId": workspace_id(config),
            "tenantId": tid,
            "creationTime": _CREATED,
            "publicNetworkAccess": "Enabled",
            "storageHnsEnabled": False,
            "v1LegacyMode": False,
        },
        "systemData": {
            "createdAt": _CREATED,
            "createdBy": "someone@example.com",
            "createdByType": "User",
            "lastModifiedAt": _CREATED,
            "lastModifiedBy": "someone@example.com",
            "lastModifiedByType": "User",
        },
    }


def resource_group(config: ServerConfig) -> dict:
    return {
        "id": f"/subscriptions/{config.subscription_id}/resourceGroups/{config.resource_group}",
        "name": config.resource_group,
        "type": "Microsoft.Resources/resourceGroups",
        "location": config.location,
        "properties": {"provisioningState": "Succeeded"},
    }


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR_PUBLIC_PREFIXES"].append("/discovery")

    @app.route("/discovery")
    def _discovery():
        # Every Azure ML data-plane service of the region lives at this one address here.
        base = hosts.service_url(config, request)
        return jsonify({name: base for name in (
            "api", "catalog", "experimentation", "gallery", "history", "hyperdrive",
            "labeling", "modelmanagement", "pipelines", "studio")})

    @app.route("/subscriptions/<path:arm_path>", methods=["GET", "PUT", "PATCH", "DELETE", "POST"])
    def _arm(arm_path: str):
        api_version = request.args.get("api-version")
        if not api_version:
            return arm_error(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.", 400)
        if not _API_VERSION.match(api_version):
            return arm_error(
                "InvalidApiVersionParameter",
                f"The api-version '{api_version}' is invalid. The supported versions are dates "
                "such as '2023-10-01' or '2024-04-01-preview'.", 400)
        match = _ARM.match(arm_path)
        if match is not None and match["rg"] is None and request.method == "GET":
            if match["sub"].lower() != config.subscription_id.lower():
                return arm_error("SubscriptionNotFound", f"The subscription '{match['sub']}' could not be found.", 404)
            return jsonify(subscription(config))
        if match is None or match["rg"] is None:
            return arm_error("InvalidResourceType",
                             f"The resource type for '/subscriptions/{arm_path}' is not served by "
                             "the Azure ML emulator.", 404)
        ws = match["ws"] or config.workspace_name  # a list call checks only sub and group
        problem = scope_problem(config, match["sub"], match["rg"], ws)
        if problem:
            code, message = problem
            if code == "ResourceNotFound":
                message += " For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            return arm_error(code, message, 404)
        if request.method != "GET":
            return arm_error("MethodNotAllowed",
                             f"The emulated workspace is read-only through ARM; {request.method} "
                             "is not supported.", 405)
        if match["coll"] is None:
            return jsonify(resource_group(config))
        resource = workspace_resource(config, hosts.service_url(config, request))
        if match["ws"] is None:
            return jsonify({"value": [resource]})
        return jsonify(resource)
