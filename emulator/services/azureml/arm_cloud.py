"""ARM's tenant-level answers that the real Azure clients ask before any workspace call.

* ``GET /metadata/endpoints?api-version=...`` (anonymous on the real service): the cloud's
  endpoints. With ``ARM_CLOUD_METADATA_URL`` pointing here, azureml-mlflow, azureml-core and
  azure-ai-ml take their resource manager from it (arrangement B: the emulator's HTTPS listener).
  Two clouds with the same endpoints: ``AzureCloud`` (what ``AZUREML_CURRENT_CLOUD`` names) and
  ``AzureMLEmulator`` (a custom name, for clients that use built-in endpoints for known names).
* ``GET /subscriptions?api-version=...`` (token required): ``Workspace.get`` lists subscriptions
  first; ``GET /subscriptions/<id>`` is answered by discovery.py.
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from emulator.services.azureml import entra, hosts
from emulator.services.azureml.azure_errors import arm_error
from emulator.services.azureml.tokens import tenant_id
from emulator.settings import ServerConfig

CLOUD_NAMES = ("AzureCloud", "AzureMLEmulator")
METADATA_PATH = "/metadata/endpoints"
# Before 2022-09-01 ARM answers one cloud object; from it on, a list of clouds.
_LIST_FROM = "2022-09-01"


def subscription(config: ServerConfig) -> dict:
    return {
        "id": f"/subscriptions/{config.subscription_id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": config.subscription_id,
        "tenantId": tenant_id(config.subscription_id),
        "displayName": "Azure ML emulator subscription",
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                 "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    }


def cloud(name: str, resource_manager: str, login: str = "https://login.microsoftonline.com") -> dict:
    return {
        "name": name,
        "portal": "https://portal.azure.com",
        "resourceManager": resource_manager,
        "authentication": {
            # fidelity: Azure ML real clients (the custom cloud logs in here: entra.py)
            "loginEndpoint": login,
            # fidelity: Azure ML real clients -- tokens for these audiences are accepted (tokens.py)
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "graph": "https://graph.windows.net/",
        "graphAudience": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "gallery": "https://gallery.azure.com/",
        "batch": "https://batch.core.windows.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "media": "https://rest.media.azure.net",
        "vmImageAliasDoc": "",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        "suffixes": {
            # The plugin downloads only blob URLs containing ".blob.<storage>/" (hosts.blob_base_url).
            "storage": "core.windows.net",
            "keyVaultDns": "vault.azure.net",
            "acrLoginServer": "azurecr.io",
            "sqlServerHostname": "database.windows.net",
            "storageSyncEndpointSuffix": "afs.azure.net",
            "mhsmDns": "managedhsm.azure.net",
            "mysqlServerEndpoint": "mysql.database.azure.com",
            "postgresqlServerEndpoint": "postgres.database.azure.com",
            "mariadbServerEndpoint": "mariadb.database.azure.com",
            "synapseAnalytics": "dev.azuresynapse.net",
            "attestationEndpoint": "attest.azure.net",
            "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
            "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
        },
    }


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR_PUBLIC_PREFIXES"].append(METADATA_PATH)  # anonymous on the real service

    @app.route(METADATA_PATH)
    def _metadata_endpoints():
        version = request.args.get("api-version", _LIST_FROM)
        manager = hosts.resource_manager_url(config, request)
        login = entra.login_base(config)
        clouds = [cloud(name, manager, login if name != "AzureCloud" else "https://login.microsoftonline.com")
                  for name in CLOUD_NAMES]
        return jsonify(clouds if version >= _LIST_FROM else clouds[0])

    @app.route("/subscriptions", methods=["GET"])
    def _subscriptions():
        if not request.args.get("api-version"):
            return arm_error("MissingApiVersionParameter",
                             "The api-version query parameter (?api-version=) is required for all requests.", 400)
        return jsonify({"value": [subscription(config)], "count": {"type": "Total", "value": 1}})
