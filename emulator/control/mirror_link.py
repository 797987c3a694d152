"""What ``emulator link`` / ``emulator unlink`` / ``emulator status`` do about the mirror.

Through the running Databricks workspace's admin routes when it is up; on the state files when
it is down (link.json is read at its next start; the outbox file gives the backlog).
"""

from __future__ import annotations

import os

import requests

from emulator.control.state import StateDir
from emulator.services.mirror import OUTBOX_FILE, link
from emulator.services.mirror.outbox import read_summary


class ControlError(RuntimeError):
    pass


def _admin(url: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    try:
        resp = requests.request(method, f"{url}{path}", json=body, timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        raise ControlError(f"the Databricks workspace at {url} did not answer: {exc}") from None
    if not resp.ok:
        raise ControlError(f"the Databricks workspace refused {path}: {resp.status_code} {resp.text[:300]}")
    return resp.json()


def _serving(state: StateDir, databricks_url: str) -> bool:
    """This state dir's Databricks workspace answers (not some other server on its port)."""
    from emulator.control.locate import serving

    return serving(state, "databricks", databricks_url)


def _require_local(state: StateDir, what: str) -> None:
    if state.deployment().get("mode") == "docker":
        # The link file lives in the container's volume: only the running server can change it.
        raise ControlError(f"the Databricks workspace is not running; start it before `emulator {what}`")


def link_workspaces(state: StateDir, databricks_url: str, azureml_url: str | None = None) -> dict:
    cfg = state.config()
    url = azureml_url or os.environ.get(link.INTERNAL_URL_ENV)
    if url is None:
        from emulator.control.locate import workspace_url

        url = workspace_url(state, "azureml")
    if _serving(state, databricks_url):
        return _admin(databricks_url, cfg["databricks_token"], "POST", "/__emulator/link",
                      {"azureml_url": url, "azureml_token": cfg["azureml_token"]})
    _require_local(state, "link")
    state.ensure()
    with link.locked(state.role_dir("databricks")):
        link.write(state.role_dir("databricks"), link.make(url, cfg["azureml_token"], cfg))
    return {"linked": True, "azureml_url": url, "note": "takes effect when the Databricks workspace starts"}


def unlink_workspaces(state: StateDir, databricks_url: str) -> dict:
    if not state.role_dir("databricks").is_dir():
        return {"linked": False}  # no emulator here: nothing to unlink, and nothing created
    cfg = state.config()
    if _serving(state, databricks_url):
        return _admin(databricks_url, cfg["databricks_token"], "POST", "/__emulator/unlink")
    _require_local(state, "unlink")
    with link.locked(state.role_dir("databricks")):
        link.remove(state.role_dir("databricks"))
    return {"linked": False}


def mirror_status(state: StateDir, databricks_url: str, token: str, healthy: bool) -> dict | None:
    """The mirror's backlog and last error, from the server if it runs, else from the outbox file."""
    if healthy:
        try:
            info = _admin(databricks_url, token, "GET", "/__emulator/mirror")
            info["source"] = "server"
            return info
        except ControlError:
            pass
    info = read_summary(state.role_dir("databricks") / OUTBOX_FILE)
    if info is None:
        return None
    info["linked"] = link.read(state.role_dir("databricks")) is not None
    info["source"] = "outbox file (Databricks workspace not running)"
    return info

