"""The Azure host names this workspace answers for, and which address a client should be given.

Arrangement A (real names through the emulator's CONNECT proxy, or Compose network aliases):
``<location>.api.azureml.ms``, ``management.azure.com`` and ``<account>.blob.core.windows.net``.
Arrangement B (loopback only): everything at the HTTPS listener's ``127.0.0.1:<port>``, blobs
path-style under ``/<account>.blob.core.windows.net/`` (the plugin downloads only URLs that
contain ``.blob.core.windows.net/``). A request is answered in the arrangement it arrived in.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from flask import Request

from emulator.settings import ServerConfig

ARM_HOST = "management.azure.com"
LOGIN_HOST = "login.microsoftonline.com"  # Entra ID's token endpoints (entra.py)
BLOB_SUFFIX = "blob.core.windows.net"


def api_host(config: ServerConfig) -> str:
    return f"{config.location.lower()}.api.azureml.ms"


STORAGE_ACCOUNT_ENV = "EMULATOR_AZUREML_STORAGE_ACCOUNT"


def storage_account(config: ServerConfig) -> str:
    """The workspace's storage account name (lower-case letters and digits, as Azure requires):
    ``EMULATOR_AZUREML_STORAGE_ACCOUNT`` (Compose names its network alias), else from the workspace."""
    configured = re.sub(r"[^a-z0-9]", "", os.environ.get(STORAGE_ACCOUNT_ENV, "").lower())[:24]
    if len(configured) >= 3:
        return configured
    short = re.sub(r"[^a-z0-9]", "", config.workspace_name.lower())[:12] or "ws"
    return f"{short}storage"


def blob_host(config: ServerConfig) -> str:
    return f"{storage_account(config)}.{BLOB_SUFFIX}"


def azure_names(config: ServerConfig) -> tuple[str, ...]:
    """The real Azure host names served here (certificate SANs, proxy allow-list, Compose aliases)."""
    return (api_host(config), ARM_HOST, blob_host(config), LOGIN_HOST)


def public_host(config: ServerConfig) -> str:
    return urlsplit(config.public_url).hostname or "127.0.0.1"


def tls_netloc(config: ServerConfig) -> str:
    """host:port of the HTTPS listener as clients reach it (arrangement B)."""
    port = config.tls_public_port or config.tls_port
    return f"{public_host(config)}:{port}"


def _split_host(netloc: str) -> tuple[str, str | None]:
    host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    return (host or netloc).lower(), port or None


def uses_azure_names(config: ServerConfig, request: Request) -> bool:
    host, _ = _split_host(request.host or "")
    return host in azure_names(config)


def service_netloc(config: ServerConfig, request: Request) -> str:
    """Where this client should send Azure ML data-plane calls (no scheme). Over plain HTTP: the
    plain listener (vanilla clients, the harness). Over HTTPS: the real API host name if it reached
    us by an Azure name, else the HTTPS listener as it addressed it (a loopback or the public host;
    any other Host header gets the configured address, never an echo)."""
    if request.scheme != "https":
        return urlsplit(config.public_url).netloc
    if uses_azure_names(config, request):
        return api_host(config)
    host, port = _split_host(request.host or "")
    if request.scheme == "https" and port and host in {"127.0.0.1", "localhost", public_host(config).lower()}:
        return f"{host}:{port}"
    return tls_netloc(config)


def service_url(config: ServerConfig, request: Request) -> str:
    scheme = "https" if request.scheme == "https" else urlsplit(config.public_url).scheme
    return f"{scheme}://{service_netloc(config, request)}"


def resource_manager_url(config: ServerConfig, request: Request) -> str:
    if uses_azure_names(config, request):
        return f"https://{ARM_HOST}/"
    return f"https://{service_netloc(config, request)}/"


def blob_base_url(config: ServerConfig, request: Request) -> str:
    """``https://<account>.blob.core.windows.net`` or, loopback, ``https://<tls>/<account>.blob...``
    (over plain HTTP: the plain listener, with its own scheme; it serves path-style blobs too)."""
    if uses_azure_names(config, request):
        return f"https://{blob_host(config)}"
    return f"{service_url(config, request)}/{blob_host(config)}"  # fidelity: Azure ML real clients
