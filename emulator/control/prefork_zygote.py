"""A warm pre-forking parent for a session of starts: ``python -m emulator.control.prefork_zygote SOCKET``.

Each local-mode start runs ``python -m emulator.control.prefork SPEC``, which spends most of its
seconds importing MLflow's server before it forks the workspaces. A zygote imports it once
(``emulator.workspace.app.preload``) and then, for each request on its Unix socket, forks a child
that becomes exactly that prefork process: the request carries the SPEC, the requester's whole
environment, cwd and umask, and (SCM_RIGHTS) its log file and the pipe whose end of file says the
runfiles are written. The child takes its own session, those descriptors, that environment, cwd
and umask, then runs ``prefork.main``; the zygote answers its PID, which the launcher writes into
the runfiles as it writes a Popen's today (emulator.control.launcher).

What the import read from the environment was read in the zygote's, not the requester's: the
zygote notes every variable its import reads, and a child whose environment (set up as the
prefork process's would be) differs in one of them, or whose interpreter, ``emulator`` package,
``PYTHON*`` or locale settings differ, replaces itself (same PID, same descriptors) with the cold
``python -m emulator.control.prefork SPEC``. Nothing the zygote holds is shared with a requester
but imported code: it starts no thread (prefork refuses to fork with one), reaps its children,
accepts only its own user, and exits on SIGTERM, when its socket is removed, or when the process
that started it is gone.

The requester's side and the session's are emulator.control.prefork_zygote_client.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from emulator.control.prefork_zygote_client import ANSWER_TIMEOUT_S, emulator_dir

MAX_REQUEST = 4 * 1024 * 1024

_logger = logging.getLogger(__name__)

# Variables an import reads whose value there does not carry over to the workspace:
_NOT_CARRIED = {
    "HOME": "read for MLflow's MLFLOW_ENV_ROOT default, derived again in the child (_refresh_home)",
    "PATH": "read to run `uname -p` for platform.processor(): the machine's answer whatever the PATH",
}
_TRUTHY_ONLY = {"_MLFLOW_SERVER_FILE_STORE"}  # mlflow.server asks only whether it is set (the path differs per state dir)
_IGNORED_READERS = (f"{os.sep}mlflow{os.sep}telemetry{os.sep}",)  # telemetry is off in every server (server_env.NO_EGRESS)


def _interpreter_env(env: dict) -> dict:
    """What the interpreter read at its start (path, flags, hash seed, locale): must be the zygote's."""
    return {k: v for k, v in env.items() if k.startswith(("PYTHON", "LC_")) or k in ("LANG", "LANGUAGE")}


# -- the zygote --------------------------------------------------------------------------------------
@dataclass
class _Warm:
    """What the zygote's import depended on."""
    interpreter: dict
    import_reads: dict  # name -> value when the import first read it (None: unset)
    cwd: str  # where its interpreter started (relative PYTHONPATH entries were resolved there)


def _recorded_import():
    """Run emulator.workspace.app.import_server, noting each variable it reads and its value then."""
    from emulator.workspace import app as server

    reads: dict[str, str | None] = {}
    readers: dict[str, set] = {}
    get = os._Environ.__getitem__

    def recording(self, key):
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code.co_filename.startswith("<frozen")
                                     or frame.f_code.co_filename == os.__file__):
            frame = frame.f_back
        readers.setdefault(name, set()).add(frame.f_code.co_filename if frame else "?")
        try:
            value = get(self, key)
        except KeyError:
            reads.setdefault(name, None)
            raise
        reads.setdefault(name, value.decode(errors="replace") if isinstance(value, bytes) else value)
        return value

    os._Environ.__getitem__ = recording
    try:
        server.import_server()
    finally:
        os._Environ.__getitem__ = get
    return {name: value for name, value in reads.items()
            if not all(any(part in f for part in _IGNORED_READERS) for f in readers[name])}


def _preload(private: Path) -> _Warm:
    from emulator.control import prefork  # noqa: F401  (what each child runs)
    from emulator.settings import ServerConfig
    from emulator.workspace import app as server

    interpreter = _interpreter_env(os.environ)
    # A workspace of its own, never served: its environment is set up as a prefork parent's is.
    config = ServerConfig(role="databricks", host="127.0.0.1", port=0, state_dir=str(private / "state"),
                          token="", public_url="http://127.0.0.1:0")
    gc.disable()  # as prefork.main: the import's objects are long-lived
    server.prepare_environment(config)
    reads = _recorded_import()
    gc.freeze()
    gc.enable()
    return _Warm(interpreter, reads, os.getcwd())


def _differences(warm: _Warm, requested: dict) -> list[str]:
    """Why a child cannot use the warm import (empty: it can): checked against the environment as
    the prefork process has it after ``prepare_environment`` (the requester's, scrubbed)."""
    now = os.environ
    found = []
    for name, value in warm.import_reads.items():
        if name in _NOT_CARRIED:
            continue
        if name in _TRUTHY_ONLY:
            if bool(value) != bool(now.get(name)):
                found.append(name)
        elif now.get(name) != value:
            found.append(name)
    if _interpreter_env(requested) != warm.interpreter:
        found.append("PYTHON*/locale")
    relative = [p for p in requested.get("PYTHONPATH", "").split(os.pathsep) if p and not os.path.isabs(p)]
    if relative and os.getcwd() != warm.cwd:
        found.append("PYTHONPATH (relative to another folder)")
    return found


