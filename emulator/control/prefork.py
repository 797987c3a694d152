"""Local mode's workspace processes, forked from one parent that has imported MLflow's server once.

Every workspace process needs MLflow's server module, and importing it costs 3-4 s of CPU: two
workspaces importing it side by side on a 2-core machine (beside the S3 store's start) were most
of ``emulator up``. Here the launcher starts ONE process (``python -m emulator.control.prefork SPEC``)
that imports it (``emulator.workspace.app.preload``), then forks one server per workspace and exits;
each child opens its own stores and serves as ``emulator serve`` would. The same fork-after-import
gunicorn's ``--preload`` does. It is safe here because the import starts no thread and opens no
store or connection (MLflow opens its stores at first use; ``_fork`` refuses if a thread runs).

Who owns a workspace stays its runfile (emulator.control.launcher): the launcher writes each one naming
this parent, and the parent, with its signals held, replaces it with the child's PID right after
the fork. Stopping a workspace while this parent still imports removes its runfile (the parent
is signalled only when no other workspace waits for it): a workspace without one is not forked,
or its child is killed before it serves. A child binds its ports only after the parent has
decided, and only if the runfile still names it.

In a pytest session this process is usually not started but forked, already past the import, from
the session's warm zygote (emulator.control.prefork_zygote, ``EMULATOR_PREFORK_ZYGOTE``); it then
runs ``main`` exactly as here, in the requester's environment, cwd, umask and descriptors.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import threading
import traceback

from emulator.control import launcher
from emulator.control.state import StateDir

_HELD = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _config(state: StateDir, ws: dict):
    extra = ws.get("extra_ports")
    listeners = {"tls_port": extra["tls"], "proxy_port": extra["proxy"]} if extra else {}
    return launcher.server_config(state, ws["role"], ws["host"], ws["port"], **listeners)


def _named(state: StateDir, ws: dict, pid: int) -> dict | None:
    """The workspace's runfile record if it names ``pid`` for this start (a stop removes it, a
    new start replaces it), else None."""
    record = launcher.running_record(state, ws["role"]) or {}
    return record if record.get("pid") == pid and record.get("instance") == ws["instance"] else None


def _hand_over(state: StateDir, ws: dict, child: int) -> bool:
    """Name ``child`` in the workspace's runfile if it still names this process; else the workspace
    was stopped (or restarted by someone else) during start-up: False."""
    record = _named(state, ws, os.getpid())
    if record is None:
        return False
    launcher.write_runfile(state, ws["role"], {**record, "pid": child})
    return True


def _child(state: StateDir, ws: dict, config, go: int, scrubbed: list[str]) -> None:
    """In the forked child: its own session and log, then the server (never returns)."""
    code = 0
    try:
        os.setsid()  # like the launcher's start_new_session: not hit by signals meant for others
        log = os.open(launcher.log_path(state, ws["role"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        nothing = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((0, nothing), (1, log), (2, log)):
            os.dup2(target, fd)
        os.close(log)
        os.close(nothing)
        os.environ[launcher.INSTANCE_ENV] = ws["instance"]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        gc.enable()
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr, force=True)

        def still_wanted() -> bool:
            handed_over = os.read(go, 1) == b"1"  # the parent's decision (normally long made)
            return handed_over and _named(state, ws, os.getpid()) is not None

        from emulator.workspace import app as server

        server.serve(config, scrubbed=scrubbed, still_wanted=still_wanted)
    except BaseException:  # noqa: BLE001 - the log is the only place it can go
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# fidelity: Crash consistency, linking, readiness and ownership (hardening C)
def _fork(state: StateDir, workspaces: list[dict], scrubbed: list[str]) -> None:
    if threading.active_count() != 1:  # a forked child would hold a copy of a thread's locks
        raise RuntimeError(f"not forking with threads running: {threading.enumerate()}")
    configs = [_config(state, ws) for ws in workspaces]
    sys.stdout.flush()
    sys.stderr.flush()
    # Held until every runfile names its child: a stop arriving meanwhile ends this process only
    # after the hand-over, so it can find the child.
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    # What the import made is never scanned by a child's collector (a full collection of it is
    # ~0.2 s and writes to every page it visits, un-sharing them): gunicorn --preload's advice.
    gc.freeze()
    for ws, config in zip(workspaces, configs):
        if not _named(state, ws, os.getpid()):
            continue  # stopped while the import ran (emulator.control.launcher.stop)
        go_read, go_write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(go_write)
            _child(state, ws, config, go_read, scrubbed)
        os.close(go_read)
        if _hand_over(state, ws, child):
            os.write(go_write, b"1")
        else:
            os.kill(child, signal.SIGKILL)
        os.close(go_write)


def _record_failure(state: StateDir, workspaces: list[dict]) -> None:
    """A failure before the fork concerns every workspace: each log gets it (the launcher shows the
    log of the workspace it reports)."""
    text = f"the process starting the workspaces (emulator.control.prefork) failed:\n{traceback.format_exc()}"
    for ws in workspaces:
        with open(launcher.log_path(state, ws["role"]), "a") as log:
            log.write(text)


def main(argv: list[str], after_preload=None) -> int:
    """``after_preload()``: run once the environment is set and MLflow imported, before the wait
    for the runfiles (emulator.control.prefork_zygote checks there that its warm imports fit)."""
    plan = json.loads(argv[0])
    state = StateDir(plan["state_dir"])
    workspaces = plan["workspaces"]
    try:
        from emulator.workspace import app as server

        # The import makes ~500,000 long-lived objects: collecting while they are made only
        # rescans them (~15 % of the import's time). The children collect, the frozen objects aside.
        gc.disable()
        scrubbed = server.preload(_config(state, workspaces[0]))
        if after_preload is not None:
            after_preload()
        sys.stdin.buffer.read()  # the launcher has written the runfiles (normally long before)
        _fork(state, workspaces, scrubbed)
    except Exception:  # noqa: BLE001 - reported in the logs; the runfiles name a dead process
        _record_failure(state, workspaces)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
