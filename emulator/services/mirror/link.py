"""Link state: ``<state>/databricks/link.json`` exists exactly while the workspace is linked.

It names the Azure ML workspace to mirror to (URL, scope, token) and is read when the Databricks
server starts, so a link made while the server was down takes effect at the next start.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.settings import azureml_scope

LINK_FILE = "link.json"
LOCK_FILE = ".link.lock"
# Under Docker the Databricks container reaches Azure ML by its service name, not the host URL.
INTERNAL_URL_ENV = "EMULATOR_AZUREML_INTERNAL_URL"


def link_path(databricks_dir: Path) -> Path:
    return Path(databricks_dir) / LINK_FILE


def read(databricks_dir: Path) -> dict | None:
    try:
        return json.loads(link_path(databricks_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def identity(databricks_dir: Path) -> tuple | None:
    """What changes whenever link.json is replaced or removed (each write is a new inode)."""
    try:
        st = link_path(databricks_dir).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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


@contextmanager
def locked(databricks_dir: Path):
    """Serialise link changes (request threads, the CLI, another server process) on one file lock,
    so a change to link.json and what follows from it (the relay's target) happen together."""
    fd = os.open(Path(databricks_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def write(databricks_dir: Path, record: dict) -> None:
    """Atomically replace link.json (a unique temp file each time: concurrent writers never share one)."""
    path = link_path(databricks_dir)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".link-", suffix=".tmp")  # 0600: holds a token
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
