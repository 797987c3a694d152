"""Start-up under Docker: `emulator up --docker` with the image already built, to both healthy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path


def docker_startup(workdir: Path) -> dict:
    from emulator.control.docker import images

    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return {"skipped": "no Docker engine running"}
    if images.docker_image_id("mlflow-azure-emulator:latest") is None:
        return {"skipped": "image not built (`emulator images build --offline`)"}
    from emulator.control.docker import compose

    # Every published port a free one: the defaults (5001-5005) may be a running `make run`'s.
    env = {**os.environ, **compose.free_published_ports()}
    cli = [sys.executable, "-m", "emulator.control.cli"]
    state = ["--state-dir", str(workdir / "docker-state")]
    project = ["--project-name", f"emubench{secrets.token_hex(3)}"]
    started = time.perf_counter()
    subprocess.run([*cli, "up", "--docker", *state, *project], env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    subprocess.run([*cli, "down", "--volumes", *state], env=env, check=True, capture_output=True)
    return {"emulator_up_docker_both_healthy_s": round(seconds, 2)}
