"""An unreachable Docker engine is one clear message from every command that needs it (the SDK's
connection error, explained), not a traceback or a CLI's stderr. No engine is needed: DOCKER_HOST
points at a closed loopback port or a socket that does not exist; nothing about Docker is mocked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from emulator.control import launcher


def run_cli(*args, docker_host: str, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "DOCKER_"))}
    env["DOCKER_HOST"] = docker_host
    return subprocess.run([sys.executable, "-m", "emulator.control.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)


@pytest.fixture(params=["tcp", "unix"])
def dead_engine(request, tmp_path) -> str:
    if request.param == "tcp":
        return f"tcp://127.0.0.1:{launcher.free_port()}"  # bound once, then closed: nothing listens
    return f"unix://{tmp_path / 'no-such-docker.sock'}"


def assert_explained(proc, docker_host: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"cannot reach the Docker engine at {docker_host}" in proc.stderr, proc.stderr
    assert "Is dockerd running" in proc.stderr and "DOCKER_HOST" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_up_docker_explains_an_unreachable_engine(dead_engine, tmp_path):
    proc = run_cli("up", "--docker", "--store", "postgres", "--state-dir", str(tmp_path / "state"),
                   docker_host=dead_engine, tmp_path=tmp_path)
    assert_explained(proc, dead_engine)
    # Nothing was recorded as running in Docker: a later local `up` is not refused.
    assert not (tmp_path / "state" / "deployment.json").exists()


def test_images_build_explains_an_unreachable_engine(dead_engine, tmp_path):
    proc = run_cli("images", "build", "--offline", "--postgres", docker_host=dead_engine, tmp_path=tmp_path)
    assert_explained(proc, dead_engine)
