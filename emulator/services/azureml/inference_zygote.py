"""A warm parent for inference servers that run in the workspace's own Python (the fast path).

Started a new ``python -m ...deployment_runner`` per step, a deployment paid two interpreter
starts and two imports of MLflow (the download, then the server: import mlflow.pyfunc, pandas, the
model's flavour), most of its seconds. Instead one process per workspace (``--zygote-fd``) imports
all that once and forks a child per step: the download of a version (``fetch``), then the
inference server (``serve``). It runs no model code itself, holds no token or secret between
requests, and its environment is the model's (``deployment_pool.model_env``): a forked child
starts as clean as a new process would, minus the imports.

Protocol (a SOCK_SEQPACKET socketpair, one JSON message per packet): the workspace sends
``{"id", "op": "fetch"|"serve", ...}`` with file descriptors attached (SCM_RIGHTS: the log file,
for ``serve`` the ready pipe's write end, last a pipe holding the child's secrets: the download's
token, the server's per-deployment secret). The zygote passes that pipe on unread, so no secret is
ever in its memory for a later child (another deployment's model code) to find. It answers ``{"id", "pid"}`` and later
``{"exit": pid, "code"}`` once it has reaped that child; ``{"ready": true}`` once its imports are
done. The zygote exits when the socket closes or the workspace server is gone; its children exit
when the zygote is gone (``deployment_runner._watch_parent``).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_logger = logging.getLogger("azureml.zygote")

RUNNER = "emulator.services.azureml.deployment_runner"
# What every inference server needs, then what common MLflow flavours load (best effort: an
# import that fails here is the model's to fail on, in its own child).
PRELOAD = ("mlflow.pyfunc", "mlflow.pyfunc.scoring_server", "mlflow.artifacts", "pandas", "numpy", "waitress")
# skops.io: how MLflow 3 stores scikit-learn models; importing it walks all of scikit-learn (~8 s
# of a loaded machine's CPU, measured in a deployment's profile).
PRELOAD_OPTIONAL = ("mlflow.sklearn", "sklearn.linear_model", "sklearn.ensemble", "sklearn.pipeline",
                    "sklearn.preprocessing", "skops.io")
MAX_PACKET = 65536
READY_TIMEOUT_S = 600.0


# -- the zygote process ----------------------------------------------------------------------------
def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_OPTIONAL:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 -- not installed or broken: the model needing it fails in its child
            _logger.info("not preloaded: %s", name)
    try:
        # load_model checks the model's requirements against what is installed: MLflow maps every
        # installed distribution to its modules once per process (the other half of that profile).
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except Exception:  # noqa: BLE001 -- a private MLflow helper: without it, each child maps them itself
        _logger.info("not preloaded: MLflow's map of installed packages")
    gc.collect()
    gc.freeze()  # what every child shares: its first collection need not walk (and copy) it


def _child(request: dict, fds: list[int], sock: socket.socket, steps: Steps) -> int:
    """In the forked child: become the requested step. Never returns to the zygote's loop."""
    sock.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with os.fdopen(fds[-1], "rb") as pipe:
        private = json.loads(pipe.read())
    log_fd = fds[0]
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    steps.reset_logging()
    if request["op"] == "fetch":
        # The download's MLflow URIs and token: only this child gets them (it runs no model code).
        os.environ.update(private["env"])
        return steps.fetch(request["model_uri"], request["dest"])
    os.chdir(request["model_dir"])
    os.environ["HOME"] = request["model_dir"]
    return steps.serve(private["secret"], fds[1], os.getppid(), request.get("private_dir"))


def _send(sock: socket.socket, message: dict) -> None:
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        pass  # the workspace is gone; the loop notices


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


@dataclass(frozen=True)
class Steps:
    """What a child becomes: deployment_runner's functions (passed in: it is the one importing us)."""

    fetch: Callable[[str, str], int]
    serve: Callable[[str, int, int, str | None], int]
    reset_logging: Callable[[], None]


def run(fd: int, parent_pid: int, steps: Steps) -> int:
    sock = socket.socket(fileno=fd)
    _preload()
    _send(sock, {"ready": True, "pid": os.getpid()})
    _logger.info("inference zygote ready (pid %s)", os.getpid())
    while True:
        _reap(sock)
        if os.getppid() != parent_pid:
            return 0  # the workspace server is gone; the children follow (they watch this process)
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_PACKET, 4)
        except OSError:
            return 0
        if not data:
            return 0  # the workspace closed the socket: stop
        request = json.loads(data)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request, fds, sock, steps)
            except BaseException:
                logging.getLogger("azureml.inference").exception("inference server failed")
            finally:
                sys.stdout.flush()
                os._exit(code)
        for child_fd in fds:
            os.close(child_fd)
        _send(sock, {"id": request["id"], "pid": pid})


