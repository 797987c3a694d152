"""The requester's and the session's side of a prefork zygote (emulator.control.prefork_zygote):
``request`` asks it for a prefork process (the launcher), ``start`` runs one (the pytest plugin)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "EMULATOR_PREFORK_ZYGOTE"  # a socket path; "off" (or unset) for the cold path
OFF = ("", "0", "off", "false", "no")
ON = ("1", "on", "true", "yes")
ANSWER_TIMEOUT_S = 5.0  # connect + answer: a fork of a warm parent is milliseconds
READY_TIMEOUT_S = 120.0

_logger = logging.getLogger(__name__)


def emulator_dir() -> str:
    import emulator

    return os.path.dirname(os.path.realpath(emulator.__file__))


def _umask() -> int | None:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def request(spec: str, env: dict, log_fd: int) -> tuple[int, int] | None:
    """Ask the zygote ``EMULATOR_PREFORK_ZYGOTE`` names for a prefork process: (its pid, the write end
    of its stdin, to close once the runfiles name it), or None (no zygote, or any trouble: the
    caller starts the process itself)."""
    path = os.environ.get(ENV, "").strip()
    if path.lower() in OFF + ON:
        return None
    umask = _umask()
    if umask is None:
        return None
    stdin_read, stdin_write = os.pipe()
    try:
        message = {"spec": spec, "env": env, "cwd": os.getcwd(), "umask": umask,
                   "executable": sys.executable, "emulator": emulator_dir()}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(ANSWER_TIMEOUT_S)
            sock.connect(path)
            socket.send_fds(sock, [b"{"], [log_fd, stdin_read])
            sock.sendall(json.dumps(message).encode()[1:] + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                more = sock.recv(4096)
                if not more:
                    raise ValueError("no answer")
                answer += more
        pid = json.loads(answer)["pid"]
        if not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"bad answer {answer!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _logger.debug("prefork zygote %s not used (%s): starting the prefork process directly", path, exc)
        os.close(stdin_write)  # a child forked meanwhile reads end of file, finds no runfile naming it
        return None
    finally:
        os.close(stdin_read)
    return pid, stdin_write


# -- a session's zygote ------------------------------------------------------------------------------
@dataclass
class ZygoteProcess:
    pid: int
    socket: str
    folder: str
    proc: subprocess.Popen

    def ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """Wait until its socket answers (False: it did not, or it exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(ANSWER_TIMEOUT_S)
                    sock.connect(self.socket)
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """Stop it by PID and remove its folder (its children, the workspaces, live on)."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)


def start(env: dict | None = None) -> ZygoteProcess:
    """Start a zygote (it answers once its import is done: ``ready``) in a private folder."""
    folder = tempfile.mkdtemp(prefix="emulator-zygote-")  # 0700
    path = os.path.join(folder, "prefork.sock")
    if len(path.encode()) >= 100:  # sun_path's limit (108) with room
        shutil.rmtree(folder, ignore_errors=True)
        raise OSError(f"socket path too long: {path}")
    with open(os.path.join(folder, "zygote.log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulator.control.prefork_zygote", path, "--parent-pid", str(os.getpid())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={k: v for k, v in (os.environ if env is None else env).items() if k != ENV},
            start_new_session=True,  # not hit by the session's Ctrl-C before its own clean-up
        )
    return ZygoteProcess(proc.pid, path, folder, proc)


