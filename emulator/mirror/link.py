"""Link state: ``<state>/databricks/link.json`` exists exactly while the workspace is linked.

It names the Azure ML workspace to mirror to (URL, scope, token) and is read when the Databricks
server starts, so a link made while the server was down takes effect at the next start.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.settings import azureml_scope

LINK_FILE = "link.json"
# Under Docker the Databricks container reaches Azure ML by its service name, not the host URL.
INTERNAL_URL_ENV = "EMULATOR_AZUREML_INTERNAL_URL"


def link_path(databricks_dir: Path) -> Path:
    return Path(databricks_dir) / LINK_FILE


def read(databricks_dir: Path) -> dict | None:
    try:
        return json.loads(link_path(databricks_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def make(azureml_url: str, azureml_token: str, identity: dict) -> dict:
    """A validated link record; the environment's internal URL wins over what the caller saw."""
    url = (os.environ.get(INTERNAL_URL_ENV) or azureml_url or "").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EmulatorError("INVALID_PARAMETER_VALUE",
                            f"azureml_url must be an http(s) URL, got {azureml_url!r}")
    if not azureml_token or not isinstance(azureml_token, str):
        raise EmulatorError("INVALID_PARAMETER_VALUE", "azureml_token is required")
    return {
        "azureml_url": url,
        "azureml_token": azureml_token,
        # The relay calls Azure ML's scoped MLflow API, as the azureml-mlflow plugin does.
        "tracking_base": f"{url}/mlflow/v2.0/{azureml_scope(identity)}",
        "linked_at": time.time(),
    }


def write(databricks_dir: Path, record: dict) -> None:
    path = link_path(databricks_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a token
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def remove(databricks_dir: Path) -> bool:
    try:
        link_path(databricks_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def public(record: dict | None) -> dict:
    """What the status may show (no token)."""
    if not record:
        return {"linked": False}
    return {"linked": True, "azureml_url": record["azureml_url"], "linked_at": record.get("linked_at")}
