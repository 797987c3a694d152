"""Which emulator holds a port: a test session asked to listen where the user's own `emulator up`
already runs says so at once, instead of waiting for the port to free up."""

from __future__ import annotations

import warnings

import requests

from emulator import settings
from emulator.control import processes


def emulator_on(port: int, host: str = settings.DEFAULT_HOST) -> dict | None:
    """The ``/__emulator/info`` of the emulator listening on ``port`` (HTTP, or Azure ML's HTTPS
    listener), or None if nothing, or something else, listens there."""
    for scheme in ("http", "https"):
        try:
            with warnings.catch_warnings():
                # Only asks who is there (a public route, no credential sent): the emulator's own CA
                # is not this process's to trust.
                warnings.simplefilter("ignore")
                answer = requests.get(f"{scheme}://{host}:{port}/__emulator/info", timeout=5, verify=False)
            info = answer.json() if answer.status_code == 200 else None
        except (requests.RequestException, ValueError):
            continue
        if isinstance(info, dict) and info.get("role") in settings.ROLES:
            return info
    return None


def taken_by_an_emulator(ports: dict[str, int], host: str = settings.DEFAULT_HOST) -> str | None:
    """Why the session cannot listen on ``ports``: one is held by a running emulator (None if not)."""
    for name, port in ports.items():
        if not port or not processes.port_in_use(host, port):
            continue
        info = emulator_on(port, host)
        if info is None:
            continue
        where = info.get("state_dir")
        if not where:
            return (f"{host}:{port} (the {name} port) is taken by a running {info['role']} workspace: "
                    "stop it or pick other ports.")
        return (f"{host}:{port} (the {name} port) is taken: a workspace of state dir {where} already runs "
                f"here: set EMULATOR_PYTEST_STATE_DIR={where} to reuse it (or pick other ports).")
    return None
