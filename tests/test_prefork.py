"""Local mode's start-up: one process imports MLflow's server and forks both workspaces
(emulator.control.prefork); who runs a workspace stays its runfile, also when it is stopped mid-start."""

from pathlib import Path

import pytest
import requests

from emulator import settings
from emulator.control import launcher
from emulator.control.state import StateDir

ROLES = settings.ROLES


@pytest.fixture(autouse=True)
def cold_path(monkeypatch):
    """These pin the cold path (its import runs after the launch); a session's warm parent
    (emulator.control.prefork_zygote) is tested in test_prefork_zygote.py."""
    monkeypatch.setenv("EMULATOR_PREFORK_ZYGOTE", "off")


@pytest.fixture
def state(tmp_path):
    state = StateDir(tmp_path / "state")
    yield state
    for role in ROLES:  # whatever a test left running
        launcher.stop(state, role)


def launches() -> list[launcher.Launch]:
    return [launcher.Launch(role, port=launcher.free_port(),
                            extra_ports={"tls": launcher.free_port(), "proxy": launcher.free_port()}
                            if role == "azureml" else None) for role in ROLES]


def wait_gone(pid: int, timeout: float = 180.0) -> None:
    assert launcher.wait_exited(pid, timeout), f"pid {pid} still alive after {timeout:.0f} s"


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_both_workspaces_are_forked_from_one_import_and_each_owns_its_runfile(state):
    procs = launcher.start_all(state, launches())
    parent = procs[0].pid
    assert [p.pid for p in procs] == [parent, parent]  # one process starts both
    launcher.wait_healthy(state, procs)
    pids = {p.role: p.pid for p in procs}
    assert len(set(pids.values())) == 2 and parent not in pids.values()
    for proc in procs:
        assert launcher.running(state, proc.role).pid == proc.pid  # handed over to the child
        # Forked, not exec'd: the workspace process runs the parent's program.
        assert cmdline(proc.pid)[1:3] == ["-m", "emulator.control.prefork"], cmdline(proc.pid)
        info = requests.get(f"{proc.url}/__emulator/info", timeout=60).json()
        assert info["instance"] == proc.instance, proc.role
        assert launcher.owned(state, proc.role, timeout=60)
    wait_gone(parent)  # it exits once both are forked
    # Each stops on its own: stopping one leaves the other serving.
    assert launcher.stop(state, "azureml")
    assert not launcher._alive(pids["azureml"])
    assert launcher.owned(state, "databricks", timeout=60)


def test_a_workspace_stopped_while_the_import_runs_is_never_served_and_the_other_starts(state):
    databricks, azureml = launcher.start_all(state, launches())
    parent = azureml.pid
    # Right after the launch the parent is importing MLflow (seconds): the runfile names it.
    assert launcher.running_record(state, "azureml")["pid"] == parent
    assert launcher.stop(state, "azureml")
    assert launcher._alive(parent), "stopping one workspace must not end the other's start-up"
    launcher.wait_healthy(state, [databricks])
    wait_gone(parent)  # its decisions are all made once it is gone
    assert launcher.running(state, "azureml") is None
    assert not launcher.port_in_use(azureml.host, azureml.port)
    assert "Serving on" not in launcher.tail(launcher.log_path(state, "azureml"), 200)
    assert launcher.owned(state, "databricks", timeout=60)


def test_down_during_start_up_leaves_nothing_running(state):
    procs = launcher.start_all(state, launches())
    parent = procs[0].pid
    for role in ROLES:  # what `emulator down` does
        assert launcher.stop(state, role)
    wait_gone(parent, timeout=30)  # the last stop signals it: it needs not finish its import
    for proc in procs:
        assert launcher.running(state, proc.role) is None
        assert not launcher.port_in_use(proc.host, proc.port), proc.role
        assert "Serving on" not in launcher.tail(launcher.log_path(state, proc.role), 200)


def test_a_failure_before_the_fork_is_reported_in_each_workspace_log(state):
    state.ensure()
    (state.role_dir("databricks") / "home").write_text("a file where the server's HOME folder goes")
    procs = launcher.start_all(state, launches())
    try:
        launcher.wait_healthy(state, procs)
    except launcher.LaunchError as exc:
        message = str(exc)
    else:
        raise AssertionError("start-up succeeded on a state dir it cannot use")
    for role in ROLES:  # both ended with the parent; whichever the poll saw first, both are named
        assert f"the {role} workspace exited during start-up" in message, role
    assert "emulator.control.prefork) failed" in message and "FileExistsError" in message
    for role in ROLES:
        assert "FileExistsError" in launcher.tail(launcher.log_path(state, role), 200), role
        assert launcher.running(state, role) is None


def test_free_ports_handed_out_by_one_process_are_distinct():
    """The kernel hands a port just freed to the next bind(0) again; the launcher must not (one
    workspace once got the same port for its HTTPS listener and its proxy)."""
    ports = [launcher.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_emulator_start_brings_a_stopped_workspace_back_on_its_ports(state, monkeypatch):
    """Not on the role's default port (5001, 5002...): clients and `emulator status` were given these."""
    from click.testing import CliRunner

    from emulator.control.cli import main as emulator_cli

    for env in (*settings.PORT_ENV.values(), settings.AZUREML_TLS_PORT_ENV, settings.AZUREML_PROXY_PORT_ENV):
        monkeypatch.delenv(env, raising=False)
    procs = launcher.start_all(state, launches())
    launcher.wait_healthy(state, procs)
    runner, where = CliRunner(), ["--state-dir", str(state.root)]
    for proc in procs:
        assert runner.invoke(emulator_cli, ["stop", *where, proc.role]).exit_code == 0
        started = runner.invoke(emulator_cli, ["start", *where, proc.role, "--timeout", "180"])
        assert started.exit_code == 0, started.output
        again = launcher.owned(state, proc.role, timeout=60)
        assert again and again.pid != proc.pid
        assert (again.port, again.extra_ports) == (proc.port, proc.extra_ports), proc.role
        assert started.output.strip() == f"{proc.role}: {proc.url}"
