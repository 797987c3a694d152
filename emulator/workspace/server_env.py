"""The environment a workspace server process runs in: none of the user's credentials, no egress.

A server is typically started from a shell where the user's real Databricks/Azure/AWS credentials
are set (``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` is the normal state of a Databricks user). MLflow
code inside the server would pick them up (the Databricks SDK's default auth, azure-identity,
boto3, ``~/.databrickscfg``, ``~/.azure``, ``~/.netrc``) and send real tokens to real hosts. So,
before MLflow is imported, the server process:

* drops every credential-like variable (``scrub``), keeping the emulator's own ``EMULATOR_*``;
* points ``HOME`` and the SDKs' config locations at an empty private folder in its state dir;
* turns off what MLflow would fetch from the internet (telemetry, the gateway model catalog).

Proxy settings stay (they are how the tests see any call that would leave the machine), but
loopback is always exempt from them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Whole families of cloud / tracking credentials and endpoints.
SCRUB_PREFIXES = (
    "DATABRICKS_", "AZURE_", "ARM_", "MSI_", "AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_",
    "MLFLOW_TRACKING_", "MLFLOW_REGISTRY_", "MLFLOW_DEPLOYMENTS_", "MLFLOW_GATEWAY_",
    "OPENAI_", "ANTHROPIC_", "HF_", "HUGGING_FACE_",
)
SCRUB_NAMES = {
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT",
    "NETRC", "SSH_AUTH_SOCK", "KUBECONFIG", "REQUESTS_CA_BUNDLE_AUTH",
    # Would let the server connect to hosts named in client-stored artifact locations.
    "MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES",
}
# Anything else that looks like a secret (GITHUB_TOKEN, *_API_KEY, *_PASSWORD, ...).
SECRET_LIKE = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|CREDENTIAL)", re.IGNORECASE)
KEEP_PREFIX = "EMULATOR_"  # the emulator's own tokens and settings
LOOPBACK = ("127.0.0.1", "localhost", "::1")

# What MLflow would otherwise fetch from the internet inside the server.
NO_EGRESS = {
    # fidelity: Security promises — no outbound calls
    "MLFLOW_MODEL_CATALOG_URI": "",  # gateway/supported-models: bundled catalog, no GitHub fetch
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def is_credential(name: str) -> bool:
    if name.startswith(KEEP_PREFIX):
        return False
    return name.startswith(SCRUB_PREFIXES) or name in SCRUB_NAMES or bool(SECRET_LIKE.search(name))


def scrub(environ: dict, home: Path) -> list[str]:
    """Remove the caller's credentials from ``environ`` and isolate config lookups; returns what went."""
    # fidelity: Security promises — the server never reads the user's credentials
    removed = sorted(name for name in environ if is_credential(name))
    for name in removed:
        del environ[name]
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    environ["HOME"] = str(home)  # ~/.databrickscfg, ~/.azure, ~/.aws, ~/.netrc: all empty here
    environ["DATABRICKS_CONFIG_FILE"] = os.devnull
    environ["AZURE_CONFIG_DIR"] = str(home / ".azure")
    environ.update(NO_EGRESS)
    # The mirror's calls to a local Azure ML workspace never go through the user's proxy.
    for name in ("NO_PROXY", "no_proxy"):
        kept = [h for h in environ.get(name, "").split(",") if h.strip()]
        environ[name] = ",".join([*kept, *(h for h in LOOPBACK if h not in kept)])
    return removed
