"""Local mode: the S3 process that holds Unity Catalog model-version files (moto behind a gate).

Started and stopped with the workspaces (``emulator up`` / ``down``), tracked like them by a run
file, ``<state>/s3/server.json``. Its address is what clients set as ``MLFLOW_S3_ENDPOINT_URL``
(``emulator status --json``: ``databricks.client_env``); the Databricks workspace is given it in
its configuration (``ServerConfig.s3_url``, settled by ``reserve`` before it starts), to seal
finalized versions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from emulator import settings
from emulator.control import processes
from emulator.control.state import StateDir, make_private_dir

PORT_ENV = "EMULATOR_S3_PORT"
URL_ENV = "EMULATOR_S3_URL"  # set where the workspace reaches S3 elsewhere (Compose)
DEFAULT_PORT = 5005  # 5003/5004: the Azure ML HTTPS listener and proxy


def _dir(state: StateDir) -> Path:
    return make_private_dir(state.root / "s3")


def _runfile(state: StateDir) -> Path:
    return _dir(state) / "server.json"


def log_path(state: StateDir) -> Path:
    return _dir(state) / "server.log"


def running_url(state: StateDir) -> str | None:
    try:
        info = json.loads(_runfile(state).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return f"http://{info['host']}:{info['port']}" if processes.alive(info["pid"]) else None


def url(state: StateDir) -> str:
    """Where clients reach S3: EMULATOR_S3_URL (the workspace inside Compose), the Compose service's
    published address (Docker mode), the running process, else where it will listen."""
    return (os.environ.get(URL_ENV) or state.deployment().get("s3_url") or running_url(state)
            or f"http://{settings.DEFAULT_HOST}:{_remembered(state) or configured_port()}")


def serving(state: StateDir) -> bool:
    """The S3 store of this state dir answers (a local process or the Compose service)."""
    return healthy(url(state))


def configured_port() -> int:
    """EMULATOR_S3_PORT, else 5005 (also the Compose service's published port)."""
    value = os.environ.get(PORT_ENV)
    return int(value) if value and value.isdigit() else DEFAULT_PORT


def _remembered(state: StateDir) -> int | None:
    try:
        return int((_dir(state) / "port").read_text())
    except (FileNotFoundError, ValueError):
        return None


def _pick_port(state: StateDir, host: str) -> int:
    """EMULATOR_S3_PORT if set (it must be free); else the port this state dir used last, so
    MLFLOW_S3_ENDPOINT_URL stays valid across down/up; else 5005; else any free port (two emulators
    with their own state dirs, e.g. tests, must not collide on the default)."""
    if os.environ.get(PORT_ENV):
        return configured_port()
    for candidate in (_remembered(state), DEFAULT_PORT):
        if candidate and not processes.port_in_use(host, candidate):
            return candidate
    return processes.free_port(host)


def reserve(state: StateDir, host: str = settings.DEFAULT_HOST, port: int | None = None) -> int | None:
    """Settle the S3 store's port before the Databricks workspace starts, whose configuration names
    it (the store itself may start alongside); None where its address comes from elsewhere."""
    state.config()
    if os.environ.get(URL_ENV) or state.deployment().get("s3_url") or running_url(state):
        return None
    port = _pick_port(state, host) if port is None else port
    port = processes.free_port(host) if port == 0 else port
    (_dir(state) / "port").write_text(str(port))
    return port


def healthy(base_url: str, timeout: float = 2.0) -> bool:
    return processes.healthy(base_url, timeout, path="/__emulator/health")


def start(state: StateDir, host: str = settings.DEFAULT_HOST, port: int | None = None, timeout: float = 90.0) -> str:
    """Start the S3 process unless it runs; returns its URL once it answers."""
    current = running_url(state)
    if current:
        return current
    state.config()
    port = _pick_port(state, host) if port is None else port
    if port == 0:
        port = processes.free_port(host)
    if processes.port_in_use(host, port):
        raise processes.LaunchError(
            f"cannot start the S3 store of Unity Catalog models: {host}:{port} is already in use. "
            f"Pick another port with {PORT_ENV}=<port>.")
    log = log_path(state)
    with open(log, "ab") as out:
        os.chmod(log, 0o600)
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulator.control.s3_serve", "--state-dir", str(state.root),
             "--host", host, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _runfile(state).write_text(json.dumps({"pid": proc.pid, "host": host, "port": port}))
    (_dir(state) / "port").write_text(str(port))
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while not healthy(base):
        if not processes.alive(proc.pid):
            raise processes.LaunchError(f"the S3 store exited during start-up; last lines of {log}:\n{processes.tail(log)}")
        if time.monotonic() > deadline:
            raise processes.LaunchError(f"timed out after {timeout:.0f}s waiting for the S3 store at {base}")
        time.sleep(0.05)
    return base


def stop(state: StateDir, timeout: float = 15.0) -> bool:
    try:
        info = json.loads(_runfile(state).read_text())
    except (FileNotFoundError, ValueError):
        return False
    _runfile(state).unlink(missing_ok=True)
    pid = info["pid"]
    if not processes.alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (processes.alive(pid) or processes.port_in_use(info["host"], info["port"])) and time.monotonic() < deadline:
        time.sleep(0.1)
    if processes.alive(pid):
        os.kill(pid, signal.SIGKILL)
    processes.reap(pid)
    return True
