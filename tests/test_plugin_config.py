"""The pytest plugin's settings (options and EMULATOR_* variables) and per-test fresh workspaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from emulator.control import launcher

pytest_plugins = ["pytester"]


def test_ports_from_the_environment_and_fresh_workspaces_per_test(pytester, monkeypatch, tmp_path):
    # Every port variable `emulator up` honours (docs/pages/harness.md lists them).
    ports = {name: launcher.free_port() for name in ("DATABRICKS", "AZUREML", "AZUREML_TLS", "AZUREML_PROXY", "S3")}
    for name, port in ports.items():
        monkeypatch.setenv(f"EMULATOR_{name}_PORT", str(port))
    pytester.makepyfile(f"""
        from mlflow import MlflowClient

        def test_ports_are_honoured(emulated_workspaces, databricks_workspace, azureml_workspace):
            assert databricks_workspace.url.endswith(":{ports['DATABRICKS']}")
            assert azureml_workspace.url.endswith(":{ports['AZUREML']}")
            assert databricks_workspace.s3_url.endswith(":{ports['S3']}")
            aml = emulated_workspaces.status()["azureml"]
            assert aml["tls_url"].endswith(":{ports['AZUREML_TLS']}")
            assert aml["proxy_url"].endswith(":{ports['AZUREML_PROXY']}")

        def test_one_writes(fresh_workspaces):
            client = MlflowClient("databricks", "databricks")
            exp = client.create_experiment("/Users/" + fresh_workspaces.databricks.user + "/mine")
            client.create_run(exp)
            aml = MlflowClient(fresh_workspaces.azureml.tracking_uri)
            aml.create_experiment("aml-mine")

        def test_two_finds_nothing(fresh_workspaces):
            client = MlflowClient("databricks", "databricks")
            assert [e.name for e in client.search_experiments()] == ["Default"]
            aml = MlflowClient(fresh_workspaces.azureml.tracking_uri)
            assert [e.name for e in aml.search_experiments()] == ["Default"]
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)


