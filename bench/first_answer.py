"""Start-up to first answer: `emulator up` on a new state dir until an authenticated API call of
each workspace answers 200, against a stock `mlflow server` on a new store (issue 16: <= 0.5x)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import first_answer
from emulator import launcher, settings
from harness.workspaces import Emulator


def emulator_up(state_dir: Path) -> tuple[Emulator, dict]:
    """`emulator up` as users run it (the CLI, free ports), then each workspace's first answer.
    Returns the running emulator (the caller takes it down) and the timings from launch."""
    ports = {role: launcher.free_port() for role in settings.ROLES}
    env = {**os.environ, **{settings.PORT_ENV[role]: str(port) for role, port in ports.items()}}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "up", "--state-dir", str(state_dir)],
                          env=env, capture_output=True, text=True)
    up_s = time.monotonic() - started
    emu = Emulator(state_dir, ports=ports)
    if done.returncode != 0:
        emu.down()
        raise RuntimeError(f"emulator up failed: {done.stderr[-2000:]}")
    try:
        db, aml = emu.databricks, emu.azureml
        answered = {"databricks": first_answer(db.url, db.token) - started,
                    "azureml": first_answer(aml.tracking_uri, aml.token) - started}
    except BaseException:
        emu.down()
        raise
    return emu, {"up_returned_s": round(up_s, 3),
                 **{f"{role}_first_answer_s": round(s, 3) for role, s in answered.items()},
                 "both_first_answer_s": round(max(answered.values()), 3)}
