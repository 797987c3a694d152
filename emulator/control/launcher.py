"""Local mode: each workspace runs as a process of its own, tracked by a runfile (pid, ports,
instance id); the processes of one start are forked from one parent (emulator.control.prefork)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from emulator import settings
from emulator.control import prefork_zygote_client, s3_store
from emulator.control.processes import (  # the launcher's own vocabulary, re-exported for its callers
    LaunchError,
    free_port,
    healthy,
    port_in_use,
    tail,
    wait_exited,  # noqa: F401  (tests and bench wait on pids through the launcher)
    wait_ports_free,
)
from emulator.control.processes import alive as _alive
from emulator.control.processes import reap as _reap
from emulator.control.state import StateDir
from emulator.stores import templates as store_templates

# The launcher gives each server it starts a random id, records it in the runfile and the server
# answers it on /__emulator/info: a server on the port that answers another id is not ours.
INSTANCE_ENV = "EMULATOR_INSTANCE_ID"


@dataclass
class Running:
    role: str
    pid: int
    host: str
    port: int
    instance: str | None = None
    extra_ports: dict | None = None  # azureml: {"tls": ..., "proxy": ...}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def record(self) -> dict:
        """What its runfile holds (the role is the runfile's name)."""
        return {"pid": self.pid, "host": self.host, "port": self.port, "instance": self.instance,
                "extra_ports": self.extra_ports}


def store_templates_dir() -> Path:
    """Where new stores are copied from (emulator.stores.templates): beside the client venvs,
    outside any checkout; chosen here, on the user's side, and handed to the server."""
    from emulator.control.user_cache import cache_root

    return cache_root() / "store-templates"


def model_envs_dir() -> Path:
    """Where online deployments' model environments are built (emulator.services.azureml.model_environments):
    in the user's cache, so every state dir and restart reuses them; handed to the server."""
    from emulator.control.user_cache import cache_root

    return cache_root() / "model-envs"


def spark_catalog_cache() -> Path:
    """Where notebooks' catalog plugin is compiled (harness.spark_tables): in the user's cache, once
    per Spark version; handed to the server for its job tasks."""
    from emulator.control.user_cache import cache_root

    return cache_root() / "spark-catalog"


def server_config(state: StateDir, role: str, host: str, port: int, public_url: str | None = None,
                  **listeners):
    cfg = state.config()
    return settings.ServerConfig(
        role=role,
        host=host,
        port=port,
        state_dir=str(state.role_dir(role)),
        token=cfg[f"{role}_token"],
        public_url=public_url or f"http://{host}:{port}",
        user=cfg["databricks_user"],
        subscription_id=cfg["subscription_id"],
        resource_group=cfg["resource_group"],
        workspace_name=cfg["workspace_name"],
        location=cfg["location"],
        # Unity Catalog's model files: the server is told where the S3 store is, never looks it up.
        s3_url=s3_store.url(state) if role == "databricks" else "",
        **listeners,  # azureml: tls_port, proxy_port, tls_public_port
    )


def _runfile(state: StateDir, role: str) -> Path:
    return state.role_dir(role) / "server.json"


def log_path(state: StateDir, role: str) -> Path:
    return state.role_dir(role) / "server.log"


def running_record(state: StateDir, role: str) -> dict | None:
    """The runfile as written (its process may be gone)."""
    try:
        return json.loads(_runfile(state, role).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_runfile(state: StateDir, role: str, record: dict) -> None:
    """Replace the runfile atomically: a reader sees the old record or the new one, never a part."""
    runfile = _runfile(state, role)
    partial = runfile.with_name(f".{runfile.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record))
    partial.chmod(0o600)
    partial.replace(runfile)


def running(state: StateDir, role: str) -> Running | None:
    info = running_record(state, role)
    if info is None or not _alive(info["pid"]):
        return None
    return Running(role, info["pid"], info["host"], info["port"], info.get("instance"), info.get("extra_ports"))


# fidelity: Crash consistency, linking, readiness and ownership (hardening C)
def owned(state: StateDir, role: str, timeout: float = 2.0) -> Running | None:
    """The workspace this state dir started, if its process lives and the server on its port
    answers as that process (never a server another state dir, or someone else, started)."""
    if not state.root.is_dir():
        return None
    current = running(state, role)
    if current is None:
        return None
    try:
        info = requests.get(f"{current.url}/__emulator/info", timeout=timeout)
        answered = info.json().get("instance") if info.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
    if current.instance is None or answered != current.instance:
        return None
    return current if healthy(current.url, timeout) else None


_EXTRA_PORT_ENV = {"tls": settings.AZUREML_TLS_PORT_ENV, "proxy": settings.AZUREML_PROXY_PORT_ENV}


def _azureml_ports(host: str, wanted: dict | None) -> dict:
    """The Azure ML HTTPS and proxy ports (0 = a free one). A port set explicitly (argument or
    environment) must be free; the built-in defaults (5003, 5004) fall back to free ports when
    taken, e.g. by another state dir's emulator: clients read the actual ones from `emulator status`."""
    envs = _EXTRA_PORT_ENV
    ports = dict(settings.azureml_extra_ports(), **(wanted or {}))
    for name, port in ports.items():
        explicit = name in (wanted or {}) or bool(os.environ.get(envs[name]))
        if port == 0 or (not explicit and port_in_use(host, port)):
            ports[name] = free_port(host)
        elif port_in_use(host, port):
            raise LaunchError(f"cannot start the azureml workspace: its {name} port {host}:{port} is "
                              f"already in use. Pick another with {envs[name]}=<port>.")
    return ports


@dataclass
class Launch:
    """One workspace to start: its role and where it listens (port None: the role's setting, 0: a
    free one; extra_ports: Azure ML's HTTPS and proxy ports, see _azureml_ports)."""
    role: str
    host: str = settings.DEFAULT_HOST
    port: int | None = None
    extra_ports: dict | None = None


def _ports_file(state: StateDir, role: str) -> Path:
    return state.role_dir(role) / "ports.json"


def remembered_launch(state: StateDir, role: str, host: str = settings.DEFAULT_HOST) -> Launch:
    """A workspace started again on the ports it last had in this state dir (its clients, the
    mirror link and `emulator status` were given them), except where the environment names others."""
    try:
        last = json.loads(_ports_file(state, role).read_text())
    except (FileNotFoundError, ValueError):
        return Launch(role, host)
    port = None if os.environ.get(settings.PORT_ENV[role]) else last.get("port")
    extra = {name: p for name, p in (last.get("extra_ports") or {}).items()
             if name in _EXTRA_PORT_ENV and not os.environ.get(_EXTRA_PORT_ENV[name])}
    return Launch(role, host, port, extra or None)


def start(state: StateDir, role: str, host: str = settings.DEFAULT_HOST, port: int | None = None,
          extra_ports: dict | None = None, wait_free: float = 0.0) -> Running:
    """Start one workspace unless it already runs; see start_all."""
    return start_all(state, [Launch(role, host, port, extra_ports)], wait_free)[0]


def start_all(state: StateDir, launches: list[Launch], wait_free: float = 0.0) -> list[Running]:
    """Start the workspaces of ``launches`` that do not run yet, from one process that imports
    MLflow once and forks a server per workspace (emulator.control.prefork); returns at once, in the
    order given (wait_healthy waits for them to answer). ``wait_free``: seconds to wait for given
    ports to become free (restarts on fixed ports) before refusing."""
    state.config()  # tokens exist before any server reads them
    result, new = [], []
    for launch in launches:
        current = running(state, launch.role)
        if current is None:
            current = _claim_ports(launch, wait_free)
            new.append(current)
        result.append(current)
    if new:
        if any(p.role == "databricks" for p in new):
            s3_store.reserve(state)  # its configuration names the S3 store's address
        _spawn(state, new)
    return result


def _claim_ports(launch: Launch, wait_free: float) -> Running:
    role, host = launch.role, launch.host
    port = settings.port_for(role) if launch.port is None else launch.port
    if port == 0:
        port = free_port(host)
    if wait_free:
        wait_ports_free(host, [port, *(launch.extra_ports or {}).values()], wait_free)
    if port_in_use(host, port):
        raise LaunchError(
            f"cannot start the {role} workspace: {host}:{port} is already in use. "
            f"Stop what holds it, or pick another port with {settings.PORT_ENV[role]}=<port>."
        )
    extra = _azureml_ports(host, launch.extra_ports) if role == "azureml" else None
    return Running(role, 0, host, port, secrets.token_hex(12), extra)


def prefork_spec(state: StateDir, procs: list[Running]) -> str:
    """The command-line argument the launcher passes: where each workspace listens, its identity."""
    # The runfile's record, with the role and without a pid (this process's is not known yet).
    workspaces = [{**{k: v for k, v in p.record().items() if k != "pid"}, "role": p.role} for p in procs]
    return json.dumps({"state_dir": str(state.root), "workspaces": workspaces})


def _spawn(state: StateDir, procs: list[Running]) -> None:
    """One emulator.control.prefork process for ``procs``; each runfile names it until it names the
    workspace's own process (the pre-forking parent hands it over). With EMULATOR_PREFORK_ZYGOTE, a
    warm zygote forks that process (emulator.control.prefork_zygote); without, or on any trouble with
    it, this process starts it."""
    logs = [log_path(state, p.role) for p in procs]
    for log in logs:
        log.touch(mode=0o600)
        os.chmod(log, 0o600)
    spec = prefork_spec(state, procs)
    # The store template folder is chosen here, on the user's side: the server scrubs HOME.
    env = {store_templates.ENV: str(store_templates_dir()), settings.MODEL_ENVS_ENV: str(model_envs_dir()),
           settings.SPARK_CATALOG_CACHE_ENV: str(spark_catalog_cache()), **os.environ}
    with open(logs[0], "ab") as out:  # until the fork; each child then writes to its own log
        forked = prefork_zygote_client.request(spec, env, out.fileno())
        if forked is not None:
            pid, stdin_write = forked
            proc, close_stdin = None, lambda: os.close(stdin_write)
        else:
            proc = subprocess.Popen(
                [sys.executable, "-m", "emulator.control.prefork", spec],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.PIPE,  # its end of file: the runfiles are written (or this process died)
                env=env,
                start_new_session=True,  # survives the CLI and is not hit by its Ctrl-C
            )
            pid, close_stdin = proc.pid, proc.stdin.close
    try:
        for p in procs:
            p.pid = pid
            write_runfile(state, p.role, p.record())
            _ports_file(state, p.role).write_text(json.dumps({"port": p.port, "extra_ports": p.extra_ports}))
    finally:
        close_stdin()
    if proc is not None:
        # Reaped as soon as it has forked (it exits then), whether or not anyone waits for health.
        # (A zygote reaps the processes it forks.)
        threading.Thread(target=proc.wait, name="emulator-prefork-reaper", daemon=True).start()


def wait_healthy(state: StateDir, procs: list[Running], timeout: float = 90.0, alongside=None) -> None:
    """Wait until every one of ``procs`` answers /health. ``alongside()``: more start-up work (e.g.
    the S3 store) run in a thread meanwhile; its exception, if any, is raised once they are up."""
    if alongside is not None:
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(alongside)
            wait_healthy(state, procs, timeout)
            other.result()
        return
    deadline = time.monotonic() + timeout
    pending = list(procs)

    def alive(proc: Running) -> bool:
        current = running(state, proc.role)
        if current is None or current.instance != proc.instance:
            return False
        proc.pid = current.pid  # the pre-forking parent hands the runfile over to the workspace's own
        return True

    while pending:
        for proc in list(pending):
            if not alive(proc):
                # Both workspaces start in one parent until the fork: when it fails, both end. Name
                # every one that did (checked again now), not whichever the poll reached first.
                exited = [p for p in pending if p is proc or not alive(p)]
                raise LaunchError("\n".join(
                    f"the {p.role} workspace exited during start-up; last lines of "
                    f"{log_path(state, p.role)}:\n{tail(log_path(state, p.role))}"
                    for p in exited
                ))
            if healthy(proc.url):
                pending.remove(proc)
        if pending and time.monotonic() > deadline:
            names = ", ".join(p.role for p in pending)
            raise LaunchError(f"timed out after {timeout:.0f}s waiting for {names} to answer /health")
        if pending:
            time.sleep(0.05)  # a local probe is cheap; each poll period is start-up users wait


def stop(state: StateDir, role: str, timeout: float = 15.0) -> bool:
    """Stop one workspace; True if it was running."""
    current = running(state, role)
    _runfile(state, role).unlink(missing_ok=True)
    if not current:
        return False
    if any((running_record(state, other) or {}).get("pid") == current.pid for other in settings.ROLES):
        # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
        # Still starting, in the parent that forks the other workspace too: without its runfile
        # this one is not forked, or ends before it binds a port (emulator.control.prefork).
        return True
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout

    # Every port it listened on: Azure ML's HTTPS listener and proxy too (a restart re-binds them all).
    ports = [current.port, *(current.extra_ports or {}).values()]

    def gone() -> bool:
        # A leader that has exited can look like a zombie while its other threads still hold the
        # listening sockets: done means the process is gone AND its ports are free again.
        return not _alive(current.pid) and not any(port_in_use(current.host, p) for p in ports)

    while not gone() and time.monotonic() < deadline:
        time.sleep(0.1)
    if not gone():
        try:
            os.kill(current.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while not gone() and time.monotonic() < deadline + 5:
            time.sleep(0.1)
    _reap(current.pid)
    return True