def _refresh_home() -> None:
    """MLflow derives MLFLOW_ENV_ROOT's default from HOME at import: derive it from this child's."""
    from mlflow import environment_variables

    environment_variables.MLFLOW_ENV_ROOT.default = str(Path.home().joinpath(".mlflow", "envs"))


def _exec_cold(request: dict, why: str) -> None:
    """Become the cold ``python -m emulator.control.prefork SPEC`` (same PID and descriptors)."""
    sys.stderr.write(f"prefork zygote: starting cold ({why})\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    exe = request["executable"]
    os.execve(exe, [exe, "-m", "emulator.control.prefork", request["spec"]], request["env"])


def _child(request: dict, fds: list[int], warm: _Warm) -> None:
    """In the forked child: become the prefork process the request describes (never returns)."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the servers wait on their own subprocesses
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGCHLD})
        os.setsid()  # as Popen(start_new_session=True): not hit by signals meant for the zygote
        log, stdin = fds
        os.dup2(stdin, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(stdin)
        os.close(log)
        logging.root.handlers.clear()  # the zygote's log set-up: a prefork process has none
        logging.root.setLevel(logging.WARNING)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        tempfile.tempdir = None  # chosen again from this environment's TMPDIR
        from emulator.control import prefork

        sys.argv = [prefork.__file__, request["spec"]]
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        if request["executable"] != sys.executable or request["emulator"] != emulator_dir():
            _exec_cold(request, "another interpreter or emulator package")

        def check() -> None:
            differ = _differences(warm, request["env"])
            if differ:
                _exec_cold(request, f"the import read {', '.join(sorted(differ))} differently")
            _refresh_home()

        code = prefork.main([request["spec"]], after_preload=check)
    except BaseException:  # noqa: BLE001 - the workspace's log is the only place it can go
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[1]
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 2)
    if not data and not fds:
        raise _Probe  # ZygoteProcess.ready: connected and closed
    try:
        if uid != os.getuid():
            raise ValueError(f"a request from uid {uid}")
        while not data.endswith(b"\n"):
            more = conn.recv(65536)
            if not more or len(data) > MAX_REQUEST:
                raise ValueError("incomplete request")
            data += more
        request = json.loads(data)
        if len(fds) != 2 or not isinstance(request.get("spec"), str) or not isinstance(request.get("env"), dict) \
                or not isinstance(request.get("umask"), int) or not all(
                    isinstance(request.get(key), str) for key in ("cwd", "executable", "emulator")):
            raise ValueError("malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _reap(_signum=None, _frame=None) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class _Probe(Exception):
    pass


class _Stop(Exception):
    pass


def _stop(_signum, _frame) -> None:
    raise _Stop


def serve(path: str, parent: int | None = None) -> int:
    """The zygote: preload, then fork a prefork process per request until told to stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    private = Path(path).parent
    warm = _preload(private)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, _stop)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            listener.bind(path)  # 0600, in the starter's private (0700) folder
        finally:
            os.umask(old)
        inode = os.stat(path).st_ino
        listener.listen(16)
        listener.settimeout(1.0)
        _logger.info("prefork zygote ready on %s (pid %s); the import read %d variables",
                     path, os.getpid(), len(warm.import_reads))
        while True:
            try:
                if os.stat(path).st_ino != inode:
                    return 0
            except FileNotFoundError:
                return 0  # the socket is gone: so are its requesters
            if parent is not None and os.getppid() != parent:
                # Its session ended without stopping it (killed): nobody else will tidy its folder.
                shutil.rmtree(private, ignore_errors=True)
                return 0
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                _answer(conn, listener, warm)
    except _Stop:
        return 0
    finally:
        listener.close()


def _answer(conn: socket.socket, listener: socket.socket, warm: _Warm) -> None:
    conn.settimeout(ANSWER_TIMEOUT_S)
    try:
        request, fds = _read_request(conn)
    except _Probe:
        return
    except (OSError, ValueError) as exc:
        _logger.warning("request refused: %s", exc)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    held = {signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)  # no handler of the zygote's runs in the child
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:
            conn.close()
            listener.close()
            _child(request, fds, warm)
    except OSError as exc:  # no answer: the requester starts the process itself
        _logger.warning("cannot fork: %s", exc)
    finally:
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    for fd in fds:
        os.close(fd)
    if pid <= 0:
        return
    try:
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    except OSError:
        pass  # the requester gave up: the child finds no runfile naming it and forks nothing
    _logger.info("forked prefork process %s", pid)


def main(argv: list[str]) -> int:
    parent = int(argv[argv.index("--parent-pid") + 1]) if "--parent-pid" in argv else None
    return serve(argv[0], parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
