"""The Spark standalone cluster of the Compose file (profile "spark"): its addresses and readiness.

The services use host networking and bind loopback (docker-compose.yml), so the master is
spark://127.0.0.1:<EMULATOR_SPARK_MASTER_PORT> for a driver on this machine and its JSON status
(the master UI's /json/) says how many workers are alive."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

PROFILE = "spark"
MASTER_PORT_ENV, UI_PORT_ENV = "EMULATOR_SPARK_MASTER_PORT", "EMULATOR_SPARK_UI_PORT"
DEFAULT_MASTER_PORT, DEFAULT_UI_PORT = 7077, 8080


class ClusterNotReady(RuntimeError):
    """The master did not report the wanted number of alive workers in time."""


def urls(env: dict[str, str]) -> dict[str, str]:
    master = env.get(MASTER_PORT_ENV) or DEFAULT_MASTER_PORT
    ui = env.get(UI_PORT_ENV) or DEFAULT_UI_PORT
    return {"master_url": f"spark://127.0.0.1:{master}", "ui_url": f"http://127.0.0.1:{ui}"}


def master_status(ui_url: str) -> dict | None:
    """The master's JSON status, or None while it does not answer."""
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=3) as resp:
            return json.load(resp)
    except (OSError, urllib.error.URLError, ValueError):
        return None


def wait_ready(ui_url: str, workers: int, timeout: float = 180.0) -> dict:
    """Wait until the master is ALIVE with at least `workers` alive workers; its status."""
    deadline = time.monotonic() + timeout
    while True:
        info = master_status(ui_url)
        if info and info.get("status") == "ALIVE" and int(info.get("aliveworkers", 0)) >= workers:
            return info
        if time.monotonic() > deadline:
            seen = "no answer" if info is None else f"status {info.get('status')}, {info.get('aliveworkers')} alive workers"
            raise ClusterNotReady(f"the Spark master at {ui_url} did not report {workers} alive workers "
                                  f"within {timeout:.0f}s ({seen})")
        time.sleep(0.5)
