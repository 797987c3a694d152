"""Processes and ports on this machine: is a pid alive, is a port free, wait for either (bounded).

The control plane's small process toolkit, shared by the workspace launcher and the S3 store's
supervisor (neither imports the other for it).
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections import deque
from pathlib import Path

import requests

from emulator import settings


class LaunchError(RuntimeError):
    """A workspace could not be started or stopped; the message says why and where to look."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def wait_exited(pid: int, timeout: float) -> bool:
    """True once ``pid`` is gone (a zombie counts as gone: its ports are closed), False if it still
    runs after ``timeout`` seconds. Works for processes that are not this one's children, such as
    the workspaces emulator.control.prefork forks."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# Ports free_port handed out lately. The kernel gives a port that was free to the next bind(0)
# again (2,000 picks on this machine: ~100 repeats), and once it gave one workspace's Azure ML
# HTTPS and proxy ports the same number: the second listener could not bind.
_HANDED_OUT: deque[int] = deque(maxlen=4096)
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = settings.DEFAULT_HOST) -> int:
    """A port free now on ``host`` and not handed out by this process lately; inside
    ``EMULATOR_PORT_RANGE`` when it is set (settings.port_range)."""
    span = settings.port_range()
    with _HANDED_OUT_LOCK:
        for _ in range(10_000):
            port = _pick(host, span)
            if port is not None and port not in _HANDED_OUT:
                _HANDED_OUT.append(port)
                return port
    raise LaunchError(f"no free port on {host}" + (f" in {settings.PORT_RANGE_ENV}={span[0]}-{span[1]}" if span else ""))


def _pick(host: str, span: tuple[int, int] | None) -> int | None:
    if span is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    port = random.randint(*span)
    return None if port_in_use(host, port) else port


def healthy(url: str, timeout: float = 2.0, path: str = "/health") -> bool:
    try:
        return requests.get(f"{url}{path}", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def wait_ports_free(host: str, ports, timeout: float) -> None:
    """Wait (bounded, condition-based) until none of ``ports`` is bound: a restart on the same ports
    may meet a socket of the process just stopped, or a client connection that happened to take
    one of them as its ephemeral local port."""
    deadline = time.monotonic() + timeout
    while any(port_in_use(host, p) for p in ports if p) and time.monotonic() < deadline:
        time.sleep(0.2)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"
