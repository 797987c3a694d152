"""Names, defaults and environment overrides shared by the launcher, the servers and the harness."""

from __future__ import annotations

import os
from dataclasses import dataclass

ROLES = ("databricks", "azureml")

DEFAULT_PORTS = {"databricks": 5001, "azureml": 5002}
PORT_ENV = {"databricks": "EMULATOR_DATABRICKS_PORT", "azureml": "EMULATOR_AZUREML_PORT"}
TOKEN_ENV = {"databricks": "EMULATOR_DATABRICKS_TOKEN", "azureml": "EMULATOR_AZUREML_TOKEN"}

# The Azure ML workspace's extra listeners: HTTPS (what azureml-mlflow, azureml-core and azure-ai-ml
# speak) and a CONNECT proxy that lets clients use the real Azure host names (arrangement A).
AZUREML_TLS_PORT_ENV = "EMULATOR_AZUREML_TLS_PORT"
AZUREML_PROXY_PORT_ENV = "EMULATOR_AZUREML_PROXY_PORT"
DEFAULT_AZUREML_TLS_PORT = 5003
DEFAULT_AZUREML_PROXY_PORT = 5004

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

# Where online deployments' model environments are built and kept (emulator.services.azureml.model_environments):
# chosen by the launcher (under the user's cache, beside the client venvs, so every state dir reuses
# them) and handed to the server, which never looks into HOME. Unset (Docker): under the state dir.
MODEL_ENVS_ENV = "EMULATOR_MODEL_ENVS"


def model_envs_dir(state_dir: str) -> str:
    return os.environ.get(MODEL_ENVS_ENV) or os.path.join(state_dir, "model-envs")


# Notebooks' tables (harness.spark_tables): the Databricks workspace's Spark warehouse and Hive
# metastore live in its state dir; the Jobs service hands that folder to its notebook tasks in
# SPARK_TABLES_ENV (never the whole state dir). The Unity Catalog name plugin is compiled once per
# Spark version into SPARK_CATALOG_CACHE_ENV: chosen by the launcher (the user's cache), else under the state dir.
SPARK_TABLES_ENV = "EMULATOR_SPARK_TABLES"
SPARK_CATALOG_CACHE_ENV = "EMULATOR_SPARK_CATALOG_CACHE"


def spark_tables_dir(databricks_state_dir: str) -> str:
    return os.path.join(databricks_state_dir, "spark-tables")


def spark_catalog_cache(state_dir: str) -> str:
    return os.environ.get(SPARK_CATALOG_CACHE_ENV) or os.path.join(state_dir, "spark-catalog")


# The user that owns the Databricks token (runs are owned by it, not by the OS user).
DATABRICKS_USER_ENV = "EMULATOR_DATABRICKS_USER"
DEFAULT_DATABRICKS_USER = "someone@example.com"


def _port_from_env(env: str, default: int) -> int:
    value = os.environ.get(env)
    if not value:
        return default
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{env} must be a port number, got {value!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"{env} must be between 0 and 65535, got {port}")
    return port


def port_for(role: str) -> int:
    return _port_from_env(PORT_ENV[role], DEFAULT_PORTS[role])


def azureml_extra_ports() -> dict[str, int]:
    """The Azure ML workspace's HTTPS and CONNECT-proxy ports (0 = pick a free one)."""
    return {"tls": _port_from_env(AZUREML_TLS_PORT_ENV, DEFAULT_AZUREML_TLS_PORT),
            "proxy": _port_from_env(AZUREML_PROXY_PORT_ENV, DEFAULT_AZUREML_PROXY_PORT)}


# Where free ports are picked (`lo-hi`, both included): unset, the kernel's ephemeral picks (bind to 0).
# Processes that start workspaces side by side on one host (parallel CI jobs, pytest-xdist workers)
# give each a range of its own: two processes' bind(0) picks can hand both the same port.
PORT_RANGE_ENV = "EMULATOR_PORT_RANGE"


def port_range() -> tuple[int, int] | None:
    value = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not value:
        return None
    lo, sep, hi = value.partition("-")
    try:
        low, high = int(lo), int(hi)
    except ValueError:
        raise ValueError(f"{PORT_RANGE_ENV} must be two port numbers as lo-hi, got {value!r}") from None
    if not (sep and 1024 <= low < high < 65536):
        raise ValueError(f"{PORT_RANGE_ENV} must be lo-hi with 1024 <= lo < hi <= 65535, got {value!r}")
    return low, high


def azureml_scope(identity: dict[str, str]) -> str:
    """The ARM resource path that scopes every Azure ML MLflow call."""
    return (
        f"subscriptions/{identity['subscription_id']}/resourceGroups/{identity['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{identity['workspace_name']}"
    )


# fidelity: Slow and idle clients
# Seconds a client has, from connecting (or from the first byte of its next request on a kept-alive
# connection), to send the whole request head; real clients send it in one packet.
REQUEST_HEAD_TIMEOUT = 20.0
# The waitress servers (the S3 store, deployments' inference servers) keep idle and trickling
# sockets in their select loop, never in a thread, but stop accepting at ``connection_limit``
# (default 100) and, with select(), at 1024 descriptors: poll and a limit far above any test's
# connection count; a silent socket is closed after ``channel_timeout``.
WAITRESS_CONNECTION_LIMITS = {"connection_limit": 4096, "channel_timeout": 60, "asyncore_use_poll": True,
                              "backlog": 1024}


@dataclass(frozen=True)
class ServerConfig:
    """Everything one workspace server process needs; written by the launcher, read by the server."""

    role: str
    host: str
    port: int
    state_dir: str  # the role's own directory (e.g. .emulator/services/databricks)
    token: str
    public_url: str  # how clients reach it (differs from host:port under Docker)
    user: str = DEFAULT_DATABRICKS_USER
    subscription_id: str = AZUREML_DEFAULTS["subscription_id"]
    resource_group: str = AZUREML_DEFAULTS["resource_group"]
    workspace_name: str = AZUREML_DEFAULTS["workspace_name"]
    location: str = AZUREML_DEFAULTS["location"]
    tls_port: int | None = None  # Azure ML: the HTTPS listener (None: plain HTTP only)
    proxy_port: int | None = None  # Azure ML: the CONNECT proxy for the real Azure host names
    tls_public_port: int | None = None  # how clients reach the HTTPS listener (differs under Docker)
    s3_url: str = ""  # Databricks: the S3 store of Unity Catalog model files (seal, reset)

    @property
    def scope(self) -> str:
        return azureml_scope(
            {
                "subscription_id": self.subscription_id,
                "resource_group": self.resource_group,
                "workspace_name": self.workspace_name,
            }
        )
