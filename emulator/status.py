"""What `emulator status` reports: where each workspace is, its credentials and its health."""

from __future__ import annotations

import json

from emulator import launcher, settings
from emulator.azureml.tokens import identity_header
from emulator.state import StateDir


def deployment(state: StateDir) -> dict:
    try:
        return json.loads((state.root / "deployment.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"mode": "local"}


def record_deployment(state: StateDir, mode: str, **extra) -> None:
    state.ensure()
    path = state.root / "deployment.json"
    path.write_text(json.dumps({"mode": mode, **extra}))
    path.chmod(0o600)


def linked(state: StateDir) -> bool:
    return (state.role_dir("databricks") / "link.json").exists()


def workspace_url(state: StateDir, role: str) -> str:
    """Where the workspace answers: the running process's address, else the configured one."""
    dep = deployment(state)
    if dep.get("mode") == "docker":
        return dep["urls"][role]
    current = launcher.running(state, role)
    if current:
        return current.url
    return f"http://{settings.DEFAULT_HOST}:{settings.port_for(role)}"


def collect(state: StateDir) -> dict:
    cfg = state.config()
    db_url = workspace_url(state, "databricks")
    aml_url = workspace_url(state, "azureml")
    scope = settings.azureml_scope(cfg)
    info = {
        "mode": deployment(state)["mode"],
        "state_dir": str(state.root),
        "linked": linked(state),
        "databricks": {
            "url": db_url,
            "token": cfg["databricks_token"],
            "user": cfg["databricks_user"],
            "healthy": launcher.healthy(db_url),
            "ui": f"{db_url}/?token={cfg['databricks_token']}",
        },
        "azureml": {
            "url": aml_url,
            "token": cfg["azureml_token"],
            "subscription_id": cfg["subscription_id"],
            "resource_group": cfg["resource_group"],
            "workspace_name": cfg["workspace_name"],
            "tracking_uri": f"{aml_url}/mlflow/v2.0/{scope}",
            "healthy": launcher.healthy(aml_url),
            "ui": f"{aml_url}/?token={cfg['azureml_token']}",
            # Managed identity (IDENTITY_ENDPOINT / IDENTITY_HEADER) for MSI-style clients.
            "identity_endpoint": f"{aml_url}/msi/token",
            "identity_header": identity_header(cfg["azureml_token"]),
        },
    }
    # Unity Catalog model files: the S3 endpoint clients set as MLFLOW_S3_ENDPOINT_URL.
    from emulator import s3_store

    s3_url = s3_store.url(state)
    info["databricks"]["client_env"] = {"DATABRICKS_HOST": db_url, "DATABRICKS_TOKEN": cfg["databricks_token"],
                                        "MLFLOW_S3_ENDPOINT_URL": s3_url}
    info["s3"] = {"url": s3_url, "healthy": s3_store.healthy(s3_url)}
    # Linked workspaces: the mirror's backlog and last error (None until a Databricks server ran).
    from emulator.mirror.control import mirror_status

    db = info["databricks"]
    info["mirror"] = mirror_status(state, db_url, db["token"], db["healthy"])
    if info["mirror"] and info["mirror"].get("source") == "server":
        info["linked"] = info["mirror"]["linked"]  # under Docker, link.json is in the container's volume
    return info
