"""The UDF check on a Spark standalone cluster under Compose (1 master + 2 workers,
docs/pages/docker.md): the driver is a user's pytest run with the harness plugin (its `spark` fixture reading
EMULATOR_SPARK_MASTER) on this machine, the model comes from the emulated Databricks workspace, and
the rows are scored by executors in the worker containers."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.docker, pytest.mark.spark]

USER_SUITE = """
import json
import os

import pandas as pd

from harness import scenarios
from harness.pytest_plugin import assert_udf_matches_predict
from harness.spark import wait_for_executors


def test_seed_model_scored_on_the_cluster(databricks_workspace, spark):
    assert spark.sparkContext.master == os.environ["EMULATOR_SPARK_MASTER"]
    assert wait_for_executors(spark, 2) == 2  # both workers' executors, before the first job
    ws = databricks_workspace
    # The seed notebook, its batch-scoring cell included, with this cluster as its Spark.
    seed = scenarios.run_databricks_scenario(ws.url, ws.token, ws.user, folder="cluster", model_name="cluster-seed",
                                             epochs=2, spark=spark, score_rows=100)
    assert seed.scored_rows == 100
    data = scenarios.training_data(400, seed=5)[0]
    out = {}
    for uri in (seed.model_uri, f"models:/{seed.model_name}/{seed.model_version}"):
        result = assert_udf_matches_predict(spark, uri, data, partitions=4)
        out[uri] = {"details": result.details, "compared": result.compared, "notes": result.notes}
    with open(os.environ["CLUSTER_REPORT"], "w") as fh:
        json.dump(out, fh)
"""


def test_udf_check_runs_on_the_clusters_executors(spark_cluster_services, pytester, tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    monkeypatch.setenv("EMULATOR_SPARK_MASTER", spark_cluster_services.master_url)
    monkeypatch.setenv("CLUSTER_REPORT", str(report))
    pytester.makepyfile(USER_SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=900)
    result.assert_outcomes(passed=1)

    scored = json.loads(report.read_text())
    assert len(scored) == 2  # runs:/ and models:/
    for uri, res in scored.items():
        details = res["details"]
        assert res["compared"]["rows"] == 400 and details["mismatches"] == 0, (uri, res)
        executors = details["executors"]
        # Every task ran on an executor of the cluster (ids 0, 1, ...), none in the driver, and on
        # both workers' executors.
        assert "driver" not in executors, executors
        assert len(executors) == 2, executors
        assert sum(e["tasks"] for e in executors.values()) >= 4, executors
        assert details["spark_rows_per_s"] > 0
        assert any(n.startswith("scored on 2 executor(s) of spark://127.0.0.1:") for n in res["notes"]), res["notes"]
