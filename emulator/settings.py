"""Names, defaults and environment overrides shared by the launcher, the servers and the harness."""

from __future__ import annotations

import os
from dataclasses import dataclass

ROLES = ("databricks", "azureml")

DEFAULT_PORTS = {"databricks": 5001, "azureml": 5002}
PORT_ENV = {"databricks": "EMULATOR_DATABRICKS_PORT", "azureml": "EMULATOR_AZUREML_PORT"}
TOKEN_ENV = {"databricks": "EMULATOR_DATABRICKS_TOKEN", "azureml": "EMULATOR_AZUREML_TOKEN"}

DEFAULT_HOST = "127.0.0.1"
DEFAULT_STATE_DIR = ".emulator"
STATE_DIR_ENV = "EMULATOR_STATE_DIR"

# Identity of the emulated Azure ML workspace (what Workspace.get() is asked for).
AZUREML_DEFAULTS = {
    "subscription_id": "00000000-0000-0000-0000-000000000000",
    "resource_group": "emulator-rg",
    "workspace_name": "emulator-ws",
    "location": "westeurope",
}
AZUREML_ENV = {
    "subscription_id": "EMULATOR_AZUREML_SUBSCRIPTION_ID",
    "resource_group": "EMULATOR_AZUREML_RESOURCE_GROUP",
    "workspace_name": "EMULATOR_AZUREML_WORKSPACE",
    "location": "EMULATOR_AZUREML_LOCATION",
}

# The user that owns the Databricks token (runs are owned by it, not by the OS user).
DATABRICKS_USER_ENV = "EMULATOR_DATABRICKS_USER"
DEFAULT_DATABRICKS_USER = "someone@example.com"


def port_for(role: str) -> int:
    value = os.environ.get(PORT_ENV[role])
    if not value:
        return DEFAULT_PORTS[role]
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV[role]} must be a port number, got {value!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"{PORT_ENV[role]} must be between 0 and 65535, got {port}")
    return port


def azureml_scope(identity: dict[str, str]) -> str:
    """The ARM resource path that scopes every Azure ML MLflow call."""
    return (
        f"subscriptions/{identity['subscription_id']}/resourceGroups/{identity['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{identity['workspace_name']}"
    )


@dataclass(frozen=True)
class ServerConfig:
    """Everything one workspace server process needs; written by the launcher, read by the server."""

    role: str
    host: str
    port: int
    state_dir: str  # the role's own directory (e.g. .emulator/databricks)
    token: str
    public_url: str  # how clients reach it (differs from host:port under Docker)
    user: str = DEFAULT_DATABRICKS_USER
    subscription_id: str = AZUREML_DEFAULTS["subscription_id"]
    resource_group: str = AZUREML_DEFAULTS["resource_group"]
    workspace_name: str = AZUREML_DEFAULTS["workspace_name"]
    location: str = AZUREML_DEFAULTS["location"]

    @property
    def scope(self) -> str:
        return azureml_scope(
            {
                "subscription_id": self.subscription_id,
                "resource_group": self.resource_group,
                "workspace_name": self.workspace_name,
            }
        )
