"""The environment a real Azure client process needs to reach the emulated workspace offline.

Two arrangements, both without editing /etc/hosts (``emulator status --json`` -> ``azureml``):

* ``client_env`` (B, loopback only): ``ARM_CLOUD_METADATA_URL`` points at the HTTPS listener's
  ``/metadata/endpoints``, whose clouds have the emulator as resource manager; every address the
  workspace hands out is then ``127.0.0.1:<tls port>``. ``AZUREML_CURRENT_CLOUD`` names the custom
  cloud ``AzureMLEmulator``: azure-ai-ml uses its built-in endpoints for ``AzureCloud``.
* ``client_env_proxy`` (A): the real Azure host names, through the emulator's CONNECT proxy
  (``HTTPS_PROXY``; ``NO_PROXY`` keeps loopback calls, like the managed-identity endpoint, direct).

Both trust the emulator's CA through a bundle (system CAs + emulator CA) and take tokens from the
emulator's managed-identity endpoint: azure-identity reads ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``,
azureml-core ``MSI_ENDPOINT``/``MSI_SECRET`` with ``APPSETTING_WEBSITE_SITE_NAME`` set.
"""

from __future__ import annotations

METADATA_API_VERSION = "2022-09-01"
CLOUD = "AzureCloud"
CUSTOM_CLOUD = "AzureMLEmulator"  # arm_cloud.CLOUD_NAMES
NO_PROXY = "127.0.0.1,localhost"
COMPOSE_URL = "http://azureml:5002"  # the service's plain listener inside the Compose network


def _common(plain_url: str, identity_header: str, bundle: str) -> dict[str, str]:
    identity = f"{plain_url}/msi/token"
    return {
        "AZUREML_CURRENT_CLOUD": CLOUD,
        "REQUESTS_CA_BUNDLE": bundle,
        "SSL_CERT_FILE": bundle,
        "IDENTITY_ENDPOINT": identity,
        "IDENTITY_HEADER": identity_header,
        "MSI_ENDPOINT": identity,
        "MSI_SECRET": identity_header,
        "APPSETTING_WEBSITE_SITE_NAME": "mlflow-azure-emulator",
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
    }


def loopback(plain_url: str, tls_url: str, identity_header: str, bundle: str) -> dict[str, str]:
    env = _common(plain_url, identity_header, bundle)
    env["ARM_CLOUD_METADATA_URL"] = f"{tls_url}/metadata/endpoints?api-version={METADATA_API_VERSION}"
    env["AZUREML_CURRENT_CLOUD"] = CUSTOM_CLOUD
    return env


def compose_network(identity_header: str, bundle: str) -> dict[str, str]:
    """A container on the Compose network: the real names resolve to the `azureml` service (its
    network aliases), so no proxy and no custom cloud; the bundle must hold the CA it serves at
    ``http://azureml:5002/__emulator/ca.pem``."""
    return _common(COMPOSE_URL, identity_header, bundle)


def proxied(plain_url: str, proxy_url: str, identity_header: str, bundle: str) -> dict[str, str]:
    env = _common(plain_url, identity_header, bundle)
    env.update({"HTTPS_PROXY": proxy_url, "https_proxy": proxy_url})
    return env
