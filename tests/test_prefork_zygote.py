"""A warm pre-forking parent (emulator.control.prefork_zygote): `emulator up` through it gives the
same workspaces as the cold path, owned by their runfiles, in the requester's environment; any
trouble with it (no socket, a dead one, an environment its import does not fit) starts cold."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from emulator import settings
from emulator.control import launcher
from emulator.control import prefork_zygote_client as prefork_zygote
from emulator.control.state import StateDir
from harness.workspaces import Emulator

CLI = [sys.executable, "-m", "emulator.control.cli"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def zygote():
    zygote = prefork_zygote.start()
    try:
        assert zygote.ready(), Path(zygote.folder, "zygote.log").read_text()
        yield zygote
    finally:
        zygote.stop()


def cli_env(zygote_socket: str | None, **extra) -> dict:
    ports = {**{settings.PORT_ENV[role]: launcher.free_port() for role in settings.ROLES},
             settings.AZUREML_TLS_PORT_ENV: launcher.free_port(), settings.AZUREML_PROXY_PORT_ENV: launcher.free_port(),
             "EMULATOR_S3_PORT": launcher.free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, **extra}
    env[prefork_zygote.ENV] = zygote_socket or "off"
    return env


def cli(*args, env) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, *args], check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def authenticated(url: str, token: str) -> int:
    return requests.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code


def workspace_pids(state: StateDir) -> dict[str, int]:
    return {role: launcher.running_record(state, role)["pid"] for role in settings.ROLES}


@pytest.fixture
def state_dir(tmp_path):
    yield tmp_path / "state"
    Emulator(tmp_path / "state").down()  # whatever a test left running


def test_up_through_a_zygote_serves_workspaces_that_outlive_it_and_down_stops_them(state_dir):
    zygote = prefork_zygote.start()  # its own: this test stops it
    try:
        assert zygote.ready()
        cli("up", "--state-dir", str(state_dir), env=cli_env(zygote.socket))
        state = StateDir(state_dir)
        pids = workspace_pids(state)
        emu = Emulator(state_dir)
        for role, pid in pids.items():
            assert launcher.owned(state, role, timeout=60), role
            # Forked from the zygote's child (no exec: the zygote's command line), in a session of its own.
            assert cmdline(pid)[1:3] == ["-m", "emulator.control.prefork_zygote"], cmdline(pid)
            assert os.getsid(pid) == pid and os.getsid(pid) != os.getsid(zygote.pid)
            assert ppid(pid) != zygote.pid
        for ws in (emu.databricks, emu.azureml):
            assert authenticated(ws.url, ws.token) == 200
            assert authenticated(ws.url, "not-the-token") in (401, 403)
    finally:
        zygote.stop()
    assert zygote.proc.poll() is not None and not Path(zygote.folder).exists()
    for role, pid in pids.items():  # the zygote is gone; the workspaces are not
        assert launcher._alive(pid) and launcher.owned(state, role, timeout=60), role
    cli("down", "--state-dir", str(state_dir), env=cli_env(None))
    for pid in pids.values():
        assert launcher.wait_exited(pid, 60), pid
    assert all(launcher.running(state, role) is None for role in settings.ROLES)


def test_the_workspace_runs_in_the_requesters_environment_not_the_zygotes(zygote, state_dir):
    """EMULATOR_ACCESS_LOG and a credential-like variable are set only in the requester: the
    Databricks workspace logs its requests and names the credential it kept from MLflow."""
    env = cli_env(zygote.socket, EMULATOR_ACCESS_LOG="1", ZYGOTE_TEST_SECRET_TOKEN="not-for-mlflow")
    cli("up", "--state-dir", str(state_dir), env=env)
    state = StateDir(state_dir)
    db = Emulator(state_dir).databricks
    assert cmdline(workspace_pids(state)["databricks"])[1:3] == ["-m", "emulator.control.prefork_zygote"]
    assert authenticated(db.url, db.token) == 200
    log = launcher.log_path(state, "databricks").read_text()
    assert "GET /api/2.0/mlflow/experiments/search" in log, log[-3000:]
    assert "ZYGOTE_TEST_SECRET_TOKEN" in log.split("not passed to MLflow", 1)[1].splitlines()[0], log[-3000:]
    assert "starting cold" not in log


@pytest.mark.parametrize("variable", ["PYDANTIC_DISABLE_PLUGINS", "PYTHONFAULTHANDLER"])
def test_an_environment_the_warm_import_does_not_fit_starts_cold_under_the_same_pid(zygote, state_dir, variable):
    """A variable the zygote's import read (pydantic's) or its interpreter did (PYTHON*), set
    otherwise by the requester: the child replaces itself with the cold prefork process."""
    value = "1" if os.environ.get(variable) != "1" else "true"  # another value than the zygote's
    cli("up", "--state-dir", str(state_dir), env=cli_env(zygote.socket, **{variable: value}))
    state = StateDir(state_dir)
    for role, pid in workspace_pids(state).items():
        assert cmdline(pid)[1:3] == ["-m", "emulator.control.prefork"], cmdline(pid)
        assert launcher.owned(state, role, timeout=60), role
    assert f"starting cold (the import read {variable}" in launcher.log_path(state, "databricks").read_text() \
        or "starting cold (the import read PYTHON*/locale" in launcher.log_path(state, "databricks").read_text()


def dead_socket(folder: Path) -> str:
    path = str(folder / "dead.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # bound, never listening, then closed: connect is refused
    return path


@pytest.mark.parametrize("where", ["missing", "dead"])
def test_a_missing_or_dead_zygote_falls_back_to_the_cold_path(state_dir, tmp_path, where):
    path = str(tmp_path / "no-such.sock") if where == "missing" else dead_socket(tmp_path)
    cli("up", "--state-dir", str(state_dir), env=cli_env(path))
    state = StateDir(state_dir)
    for role, pid in workspace_pids(state).items():
        assert cmdline(pid)[1:3] == ["-m", "emulator.control.prefork"], cmdline(pid)
        assert launcher.owned(state, role, timeout=60), role


def test_down_right_after_a_warm_launch_leaves_nothing_running(zygote, tmp_path, monkeypatch):
    """The runfile protocol holds with a warm parent: stopped before the hand-over, nothing serves."""
    monkeypatch.setenv(prefork_zygote.ENV, zygote.socket)
    state = StateDir(tmp_path / "state")
    procs = launcher.start_all(state, [launcher.Launch(role, port=launcher.free_port(), extra_ports={
        "tls": launcher.free_port(), "proxy": launcher.free_port()} if role == "azureml" else None)
        for role in settings.ROLES])
    parent = procs[0].pid
    assert cmdline(parent)[1:3] == ["-m", "emulator.control.prefork_zygote"]
    for role in settings.ROLES:
        launcher.stop(state, role)
    assert launcher.wait_exited(parent, 60)
    for proc in procs:
        assert launcher.running(state, proc.role) is None
        assert not launcher.port_in_use(proc.host, proc.port), proc.role


def test_the_zygote_socket_is_private_and_it_stops_when_its_socket_goes(tmp_path):
    zygote = prefork_zygote.start()
    try:
        assert zygote.ready()
        assert (os.stat(zygote.socket).st_mode & 0o777) == 0o600
        assert (os.stat(zygote.folder).st_mode & 0o777) == 0o700
        os.unlink(zygote.socket)
        zygote.proc.wait(30)  # noticed within its poll period
    finally:
        zygote.stop()


SESSION_TEST = '''
import json, os, sys
from harness import pytest_plugin

def test_session(request, emulated_workspaces):
    zygote, _ = request.config.stash.get(pytest_plugin._ZYGOTE, (None, None))
    from emulator.control import launcher
    pid = launcher.running_record(emulated_workspaces.state, "databricks")["pid"]
    print("ZYGOTE " + json.dumps({"env": os.environ.get("EMULATOR_PREFORK_ZYGOTE"),
                                  "pid": zygote.pid if zygote else None,
                                  "folder": zygote.folder if zygote else None,
                                  "workspace": open(f"/proc/{pid}/cmdline").read().split(chr(0))[1:3]}))
'''


def run_session(tmp_path: Path, setting: str | None, test: str = SESSION_TEST) -> dict:
    (tmp_path / "test_session.py").write_text(test)
    env = {k: v for k, v in os.environ.items() if k != prefork_zygote.ENV}
    if setting is not None:
        env[prefork_zygote.ENV] = setting
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_session.py"],
                          check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    line = next(li for li in done.stdout.splitlines() if li.startswith("ZYGOTE "))
    import json

    return json.loads(line[len("ZYGOTE "):])


def test_the_plugin_runs_one_zygote_per_session_and_leaves_none_behind(tmp_path):
    seen = run_session(tmp_path, None)
    assert seen["pid"] and seen["env"] == os.path.join(seen["folder"], "prefork.sock")
    # The session's workspaces waited for it: forked from it, not from a cold import.
    assert seen["workspace"] == ["-m", "emulator.control.prefork_zygote"]
    assert launcher.wait_exited(seen["pid"], 30), "the session's zygote outlived it"
    assert not Path(seen["folder"]).exists()


def test_the_plugin_starts_no_zygote_when_it_is_off(tmp_path):
    seen = run_session(tmp_path, "off")
    assert seen == {"env": "off", "pid": None, "folder": None, "workspace": ["-m", "emulator.control.prefork"]}


def test_a_zygote_whose_session_was_killed_exits_and_tidies_its_folder(tmp_path):
    starter = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from emulator.control import prefork_zygote_client as z\n"
        "zygote = z.start(); assert zygote.ready()\n"
        "print(zygote.pid, zygote.folder, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        pid, folder = starter.stdout.readline().split()
        starter.kill()  # no atexit, no session finish
        starter.wait(30)
        assert launcher.wait_exited(int(pid), 60), "the zygote outlived its session"
        assert not Path(folder).exists()
    finally:
        if starter.poll() is None:
            starter.kill()


def test_a_session_whose_tests_start_no_workspace_starts_no_zygote(tmp_path):
    """The plugin comes with the package: a project's unrelated tests pay nothing for it."""
    test = SESSION_TEST.replace("def test_session(request, emulated_workspaces):", "def test_session(request):")
    test = test.replace('pid = launcher.running_record(emulated_workspaces.state, "databricks")["pid"]', "pid = None")
    test = test.replace('open(f"/proc/{pid}/cmdline").read().split(chr(0))[1:3]', "None")
    assert run_session(tmp_path, None, test) == {"env": None, "pid": None, "folder": None, "workspace": None}
    assert run_session(tmp_path, "on", test)["pid"]  # unless asked for
