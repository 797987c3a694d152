"""What `emulator status` reports: where each workspace is, its credentials and its health."""

from __future__ import annotations

from emulator import settings
from emulator.control import launcher
from emulator.control.locate import serving, workspace_url
from emulator.control.state import StateDir


def linked(state: StateDir) -> bool:
    return (state.role_dir("databricks") / "link.json").exists()


class NotRunningHere(RuntimeError):
    """This state dir has never been set up: no workspace of it can be running."""

    def __init__(self, state: StateDir):
        super().__init__(f"the emulator is not running here: {state.root} holds no emulator state "
                         f"(`emulator up --state-dir {state.root}` starts it)")
        self.state_dir = str(state.root)


def azureml_extra_urls(state: StateDir) -> dict[str, str]:
    """The Azure ML HTTPS listener and CONNECT proxy as clients reach them ({} if none)."""
    dep = state.deployment()
    if dep.get("mode") == "docker":
        return {k: dep[f"{k}_url"] for k in ("azureml_tls", "azureml_proxy") if dep.get(f"{k}_url")}
    current = launcher.running(state, "azureml")
    ports = current.extra_ports if current and current.extra_ports else settings.azureml_extra_ports()
    return {"azureml_tls": f"https://{settings.DEFAULT_HOST}:{ports['tls']}",
            "azureml_proxy": f"http://{settings.DEFAULT_HOST}:{ports['proxy']}"}


def azureml_client_env(state: StateDir, aml_url: str, header: str) -> dict:
    """What real Azure clients need (emulator.services.azureml.client_env): CA files and two environments."""
    from emulator.services.azureml import client_env, tls

    urls = azureml_extra_urls(state)
    if "azureml_tls" not in urls:
        return {}
    files = tls.files_for(state.role_dir("azureml"))
    if state.deployment().get("mode") == "docker":
        # The CA lives in the container's volume; fetch it (public) so host clients can trust it.
        tls.fetch_ca(files, aml_url)
    info = {"tls_url": urls["azureml_tls"], "ca_file": str(files.ca), "ca_bundle": str(files.bundle),
            "client_env": client_env.loopback(aml_url, urls["azureml_tls"], header, str(files.bundle))}
    if "azureml_proxy" in urls:
        info["proxy_url"] = urls["azureml_proxy"]
        info["client_env_proxy"] = client_env.proxied(aml_url, urls["azureml_proxy"], header, str(files.bundle))
    return info


def service_principal(aml_url: str, cfg: dict) -> dict:
    """The service principal Entra (emulator.services.azureml.entra) knows, as `az login
    --service-principal` / ClientSecretCredential / AZURE_CLIENT_* take it."""
    from emulator.services.azureml.tokens import service_principal as principal
    from emulator.services.azureml.tokens import tenant_id

    client_id, secret = principal(cfg["azureml_token"])
    tenant = tenant_id(cfg["subscription_id"])
    return {"tenant_id": tenant, "client_id": client_id, "client_secret": secret,
            "token_url": f"{aml_url}/{tenant}/oauth2/v2.0/token"}


def _config(state: StateDir) -> dict:
    cfg = state.load_config()
    if not cfg.get("databricks_token") or not cfg.get("azureml_token"):
        # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
        raise NotRunningHere(state)
    return cfg


def addresses(state: StateDir) -> dict:
    """Where each workspace is and its credentials, from the state dir's files alone: no health
    probe, no request (the pytest plugin's per-test handles; `collect` adds the probes)."""
    from emulator.control import s3_store

    cfg = _config(state)
    db_url = workspace_url(state, "databricks")
    aml_url = workspace_url(state, "azureml")
    return {
        "databricks": {"url": db_url, "token": cfg["databricks_token"], "user": cfg["databricks_user"],
                       "s3_url": s3_store.url(state)},
        "azureml": {"url": aml_url, "token": cfg["azureml_token"], "subscription_id": cfg["subscription_id"],
                    "resource_group": cfg["resource_group"], "workspace_name": cfg["workspace_name"],
                    "tracking_uri": f"{aml_url}/mlflow/v2.0/{settings.azureml_scope(cfg)}"},
    }


def collect(state: StateDir) -> dict:
    """Everything `emulator status` shows. Reads only: creates no state (raises NotRunningHere
    for a state dir that was never set up)."""
    from emulator.services.azureml.tokens import (
        identity_header,  # imports Flask: not on `up`'s way to the fork
    )

    cfg = _config(state)
    db_url = workspace_url(state, "databricks")
    aml_url = workspace_url(state, "azureml")
    scope = settings.azureml_scope(cfg)
    info = {
        "mode": state.deployment()["mode"],
        "state_dir": str(state.root),
        # Where the MLflow stores are: "sqlite" (each workspace's state) or "postgres" (--store postgres).
        "store": state.deployment().get("store", "sqlite"),
        "linked": linked(state),
        "databricks": {
            "url": db_url,
            "token": cfg["databricks_token"],
            "user": cfg["databricks_user"],
            "healthy": serving(state, "databricks", db_url),
            "ui": f"{db_url}/?token={cfg['databricks_token']}",
        },
        "azureml": {
            "url": aml_url,
            "token": cfg["azureml_token"],
            "subscription_id": cfg["subscription_id"],
            "resource_group": cfg["resource_group"],
            "workspace_name": cfg["workspace_name"],
            "tracking_uri": f"{aml_url}/mlflow/v2.0/{scope}",
            "healthy": serving(state, "azureml", aml_url),
            "ui": f"{aml_url}/?token={cfg['azureml_token']}",
            # Managed identity (IDENTITY_ENDPOINT / IDENTITY_HEADER) for MSI-style clients.
            "identity_endpoint": f"{aml_url}/msi/token",
            "identity_header": identity_header(cfg["azureml_token"]),
            "service_principal": service_principal(aml_url, cfg),
            **azureml_client_env(state, aml_url, identity_header(cfg["azureml_token"])),
        },
    }
    # Unity Catalog model files: the S3 endpoint clients set as MLFLOW_S3_ENDPOINT_URL.
    from emulator.control import s3_store

    s3_url = s3_store.url(state)
    info["databricks"]["client_env"] = {"DATABRICKS_HOST": db_url, "DATABRICKS_TOKEN": cfg["databricks_token"],
                                        "MLFLOW_S3_ENDPOINT_URL": s3_url}
    info["s3"] = {"url": s3_url, "healthy": s3_store.healthy(s3_url)}
    # Linked workspaces: the mirror's backlog and last error (None until a Databricks server ran).
    from emulator.control.mirror_link import mirror_status

    db = info["databricks"]
    info["mirror"] = mirror_status(state, db_url, db["token"], db["healthy"])
    if info["mirror"] and info["mirror"].get("source") == "server":
        info["linked"] = info["mirror"]["linked"]  # under Docker, link.json is in the container's volume
    return info
