"""harness check's Spark ML scenario in a process of its own (harness.spark_ml_steps.BackgroundScenario):
its failure reaches the step's result instead of a hang, and it never outlives the check's process.
The scenario's success path is `harness check` itself (tests/test_harness_cli.py, make run)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.spark_ml_steps import BackgroundScenario

pytestmark = pytest.mark.spark


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_failing_scenario_is_the_steps_error(emulated_workspaces, tmp_path):
    db = emulated_workspaces.databricks
    background = BackgroundScenario(db.url, "dapi-not-this-workspaces-token", db.user, tmp_path / "scenario.log",
                                    model_name="background-refused")
    try:
        with pytest.raises(RuntimeError) as refused:
            background.result()
        assert "PermissionDenied" in str(refused.value) or "Unauthenticated" in str(refused.value), refused.value
    finally:
        background.stop()
    assert not background.out.exists()


KILLED_PARENT = r"""
import os, sys
from pathlib import Path
from harness.spark_ml_steps import BackgroundScenario

background = BackgroundScenario(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), model_name="background-orphan")
print(background.proc.pid, background.out, flush=True)
os._exit(0)  # as a killed check: no stop(), no clean-up
"""


def test_the_scenario_ends_with_the_checks_process(emulated_workspaces, tmp_path):
    """Left alone it would fit, log and register (about 20 s) and write its result; it must be
    terminated as soon as the check's process is gone, before it writes anything."""
    db = emulated_workspaces.databricks
    parent = subprocess.run([sys.executable, "-c", KILLED_PARENT, db.url, db.token, db.user,
                             str(tmp_path / "scenario.log")], capture_output=True, text=True, timeout=300)
    assert parent.returncode == 0, parent.stderr
    pid, out = parent.stdout.split()
    deadline = time.monotonic() + 600
    while not gone(int(pid)):
        assert time.monotonic() < deadline, f"the scenario process {pid} outlived the check's process"
        time.sleep(0.2)
    assert Path(out).read_text() == "", "the scenario ran to its end: it was not ended with its parent"
    Path(out).unlink()


def test_the_runs_come_before_the_multi_output_model(emulated_workspaces, tmp_path):
    """The check takes the Spark ML runs as soon as the scenario has them (its step 10), while the
    process goes on to log the multi-output model that only a later step needs: before, result()
    waited for the whole process, and that model's log_model was the check's wait."""
    db = emulated_workspaces.databricks
    background = BackgroundScenario(db.url, db.token, db.user, tmp_path / "scenario.log",
                                    model_name="background-runs-first")
    try:
        runs = background.result()
        # The multi-output model's log_model (its requirement inference a Python process of its own)
        # takes seconds: a process still running here is one whose runs came first.
        assert background.proc.poll() is None, "result() waited for the multi-output model too"
        assert runs.versions == [1, 2] and runs.model_name == "background-runs-first"
        multi = background.multi_output_model()
        assert multi.startswith("runs:/") and multi.endswith("/model")
        assert background.proc.wait(timeout=600) == 0
    finally:
        background.stop()
    assert not background.out.exists()