# -- the workspace's side --------------------------------------------------------------------------
class ForkedProcess:
    """A zygote's child as deployment_pool uses a Popen: pid, poll, terminate, kill, wait."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self._done = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._done.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.returncode is None:  # reaped only after we learn its exit: the pid is still its own
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class Zygote:
    """The workspace's handle on its zygote: started on first use, started again if it died."""

    def __init__(self, log_path: Path, env: dict[str, str]):
        self.log_path = log_path
        self.env = env
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._reply_cv = threading.Condition()
        self._children: dict[int, tuple[ForkedProcess, subprocess.Popen]] = {}  # pid -> (child, its zygote)
        self._early_exits: dict[int, int] = {}
        self._home: str | None = None

    def warm(self) -> None:
        """Start the zygote in the background (no-op when it runs)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._ready.clear()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # A home of its own, outside the state dir (mkdtemp: 0700); each child moves to its model's.
            self._home = self._home if self._home and os.path.isdir(self._home) else tempfile.mkdtemp(
                prefix="azureml-zygote-")
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", RUNNER, "--zygote-fd", str(theirs.fileno()),
                     "--parent-pid", str(os.getpid())],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**self.env, "HOME": self._home}, cwd=self._home, pass_fds=(theirs.fileno(),))
            theirs.close()
            self._sock = ours
            threading.Thread(target=self._read, args=(ours, self._proc), name="inference-zygote", daemon=True).start()

    def _read(self, sock: socket.socket, proc: subprocess.Popen) -> None:
        while True:
            try:
                data = sock.recv(MAX_PACKET)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            if message.get("ready"):
                self._ready.set()
            elif "exit" in message:
                with self._reply_cv:
                    child, _ = self._children.pop(message["exit"], (None, None))
                    if child is None:
                        self._early_exits[message["exit"]] = message["code"]
                if child is not None:
                    child._exited(message["code"])
            else:
                with self._reply_cv:
                    self._replies[message["id"]] = message
                    self._reply_cv.notify_all()
        # The zygote is gone: so are its children (they watch it); none will report an exit now.
        with self._reply_cv:
            children = [pid for pid, (_, zygote) in self._children.items() if zygote is proc]
            children = [self._children.pop(pid)[0] for pid in children]
            self._reply_cv.notify_all()
        for child in children:
            child._exited(-1)
        proc.wait()

    def fork(self, request: dict, fds: list[int], private: dict,
             timeout: float = READY_TIMEOUT_S) -> ForkedProcess:
        """Ask for a child (``op`` fetch or serve); ``private`` reaches only the child (a pipe)."""
        self.warm()
        if not self._ready.wait(timeout):
            raise RuntimeError("the inference zygote did not become ready")
        with self._reply_cv:
            self._next_id += 1
            request_id = self._next_id
        with self._lock:
            sock, proc = self._sock, self._proc
        if sock is None or proc is None:
            raise RuntimeError("the inference zygote was stopped")
        read_end, write_end = os.pipe()
        try:
            with os.fdopen(write_end, "wb") as pipe:  # small: fits the pipe's buffer, no reader needed yet
                pipe.write(json.dumps(private).encode())
            socket.send_fds(sock, [json.dumps({**request, "id": request_id}).encode()], [*fds, read_end])
        finally:
            os.close(read_end)
        with self._reply_cv:
            if not self._reply_cv.wait_for(lambda: request_id in self._replies or proc.poll() is not None, timeout):
                raise RuntimeError("the inference zygote did not answer")
            reply = self._replies.pop(request_id, None)
            if reply is None:
                raise RuntimeError("the inference zygote exited")
            child = ForkedProcess(reply["pid"])
            if reply["pid"] in self._early_exits:  # it exited before we registered it
                child._exited(self._early_exits.pop(reply["pid"]))
            else:
                self._children[reply["pid"]] = (child, proc)
        return child

    def stop(self) -> None:
        with self._lock:
            sock, proc, self._sock, self._proc = self._sock, self._proc, None, None
        if sock is not None:
            sock.close()
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._home:
            shutil.rmtree(self._home, ignore_errors=True)
