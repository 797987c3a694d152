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
    # "start-up": the warm pytest session's row (issue 33: `emulator up` through a ready prefork zygote)
    assert set(rows) == {"start-up to first authenticated API answer", "start-up", "reset", "log_batch unlinked",
                         "log_batch linked", "log_metric unlinked", "log_metric linked", "slow clients",
                         "fresh_workspaces set-up+tear-down", "set-up of a fresh machine", "the suite", "make run"}
    for name, row in rows.items():
        if name in ("set-up of a fresh machine", "the suite", "make run"):  # records of `make test`/`make run`
            assert row["emulator"] is None or row["emulator"] >= 0, name
            assert row["stock"] is None and row["ratio"] is None
            continue
        assert row["emulator"] > 0, name
        assert isinstance(row["pass"], bool) and row["target"], name
        if name in ("slow clients", "fresh_workspaces set-up+tear-down"):  # no stock figure: the emulator's own
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
    assert 0 < start["emulator_warm"]["up_returned_s"] <= start["emulator_warm"]["both_first_answer_s"]
    assert result["reset"]["emulator"]["runs"] > 0 and result["reset"]["emulator"]["model_versions"] > 0
    slow = result["slow_clients"]
    assert set(slow["listeners"]) == {"databricks http", "azureml http", "azureml https", "azureml proxy", "s3 store"}
    assert all(f["held"] == slow["held_per_listener"] and f["answered"] for f in slow["listeners"].values())
    assert "mirror" not in result and "udf_scoring" not in result  # --targets-only


def test_fresh_workspaces_row_is_measured_through_the_plugin():
    """The per-test isolation row: pytest runs generated tests with the plugin as installed and
    times every test's set-up and tear-down phases (shape only, never the 50 ms target)."""
    from bench import report

    done = subprocess.run([sys.executable, "-m", "bench.fresh_workspaces", "--tests", "5", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout)
    assert fresh["tests"] == 5 and fresh["writes"] is True and fresh["target_ms"] == 50
    assert 0 < fresh["p50_ms"] <= fresh["p95_ms"]
    assert fresh["setup_p50_ms"] > 0 and fresh["teardown_p50_ms"] > 0
    (row,) = [r for r in report.issue33_rows({"fresh_workspaces": fresh}) if r["figure"].startswith("fresh_")]
    assert row["emulator"] == fresh["p50_ms"] and row["unit"] == "ms" and row["target"] == "<= 50 ms p50"
    assert row["pass"] == (fresh["p50_ms"] <= 50) and row["stock"] is None and row["ratio"] is None
    assert "p95" in row["figure"] and "5 tests" in row["figure"]


def test_setup_and_suite_rows_come_from_make_tests_records(tmp_path):
    from bench import records, report

    def rows(cache):
        found = report.issue33_rows({"records": records.read(cache)})
        return {r["figure"].split(" (")[0]: r for r in found}

    missing = rows(tmp_path)
    assert missing["set-up of a fresh machine"]["emulator"] is None
    assert missing["the suite"]["emulator"] is None and missing["the suite"]["pass"] is None
    assert missing["make run, warm"]["emulator"] is None and missing["make run, warm"]["pass"] is None
    assert report.table(list(missing.values())).count("not measured") == 3

    (tmp_path / "setup-times.txt").write_text("python venv 6\njava 0\nimages 66\nclient venvs 48\n")
    (tmp_path / "suite-time.json").write_text(json.dumps({"seconds": 2700.0, "passed": 900, "failed": 0}))
    found = rows(tmp_path)
    assert found["set-up of a fresh machine"]["emulator"] == 2.0  # 120 s
    assert found["set-up of a fresh machine"]["pass"] is True  # <= 15 min
    assert found["the suite"]["emulator"] == 45.0 and found["the suite"]["pass"] is False  # over 30 min
    assert "not measured" in report.table(list(found.values()))  # no `make run` yet

    # `make run` keeps the wall time and load of its harness check's JSON report.
    harness_report = tmp_path / "harness-report.json"
    harness_report.write_text(json.dumps({"passed": True, "checks": [{"name": "a"}, {"name": "b"}], "wall_s": 57.5,
                                          "spark": True, "load_average": {"start": [1.5, 1.0, 0.5]}}))
    assert records.record_make_run(harness_report, tmp_path)["seconds"] == 57.5
    found = rows(tmp_path)
    assert found["make run, warm"]["emulator"] == 57.5 and found["make run, warm"]["pass"] is True  # <= 60 s, all passed
    assert "2 checks, all passed, load 1.5" in found["make run, warm"]["figure"]
    assert "not measured" not in report.table(list(found.values()))
    harness_report.write_text(json.dumps({"passed": False, "checks": [], "wall_s": 50.0}))
    records.record_make_run(harness_report, tmp_path)
    assert rows(tmp_path)["make run, warm"]["pass"] is False  # fast, but a check failed


def test_online_deployment_row_is_measured_with_azure_ai_ml():
    """Issue 33 target 5's row: the real azure-ai-ml client deploys a registered model and scores it
    (the bench checks the answer); shape only, never the 5 s target."""
    from bench import report

    done = subprocess.run([sys.executable, "-m", "bench.online_deploy", "--rounds", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    deploy = json.loads(done.stdout)
    assert deploy["client"].startswith("azure-ai-ml ") and len(deploy["per_round"]) == 2
    for run in deploy["per_round"]:
        assert 0 < run["endpoint_s"] < run["total_s"] and run["deployment_s"] > 0 and run["first_score_s"] > 0
    warm, first = report.online_deployment_rows({"online_deployment": deploy})
    assert warm["emulator"] == deploy["per_round"][1]["total_s"] and isinstance(warm["pass"], bool)
    assert first["emulator"] == deploy["first_round_total_s"] and first["pass"] is None
