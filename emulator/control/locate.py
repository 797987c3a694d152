"""Where a state dir's workspaces are and whether they answer: the one look-up every control-plane
command shares (status, link, the harness), in local mode and under Compose."""

from __future__ import annotations

from emulator import settings
from emulator.control import launcher
from emulator.control.state import StateDir


def workspace_url(state: StateDir, role: str) -> str:
    """Where the workspace answers: the running process's address, else the configured one."""
    dep = state.deployment()
    if dep.get("mode") == "docker":
        return dep["urls"][role]
    current = launcher.running(state, role)
    if current:
        return current.url
    return f"http://{settings.DEFAULT_HOST}:{settings.port_for(role)}"


def serving(state: StateDir, role: str, url: str | None = None) -> bool:
    """Whether this state dir's workspace answers: in local mode only a server it started (see
    launcher.owned), never whatever else listens on the port; in Docker mode its recorded URL."""
    if state.deployment().get("mode") == "docker":
        return launcher.healthy(url or workspace_url(state, role))
    return launcher.owned(state, role) is not None
