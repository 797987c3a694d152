"""The child processes that serve online deployments (one per deployment), started and stopped here.

Each runs ``emulator.services.azureml.deployment_runner``, which loads the registered model version from
this workspace over its own MLflow REST API (tracking and registry URI = this server on
loopback, the workspace token) and writes a ready file with its port. Output goes to
``<state>/online-endpoints/<endpoint>/<deployment>.log``: what ``getLogs`` returns.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

_logger = logging.getLogger(__name__)

READY_TIMEOUT_ENV = "EMULATOR_AZUREML_DEPLOYMENT_TIMEOUT_S"
DEFAULT_READY_TIMEOUT_S = 600.0


class DeploymentFailed(Exception):
    pass


def ready_timeout() -> float:
    try:
        return float(os.environ.get(READY_TIMEOUT_ENV, DEFAULT_READY_TIMEOUT_S))
    except ValueError:
        return DEFAULT_READY_TIMEOUT_S


class ServingProcess:
    """One inference server process for one deployment generation."""

    def __init__(self, model_uri: str, log_path: Path, env: dict[str, str]):
        self.model_uri = model_uri
        self.log_path = log_path
        self.ready_file = log_path.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.ready")
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            out.write(f"\n=== starting inference server for {self.model_uri} ===\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "emulator.services.azureml.deployment_runner", "--model-uri", self.model_uri,
                 "--ready-file", str(self.ready_file), "--parent-pid", str(os.getpid())],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            )

    def wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            if self.ready_file.exists():
                try:
                    self.port = int(json.loads(self.ready_file.read_text())["port"])
                    self.ready_file.unlink(missing_ok=True)
                    return self.port
                except (ValueError, KeyError, OSError):
                    pass  # being written
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                raise DeploymentFailed(f"The inference server exited with code {code} while loading "
                                       f"{self.model_uri}:\n{tail(self.log_path, 25)}")
            if time.monotonic() > deadline:
                self.stop()
                raise DeploymentFailed(f"The inference server did not become ready within {timeout:g} s "
                                       f"(loading {self.model_uri}):\n{tail(self.log_path, 25)}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def tail(path: Path, lines: int | None) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    if lines is None or lines <= 0:
        return text
    return "\n".join(text.splitlines()[-lines:])


class DeploymentPool:
    """Serving processes by (endpoint, deployment); thread-safe."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = Path(root)
        self.env = env
        self._procs: dict[tuple[str, str], ServingProcess] = {}
        self._lock = threading.Lock()

    def log_path(self, endpoint: str, deployment: str) -> Path:
        # Names are validated ([a-zA-Z0-9-]) before they get here; quoted all the same.
        return self.root / quote(endpoint, safe="") / f"{quote(deployment, safe='')}.log"

    def start(self, endpoint: str, deployment: str, model_uri: str) -> int:
        """Start a new generation and wait until it serves; then it replaces the old one."""
        proc = ServingProcess(model_uri, self.log_path(endpoint, deployment), self.env)
        proc.start()
        port = proc.wait_ready(ready_timeout())
        with self._lock:
            old = self._procs.get((endpoint, deployment))
            self._procs[(endpoint, deployment)] = proc
        if old is not None:
            old.stop()
        return port

    def get(self, endpoint: str, deployment: str) -> ServingProcess | None:
        with self._lock:
            return self._procs.get((endpoint, deployment))

    def stop(self, endpoint: str, deployment: str) -> None:
        with self._lock:
            proc = self._procs.pop((endpoint, deployment), None)
        if proc is not None:
            proc.stop()

    def crashed(self) -> list[tuple[str, str]]:
        """Deployments whose current process exited (stopped ones are no longer listed)."""
        with self._lock:
            return [key for key, proc in self._procs.items() if not proc.alive()]

    def stop_all(self) -> None:
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        for proc in procs:
            proc.stop()
