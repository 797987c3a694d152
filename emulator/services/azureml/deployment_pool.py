"""The child processes that serve online deployments (one per deployment), started and stopped here.

Each deployment generation gets a private directory (0700, outside the state dir). A first
``emulator.services.azureml.deployment_runner --fetch`` process copies the registered version into
it over this workspace's MLflow REST API (tracking and registry URI = this server on loopback, the
workspace token); it runs no model code. The inference server then runs the model's code in that
model directory with an environment holding no emulator secret and no state dir path (MODEL_ENV_KEPT),
runs in the Python ``model_environments`` picks from the model's requirements (the server's own,
or an environment built once with what is missing), takes a per-deployment secret on stdin (scoring calls carry it) and reports its port on a pipe.
Output of both goes to ``<state>/online-endpoints/<endpoint>/<deployment>.log``: what ``getLogs`` returns.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from emulator.services.azureml import model_environments
from emulator.services.azureml.inference_zygote import Zygote

_logger = logging.getLogger(__name__)

READY_TIMEOUT_ENV = "EMULATOR_AZUREML_DEPLOYMENT_TIMEOUT_S"
DEFAULT_READY_TIMEOUT_S = 600.0


class DeploymentFailed(Exception):
    """``code``: the deployment operation's error code (Azure ML's, e.g. ImageBuildFailure)."""

    def __init__(self, message: str, code: str = "DeploymentFailed"):
        super().__init__(message)
        self.code = code


def ready_timeout() -> float:
    try:
        return float(os.environ.get(READY_TIMEOUT_ENV, DEFAULT_READY_TIMEOUT_S))
    except ValueError:
        return DEFAULT_READY_TIMEOUT_S


RUNNER = "emulator.services.azureml.deployment_runner"
PRIVATE_PREFIX = "azureml-deployment-"  # deployment_runner removes only a directory named so
# What the model's process inherits: how to find Python and its packages, the locale. No token,
# no EMULATOR_* setting (they name the state dir), no cloud credentials.
MODEL_ENV_KEPT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


def model_env(home: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in MODEL_ENV_KEPT if k in os.environ}
    env.update({"HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"})
    return env


class ServingProcess:
    """One inference server process for one deployment generation."""

    def __init__(self, model_uri: str, log_path: Path, fetch_env: dict[str, str], envs_dir: Path | None = None,
                 zygote: Zygote | None = None):
        self.model_uri = model_uri
        self.zygote = zygote  # forks both steps when the model runs in the server's own Python
        self.log_path = log_path
        self.fetch_env = fetch_env
        self.envs_dir = envs_dir  # where model environments are built (None: the server's Python only)
        self.environment: Path | None = None  # the built environment it runs in (None: the fast path)
        # Private to this generation (mkdtemp: mode 0700), removed when it stops.
        self.private = Path(tempfile.mkdtemp(prefix=PRIVATE_PREFIX))
        self.secret = secrets.token_urlsafe(32)  # what the workspace presents to the inference server
        self.proc = None  # a subprocess.Popen, or a zygote's ForkedProcess (the same calls)
        self.port: int | None = None
        self._ready_fd: int | None = None

    def start(self, timeout: float | None = None) -> None:
        """Copy the model into the private directory, then start its inference server there."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        model_dir = self.private / "model"
        with open(self.log_path, "ab") as out:
            out.write(f"\n=== starting inference server for {self.model_uri} ===\n".encode())
            out.flush()
            self._fetch(model_dir, out, timeout or ready_timeout())
            python = self._environment(model_dir, out, timeout or ready_timeout())
            read_end, write_end = os.pipe()
            try:
                if self.zygote is not None and python == sys.executable:
                    # fidelity: Online endpoints - inference server start (a warm parent forks it)
                    self.proc = self.zygote.fork({"op": "serve", "model_dir": str(model_dir),
                                                  "private_dir": str(self.private)},
                                                 [out.fileno(), write_end], {"secret": self.secret})
                else:
                    env = model_env(model_dir)
                    if self.environment is not None:
                        env["VIRTUAL_ENV"] = str(self.environment)
                    self.proc = subprocess.Popen(
                        [python, "-m", RUNNER, "--ready-fd", str(write_end), "--parent-pid", str(os.getpid()),
                         "--private-dir", str(self.private)],
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=env,
                        cwd=model_dir, pass_fds=(write_end,))
                    self.proc.stdin.write(f"{self.secret}\n".encode())
                    self.proc.stdin.close()
            except BaseException:
                os.close(read_end)
                self.stop()
                raise
            finally:
                os.close(write_end)
            self._ready_fd = read_end

    def _fetch(self, model_dir: Path, out, timeout: float) -> None:
        """Copy the registered version into ``model_dir`` (a zygote's child, else a new process)."""
        try:
            if self.zygote is not None:
                uris = {k: v for k, v in self.fetch_env.items()
                        if k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN")}
                code = self.zygote.fork({"op": "fetch", "model_uri": self.model_uri, "dest": str(model_dir)},
                                        [out.fileno()], {"env": uris}).wait(timeout)
            else:
                code = subprocess.run([sys.executable, "-m", RUNNER, "--fetch", self.model_uri, "--dest",
                                       str(model_dir)], stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.fetch_env, check=False,
                                      timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            self.stop()
            raise DeploymentFailed(f"Downloading {self.model_uri} took too long:\n{tail(self.log_path, 25)}") from None
        except BaseException:
            self.stop()
            raise
        if code != 0:
            self.stop()
            raise DeploymentFailed(f"The inference server could not download {self.model_uri}:\n"
                                   f"{tail(self.log_path, 25)}")

    def _environment(self, model_dir: Path, out, timeout: float) -> str:
        """The python the model runs in: the server's own, or one built from the model's requirements."""
        if self.envs_dir is None:
            return sys.executable

        def log(line: str) -> None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"{stamp} INFO azureml.environment: {line}\n".encode())
            out.flush()

        try:
            python, self.environment = model_environments.prepare(model_dir, self.envs_dir, log, timeout)
        except model_environments.EnvironmentBuildFailed as exc:
            log(f"Image build failed: {exc}")
            self.stop()
            # fidelity: Online endpoints - model environments (ImageBuildFailure)
            raise DeploymentFailed(f"Image build failed: {exc}", code="ImageBuildFailure") from None
        except BaseException:
            self.stop()
            raise
        return python

    def wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        received = b""
        while True:
            if self._ready_fd is not None and select.select([self._ready_fd], [], [], 0.1)[0]:
                chunk = os.read(self._ready_fd, 4096)
                received += chunk
                try:
                    self.port = int(json.loads(received)["port"])
                    self._close_ready()
                    return self.port
                except (ValueError, KeyError):  # not all written yet
                    if not chunk:
                        self._close_ready()  # closed without a port: it is exiting (the poll below says how)
            elif self._ready_fd is None:
                time.sleep(0.1)
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                self.stop()
                raise DeploymentFailed(f"The inference server exited with code {code} while loading "
                                       f"{self.model_uri}:\n{tail(self.log_path, 25)}")
            if time.monotonic() > deadline:
                self.stop()
                raise DeploymentFailed(f"The inference server did not become ready within {timeout:g} s "
                                       f"(loading {self.model_uri}):\n{tail(self.log_path, 25)}")

    def _close_ready(self) -> None:
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self._close_ready()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.private, ignore_errors=True)


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

    def __init__(self, root: Path, fetch_env: dict[str, str], envs_dir: Path | None = None):
        self.root = Path(root)
        self.fetch_env = fetch_env  # for the download step only (emulator.services.azureml.deployment_runner)
        self.envs_dir = envs_dir  # model environments (emulator.services.azureml.model_environments)
        # One warm parent that forks the downloads and the fast path's inference servers.
        self.zygote = Zygote(self.root / "inference-zygote.log", model_env(Path(tempfile.gettempdir())))
        self._procs: dict[tuple[str, str], ServingProcess] = {}
        self._lock = threading.Lock()

    def log_path(self, endpoint: str, deployment: str) -> Path:
        # Names are validated ([a-zA-Z0-9-]) before they get here; quoted all the same.
        return self.root / quote(endpoint, safe="") / f"{quote(deployment, safe='')}.log"

    def start(self, endpoint: str, deployment: str, model_uri: str) -> int:
        """Start a new generation and wait until it serves; then it replaces the old one."""
        proc = ServingProcess(model_uri, self.log_path(endpoint, deployment), self.fetch_env, self.envs_dir,
                              self.zygote)
        proc.start()
        port = proc.wait_ready(ready_timeout())
        with self._lock:
            old = self._procs.get((endpoint, deployment))
            self._procs[(endpoint, deployment)] = proc
        if old is not None:
            old.stop()
        return port

    def warm(self) -> None:
        """Start the inference servers' warm parent now (an endpoint is created: a deployment follows)."""
        try:
            self.zygote.warm()
        except OSError:
            _logger.exception("starting the inference zygote")

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
        self.zygote.stop()
