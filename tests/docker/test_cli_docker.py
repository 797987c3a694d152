"""`emulator up --docker` / `status --json` / `down`: Compose behind the CLI, same status fields as local mode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
from mlflow import MlflowClient

from emulator import settings
from emulator.control.docker import engine
from harness.compose_fixtures import deployment_env

pytestmark = pytest.mark.docker


def run_cli(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args], capture_output=True, text=True,
                          env=env, timeout=400)
    if check and proc.returncode != 0:
        raise AssertionError(f"emulator {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_up_docker_status_down(emulator_image, compose_project, tmp_path, monkeypatch):
    state = str(tmp_path / "state")
    env = deployment_env()
    env.update({
        "EMULATOR_COMPOSE_PROJECT": compose_project,
        "EMULATOR_IMAGE": emulator_image,
    })
    up = run_cli("up", "--docker", "--state-dir", state, env=env)
    try:
        assert "docker" in up.stdout
        # The session's restart policy reached this deployment too: before, the environment the
        # test handed `emulator up` dropped it, and a killed session's containers came back.
        policies = engine.restart_policies(compose_project)
        assert len(policies) == 3 and set(policies.values()) == {"no"}, policies
        info = json.loads(run_cli("status", "--json", "--state-dir", state, env=env).stdout)
        assert info["mode"] == "docker"
        assert set(info) >= {"state_dir", "linked", "databricks", "azureml"}
        assert info["databricks"]["url"] == f"http://127.0.0.1:{env[settings.PORT_ENV['databricks']]}"
        assert info["azureml"]["url"] == f"http://127.0.0.1:{env[settings.PORT_ENV['azureml']]}"
        assert info["databricks"]["healthy"] and info["azureml"]["healthy"]
        aml = info["azureml"]
        # The tokens the state dir holds are the ones the containers check.
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml["token"])
        client = MlflowClient(tracking_uri=aml["tracking_uri"])
        assert client.get_experiment(client.create_experiment("via-cli")).name == "via-cli"
        resp = requests.get(f"{info['databricks']['url']}/api/2.0/mlflow/experiments/search",
                            params={"max_results": 1}, timeout=60,
                            headers={"Authorization": f"Bearer {info['databricks']['token']}"})
        assert resp.status_code == 200, resp.text
        # `emulator link` goes through the running container (the link file lives in its volume).
        assert json.loads(run_cli("link", "--state-dir", state, env=env).stdout)["linked"] is True
        assert json.loads(run_cli("status", "--json", "--state-dir", state, env=env).stdout)["linked"] is True
        assert "Serving on" in run_cli("logs", "azureml", "--state-dir", state, env=env).stdout
        # A local `up` on a state dir that runs in Docker is refused, not a port fight.
        refused = run_cli("up", "--state-dir", state, env=env, check=False)
        assert refused.returncode == 1 and "Docker mode" in refused.stderr
    finally:
        down = run_cli("down", "--volumes", "--state-dir", state, env=env)
    assert "deleted its volumes" in down.stdout
    after = run_cli("status", "--json", "--state-dir", state, env=env, check=False)
    assert after.returncode == 3
    assert json.loads(after.stdout)["azureml"]["healthy"] is False


def test_up_docker_on_a_port_in_use_names_it_and_creates_nothing(compose_project, tmp_path):
    """A published port already held (e.g. by `make run`'s local S3 store on 5005): before, Compose
    created some containers, failed to start the others ("address already in use"), the CLI added
    "No registry here? Build the images first", and the half-started containers stayed behind
    (nothing recorded, so `emulator down` could not remove them)."""
    import socket

    env = deployment_env()
    env["EMULATOR_COMPOSE_PROJECT"] = compose_project
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(env["EMULATOR_S3_PORT"])))
        holder.listen()
        up = run_cli("up", "--docker", "--state-dir", str(tmp_path / "state"), env=env, check=False)
    assert up.returncode != 0
    said = up.stdout + up.stderr
    assert f"127.0.0.1:{env['EMULATOR_S3_PORT']} (EMULATOR_S3_PORT) is already in use" in said, said
    assert "No registry here" not in said
    assert engine.containers(compose_project) == []
