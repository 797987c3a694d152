"""The launcher and CLI: real server processes, real HTTP, state on disk."""

import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing

import requests
from mlflow import MlflowClient

from emulator import settings
from emulator.control import launcher
from emulator.control.state import StateDir
from harness.workspaces import Emulator

EMULATOR = [sys.executable, "-m", "emulator.control.cli"]


def run_cli(*args, env=None, check=True):
    proc = subprocess.run([*EMULATOR, *args], capture_output=True, text=True, env=env, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"emulator {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_env(**ports):
    env = dict(os.environ)
    for role, port in ports.items():
        env[f"EMULATOR_{role.upper()}_PORT"] = str(port)
    return env


def test_up_status_down_via_cli(tmp_path):
    state = tmp_path / "state"
    env = cli_env(databricks=launcher.free_port(), azureml=launcher.free_port())
    run_cli("up", "--state-dir", str(state), env=env)
    try:
        info = json.loads(run_cli("status", "--json", "--state-dir", str(state), env=env).stdout)
        assert info["mode"] == "local"
        assert info["linked"] is False
        assert info["databricks"]["healthy"] and info["azureml"]["healthy"]
        assert info["databricks"]["url"] == f"http://127.0.0.1:{env['EMULATOR_DATABRICKS_PORT']}"
        for key in ("subscription_id", "resource_group", "workspace_name", "tracking_uri", "token"):
            assert info["azureml"][key]
        assert info["azureml"]["tracking_uri"].endswith(
            f"/workspaces/{info['azureml']['workspace_name']}"
        )
        # A second `up` is a no-op, not a second server fighting for the port.
        run_cli("up", "--state-dir", str(state), env=env)
    finally:
        run_cli("down", "--state-dir", str(state), env=env)
    proc = run_cli("status", "--json", "--state-dir", str(state), env=env, check=False)
    assert proc.returncode == 3  # not healthy: scripts can tell
    assert json.loads(proc.stdout)["databricks"]["healthy"] is False


def test_port_already_taken_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = cli_env(databricks=taken, azureml=launcher.free_port())
        proc = run_cli("up", "--state-dir", str(tmp_path / "s"), "--timeout", "20", env=env, check=False)
    assert proc.returncode == 1
    assert f"127.0.0.1:{taken} is already in use" in proc.stderr
    assert "EMULATOR_DATABRICKS_PORT" in proc.stderr
    run_cli("down", "--state-dir", str(tmp_path / "s"), env=env)


def test_port_range_keeps_every_picked_port_inside_it(tmp_path):
    """EMULATOR_PORT_RANGE: side-by-side processes (the suite's xdist workers, parallel CI jobs) each
    pick free ports in their own range, where two bind(0) picks could be the same port."""
    low, high = settings.port_range() or (21000, 21999)  # the worker's own slice under xdist
    env = dict(cli_env(databricks=0, azureml=0), EMULATOR_PORT_RANGE=f"{low}-{high}",
               EMULATOR_AZUREML_TLS_PORT="0", EMULATOR_AZUREML_PROXY_PORT="0")
    state = tmp_path / "state"
    run_cli("up", "--state-dir", str(state), env=env)
    try:
        info = json.loads(run_cli("status", "--json", "--state-dir", str(state), env=env).stdout)
        ports = [int(info[role]["url"].rsplit(":", 1)[1]) for role in ("databricks", "azureml")]
        assert all(low <= port <= high for port in ports), (ports, low, high)
        assert info["databricks"]["healthy"] and info["azureml"]["healthy"]
    finally:
        run_cli("down", "--state-dir", str(state), env=env)
    proc = run_cli("up", "--state-dir", str(tmp_path / "bad"), env=dict(env, EMULATOR_PORT_RANGE="9000"), check=False)
    assert proc.returncode != 0 and "EMULATOR_PORT_RANGE must be" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_state_dir_is_private(emulator):
    root = emulator.state.root
    for path in [root, root / "databricks", root / "azureml", root / "config.json"]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_health_is_public_but_api_needs_the_token(emulator):
    for ws in (emulator.databricks, emulator.azureml):
        assert requests.get(f"{ws.url}/health", timeout=60).text == "OK"
        resp = requests.get(f"{ws.url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=60)
        assert resp.status_code == 401
        assert resp.json()["error_code"] == "UNAUTHENTICATED"
        ok = requests.get(
            f"{ws.url}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            headers={"Authorization": f"Bearer {ws.token}"},
            timeout=60,
        )
        assert ok.status_code == 200, ok.text


def tables(db) -> set[str]:
    with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_ready_means_ready_then_state_survives_down_and_up(tmp_path, monkeypatch):
    emu = Emulator(tmp_path / "state").up()
    try:
        # Healthy means the stores are open and migrated, not created by the first API call.
        for role in ("databricks", "azureml"):
            db = emu.state.role_dir(role) / "mlflow.db"
            assert db.exists(), f"{role}: /health answered before the store was created"
            assert {"alembic_version", "runs", "metrics", "registered_models", "model_versions"} <= tables(db), role
            with closing(sqlite3.connect(db)) as conn:  # one fsync per commit, still synchronous=FULL
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal", role
        for ws in (emu.databricks, emu.azureml):
            first = requests.get(f"{ws.url}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                                 headers={"Authorization": f"Bearer {ws.token}"}, timeout=30)
            assert first.status_code == 200, first.text
        aml = emu.azureml
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
        client = MlflowClient(tracking_uri=aml.url)
        exp = client.create_experiment("survivor")
        run = client.create_run(exp)
        for step in range(3):
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
        (tmp_path / "a.txt").write_text("kept")
        client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
        emu.down()
        emu.up()
        client = MlflowClient(tracking_uri=emu.azureml.url)
        history = client.get_metric_history(run.info.run_id, "loss")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == [1.0, 0.5, 1.0 / 3]
        dst = client.download_artifacts(run.info.run_id, "a.txt", str(tmp_path / "dl"))
        assert open(dst).read() == "kept"
    finally:
        emu.down()


def test_a_new_store_is_copied_from_the_template_the_first_start_kept(tmp_path, monkeypatch):
    """The first start-up on a new state dir keeps its freshly migrated store as a template; the next
    new state dir starts from a copy (no migrations) and behaves as a migrated one."""
    templates = tmp_path / "templates"
    monkeypatch.setenv("EMULATOR_STORE_TEMPLATES", str(templates))
    first = Emulator(tmp_path / "first").up()
    first.down()
    kept = {p.name.split("-mlflow-")[0] for p in templates.glob("*.db")}
    assert kept == {"databricks", "azureml"}
    second = Emulator(tmp_path / "second").up()
    try:
        for role in ("databricks", "azureml"):
            log = launcher.log_path(second.state, role).read_text()
            assert "new store copied from" in log, role
            assert "Creating initial MLflow database tables" not in log, role
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", second.azureml.token)
        client = MlflowClient(tracking_uri=second.azureml.url)
        assert [e.name for e in client.search_experiments()] == ["Default"]
        run = client.create_run(client.create_experiment("after-copy"))
        client.log_metric(run.info.run_id, "loss", 0.5)
        assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
        default = client.get_experiment_by_name("Default")  # Azure ML: a GUID, not the store's 0
        assert default.artifact_location == f"mlflow-artifacts:/{default.experiment_id}"
    finally:
        second.down()


def test_stop_and_start_one_workspace(emulator):
    aml_url = emulator.azureml.url
    emulator.stop("azureml")
    assert not launcher.healthy(aml_url)
    assert launcher.healthy(emulator.databricks.url)
    emulator.start("azureml")
    assert launcher.healthy(aml_url)


def test_unexpected_paths_answer_json_not_tracebacks(emulator):
    ws = emulator.azureml
    resp = requests.get(f"{ws.url}/no/such/thing", headers={"Authorization": f"Bearer {ws.token}"}, timeout=60)
    assert resp.status_code == 404
    assert resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_reset_wipes_everything(tmp_path):
    state = tmp_path / "state"
    env = cli_env(databricks=launcher.free_port(), azureml=launcher.free_port())
    run_cli("up", "--state-dir", str(state), env=env)
    run_cli("reset", "--yes", "--state-dir", str(state), env=env)
    assert not state.exists()
    assert run_cli("status", "--json", "--state-dir", str(state), env=env, check=False).returncode == 2
    assert not state.exists()


def foreign_ports_env(emulator) -> dict:
    """The default ports of a new state dir point at servers another state dir started."""
    return cli_env(databricks=launcher.running(emulator.state, "databricks").port,
                   azureml=launcher.running(emulator.state, "azureml").port)


def test_status_of_an_empty_state_dir_is_not_running_here_and_creates_nothing(emulator, tmp_path):
    env = foreign_ports_env(emulator)
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for state in (empty, missing):
        for args in (["status"], ["status", "--json"]):
            proc = run_cli(*args, "--state-dir", str(state), env=env, check=False)
            assert proc.returncode == 2, proc.stdout + proc.stderr
            assert "not running here" in proc.stderr and str(state) in proc.stderr
            assert emulator.databricks.token not in proc.stdout + proc.stderr
            if "--json" in args:
                assert json.loads(proc.stdout)["running"] is False
    assert list(empty.iterdir()) == [] and not missing.exists()


def test_status_never_adopts_a_server_it_did_not_start(emulator, tmp_path):
    env = foreign_ports_env(emulator)
    state = tmp_path / "other"
    run_cli("unlink", "--state-dir", str(state), env=env)  # a no-op that creates nothing either
    assert not state.exists()
    StateDir(state).config()  # a set-up state dir whose servers are not running
    proc = run_cli("status", "--json", "--state-dir", str(state), env=env, check=False)
    info = json.loads(proc.stdout)
    assert proc.returncode == 3 and not info["databricks"]["healthy"] and not info["azureml"]["healthy"]
    assert "not running here" in proc.stderr
    # Even a runfile naming a live process and the foreign server's port is not enough: the
    # server must answer with the instance id this state dir's launcher gave it.
    for role in ("databricks", "azureml"):
        foreign = launcher.running(emulator.state, role)
        (state / role / "server.json").write_text(json.dumps(
            {"pid": os.getpid(), "host": foreign.host, "port": foreign.port, "instance": "not-theirs"}))
        assert launcher.owned(StateDir(state), role) is None
        assert launcher.owned(emulator.state, role) is not None
    proc = run_cli("status", "--json", "--state-dir", str(state), env=env, check=False)
    assert proc.returncode == 3 and not json.loads(proc.stdout)["databricks"]["healthy"]


def test_logs_show_the_server_output(emulator):
    out = run_cli("logs", "databricks", "--state-dir", str(emulator.state.root)).stdout
    assert "Serving on" in out


def test_concurrent_config_readers_agree_on_one_set_of_tokens(tmp_path):
    # The CLI and both servers read the config at start-up; a fresh state dir must not end up
    # with tokens that differ between the processes that created them. All start at one instant.
    code = (
        "import json, sys, time; from emulator.control.state import StateDir\n"
        "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
        "print(json.dumps(StateDir(sys.argv[1]).config()))\n"
    )
    at = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s"), at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(12)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results if err]
    outputs = [json.loads(out) for out, _ in results]
    assert all(o == outputs[0] for o in outputs)
    assert json.loads((tmp_path / "s" / "config.json").read_text()) == outputs[0]
