"""The pytest plugin's per-test isolation: what ``fresh_workspaces`` costs each test, set-up and
tear-down of both workspaces, measured through the plugin's own code (issue 33: <= 50 ms p50).

A generated test file with N+2 tests is run by pytest in a subprocess, with the plugin as
installed (entry point pytest11) and bench.fixture_timing timing each test's set-up and tear-down
phases. The first test's set-up (it starts the session's workspaces) and the last one's tear-down
(it stops them) are left out. Each test writes what a small contract test writes: an experiment
and a run with a param and a metric in each workspace, and a folder, so every reset has something to empty.

    python -m bench.fresh_workspaces [--tests N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0
ROOT = Path(__file__).resolve().parents[1]

TESTS = '''
import pytest
from mlflow import MlflowClient


@pytest.mark.parametrize("i", range({n}))
def test_writes_to_both(fresh_workspaces, i):
    {body}
'''
WRITES = '''db, aml = fresh_workspaces.databricks, fresh_workspaces.azureml
    for client, name in ((MlflowClient("databricks", "databricks"), f"/Users/{db.user}/bench-{i}"),
                         (MlflowClient(aml.tracking_uri, aml.tracking_uri), f"bench-{i}")):
        assert [e.name for e in client.search_experiments()] == ["Default"]  # the reset emptied it
        run = client.create_run(client.create_experiment(name))
        client.log_param(run.info.run_id, "i", i)
        client.log_metric(run.info.run_id, "m", i)'''


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(tests: int = 50, writes: bool = True, timeout: float = 1800) -> dict:
    """Run ``tests`` measured tests (+2) in a pytest subprocess; per-test fixture phases in ms."""
    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        work = Path(tmp)
        (work / "test_fresh.py").write_text(TESTS.format(n=tests + 2, body=WRITES if writes else "pass"))
        times = work / "times.json"
        env = {**os.environ, "BENCH_FIXTURE_TIMES": str(times),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for name in ("EMULATOR_PYTEST_STATE_DIR", "EMULATOR_LINKED", "EMULATOR_DOCKER"):
            env.pop(name, None)  # the session's own workspaces, unlinked, local processes
        load = os.getloadavg()[0]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "test_fresh.py", "-q", "-p", "no:cacheprovider",
                               "-p", "bench.fixture_timing", "-o", "addopts=", "--rootdir", str(work)],
                              cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the generated tests failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
        phases = json.loads(times.read_text())
    setups = [p["setup_s"] * 1000 for p in phases[1:]]
    teardowns = [p["teardown_s"] * 1000 for p in phases[:-1]]
    both = [p["setup_s"] * 1000 + p["teardown_s"] * 1000 for p in phases[1:-1]]
    return {
        "tests": len(both), "writes": writes, "load_average_1m_at_start": round(load, 2),
        "session_s": round(time.monotonic() - started, 2),
        "p50_ms": round(statistics.median(both), 2), "p95_ms": round(_percentile(both, 0.95), 2),
        "setup_p50_ms": round(statistics.median(setups), 2),
        "teardown_p50_ms": round(statistics.median(teardowns), 2),
        "target_ms": TARGET_MS,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fresh_workspaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=50, help="Measured tests (default 50).")
    parser.add_argument("--no-writes", action="store_true", help="Empty tests: the resets have nothing to empty.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.tests, writes=not args.no_writes)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"fresh_workspaces set-up+tear-down over {result['tests']} tests: p50 {result['p50_ms']} ms, "
              f"p95 {result['p95_ms']} ms (set-up p50 {result['setup_p50_ms']} ms, tear-down p50 "
              f"{result['teardown_p50_ms']} ms; target <= {TARGET_MS:g} ms p50; load {result['load_average_1m_at_start']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