def test_xdist_workers_pick_ports_in_ranges_of_their_own(pytester, tmp_path, monkeypatch):
    """Under pytest-xdist each worker's workspaces take ports from its own slice of
    EMULATOR_PORT_RANGE: two workers' bind(0) picks could be the same port."""
    monkeypatch.setenv("EMULATOR_PORT_RANGE", "22000-22999")
    for name in ("DATABRICKS", "AZUREML", "AZUREML_TLS", "AZUREML_PROXY", "S3"):
        monkeypatch.delenv(f"EMULATOR_{name}_PORT", raising=False)
    out = tmp_path / "seen"
    out.mkdir()
    pytester.makepyfile(f"""
        import json, os
        from urllib.parse import urlparse

        def test_ports(emulated_workspaces):
            ports = [urlparse(ws.url).port for ws in (emulated_workspaces.databricks, emulated_workspaces.azureml)]
            seen = {{"range": os.environ["EMULATOR_PORT_RANGE"], "ports": ports}}
            with open(os.path.join({str(out)!r}, os.environ["PYTEST_XDIST_WORKER"]), "w") as f:
                json.dump(seen, f)
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "each")
    result.assert_outcomes(passed=2)
    seen = {path.name: json.loads(path.read_text()) for path in out.iterdir()}
    assert sorted(seen) == ["gw0", "gw1"]
    assert [seen[w]["range"] for w in ("gw0", "gw1")] == ["22000-22499", "22500-22999"]
    for worker in seen.values():
        low, high = map(int, worker["range"].split("-"))
        assert all(low <= port <= high for port in worker["ports"]), worker


def test_pyspark_connect_imports_on_an_xdist_worker_as_anywhere(pytester):
    """An xdist worker's __main__ has no spec or file, which pyspark.sql.connect takes for a doctest
    run and exits with SystemExit(0) (mlflow's spark_udf imports it): the plugin gives it a spec."""
    pytester.makepyfile("""
        def test_import():
            try:
                import pyspark.sql.connect  # noqa: F401
            except ImportError:
                pass  # Spark Connect's extras (grpc) missing: what any other process gets
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1").assert_outcomes(passed=1)


def test_a_sessions_compose_deployments_get_restart_policy_no_unless_set(pytester, monkeypatch):
    """What the session's Compose commands read (docker-compose.yml's ``restart:``): "no", so a test
    deployment whose session is killed does not come back with every Docker engine start; a value
    the user set is kept. The containers' own policy: tests/docker/test_compose.py."""
    pytester.makepyfile("""
        import os

        def test_policy():
            assert os.environ["EMULATOR_RESTART_POLICY"] == os.environ["EXPECTED"]
    """)
    monkeypatch.delenv("EMULATOR_RESTART_POLICY", raising=False)
    monkeypatch.setenv("EXPECTED", "no")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setenv("EMULATOR_RESTART_POLICY", "always")
    monkeypatch.setenv("EXPECTED", "always")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.fixture(scope="module")
def users_emulator(tmp_path_factory):
    """The user's own `emulator up` in a state dir of theirs (free ports)."""
    state = tmp_path_factory.mktemp("users") / "state"
    env = {**os.environ, "EMULATOR_DATABRICKS_PORT": "0", "EMULATOR_AZUREML_PORT": "0"}
    up = subprocess.run([sys.executable, "-m", "emulator.control.cli", "up", "--state-dir", str(state)],
                        capture_output=True, text=True, timeout=300, env=env)
    assert up.returncode == 0, up.stderr
    yield state.resolve()
    subprocess.run([sys.executable, "-m", "emulator.control.cli", "down", "--state-dir", str(state)],
                   capture_output=True, timeout=120)


def test_a_running_state_dir_is_reused_and_left_running(pytester, users_emulator, monkeypatch):
    state = users_emulator
    pids = {r: launcher.running(launcher.StateDir(state), r).pid for r in ("databricks", "azureml")}
    pytester.makepyfile("""
        import os
        def test_uses_it(emulated_workspaces):
            assert str(emulated_workspaces.state.root) == os.environ["EMULATOR_PYTEST_STATE_DIR"]
    """)
    monkeypatch.setenv("EMULATOR_PYTEST_STATE_DIR", str(state))
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    for role, pid in pids.items():  # not stopped by the session that only borrowed them
        now = launcher.running(launcher.StateDir(state), role)
        assert now is not None and now.pid == pid


def test_a_port_held_by_the_users_own_emulator_is_named_at_once(pytester, users_emulator, monkeypatch):
    """Not up()'s wait for the port to free up (a minute), then "already in use": the session
    names the state dir whose workspace holds the port and how to reuse it."""
    port = launcher.running(launcher.StateDir(users_emulator), "databricks").port
    monkeypatch.delenv("EMULATOR_PYTEST_STATE_DIR", raising=False)
    monkeypatch.setenv("EMULATOR_DATABRICKS_PORT", str(port))
    pytester.makepyfile("def test_x(emulated_workspaces): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(errors=1)
    assert (f"a workspace of state dir {users_emulator} already runs here: set "
            f"EMULATOR_PYTEST_STATE_DIR={users_emulator} to reuse it") in result.stdout.str()
    assert launcher.owned(launcher.StateDir(users_emulator), "databricks")  # left alone


def test_docker_option_without_pytest_docker_says_what_to_install(pytester):
    pytester.makeconftest("""
        import sys
        sys.modules["pytest_docker"] = None  # as if pytest-docker were not installed
        sys.modules["pytest_docker.plugin"] = None
    """)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess("--emulator-docker", "-p", "no:cacheprovider")
    assert result.ret != 0
    assert "pip install 'mlflow-azure-emulator[pytest,docker]'" in result.stderr.str()


def test_a_reused_state_dir_with_data_is_not_emptied_without_opting_in(pytester, users_emulator, monkeypatch):
    state = launcher.StateDir(users_emulator)
    db = launcher.running(state, "databricks")
    token = state.config()["databricks_token"]
    monkeypatch.setenv("EMULATOR_PYTEST_STATE_DIR", str(users_emulator))
    pytester.makepyfile("def test_x(fresh_workspaces): pass")
    # Nothing in it yet: the session may reset it.
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)

    # The user's own Unity Catalog model (the reset would delete it).
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(f"{db.url}/api/2.0/mlflow/unity-catalog/registered-models/create",
                            json={"name": "main.default.users_model"}, headers=headers, timeout=60)
    assert created.status_code == 200, created.text

    def users_model_exists() -> bool:
        return requests.get(f"{db.url}/api/2.0/mlflow/unity-catalog/registered-models/get",
                            params={"name": "main.default.users_model"}, headers=headers,
                            timeout=60).status_code == 200

    refused = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    refused.assert_outcomes(errors=1)
    assert "--emulator-reuse-destructive" in refused.stdout.str()
    assert users_model_exists()

    monkeypatch.setenv("EMULATOR_REUSE_DESTRUCTIVE", "1")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not users_model_exists()
