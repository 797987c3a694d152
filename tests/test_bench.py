"""The bench's smoke run: every issue-16 figure is measured and reported beside stock's.

Only the report's shape and that each figure is a positive number: whether targets are met is the
bench's business (a loaded machine must not fail the suite)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_bench_reports_every_target_beside_stock(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--targets-only", "--json", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert json.loads(out.read_text()) == result

    rows = {r["figure"].split(" (")[0].split(",")[0]: r for r in result["targets"]}
    assert set(rows) == {"start-up to first authenticated API answer", "reset", "log_batch unlinked",
                         "log_batch linked", "log_metric unlinked", "log_metric linked", "slow clients"}
    for name, row in rows.items():
        assert row["emulator"] > 0, name
        assert isinstance(row["pass"], bool) and row["target"], name
        if name == "slow clients":  # no stock figure: the emulator's own listeners
            assert row["stock"] is None and row["ratio"] is None
            continue
        if name == "reset":  # the stock restart is a second stock start-up: full runs only
            assert row["stock"] is None and row["ratio"] is None
            continue
        assert row["stock"] > 0 and row["ratio"] > 0, name
        assert abs(row["ratio"] - row["emulator"] / row["stock"]) < 0.01, name

    start = result["startup"]
    assert 0 < start["emulator"]["up_returned_s"] <= start["emulator"]["both_first_answer_s"]
    assert 0 < start["stock"]["healthy_s"] <= start["stock"]["first_answer_s"]
    assert result["reset"]["emulator"]["runs"] > 0 and result["reset"]["emulator"]["model_versions"] > 0
    slow = result["slow_clients"]
    assert set(slow["listeners"]) == {"databricks http", "azureml http", "azureml https", "azureml proxy", "s3 store"}
    assert all(f["held"] == slow["held_per_listener"] and f["answered"] for f in slow["listeners"].values())
    assert "mirror" not in result and "udf_scoring" not in result  # --targets-only
