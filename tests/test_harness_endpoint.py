"""The harness's endpoint-scoring check (issue 13, item 6) and the issue's "done when" flow:
a model tracked in Databricks, registered in Azure ML through the mirror (v1 then v2), v2 deployed
to an online endpoint and scored; the check compares the endpoint with pyfunc predict and
spark_udf row by row, and fails (naming rows) for a wrong version or columns out of order.
"""

from __future__ import annotations

import json
import os
import uuid
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

from harness import links
from harness.checks.endpoint_scoring import check_endpoint_scoring
from harness.online_endpoints import OnlineEndpointsClient
from harness.pytest_plugin import assert_endpoint_matches_predict
from harness.workspaces import Emulator

rng = np.random.default_rng(7)
DATA = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300), "x3": rng.uniform(size=300)})
TARGET = 1.5 * DATA["x1"] - 2 * DATA["x2"] + 4 * DATA["x3"]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("harness-endpoint")).up()
    links.link(emu.databricks, emu.azureml)
    yield emu
    emu.down()


@pytest.fixture(scope="module")
def registered(emu):
    """The seed's flow: tracked in Databricks, registered in Azure ML (v1, then v2)."""
    name = f"dbx-endpoint-{uuid.uuid4().hex[:6]}"
    env = {**emu.databricks.env, "MLFLOW_TRACKING_TOKEN": emu.azureml.token}
    with mock.patch.dict(os.environ, env):
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri(emu.azureml.tracking_uri)
        mlflow.set_experiment(f"/Users/{emu.databricks.user}/endpoint-{uuid.uuid4().hex[:6]}")
        try:
            for coef in (1.0, 2.0):
                with mlflow.start_run():
                    mlflow.sklearn.log_model(LinearRegression().fit(DATA, TARGET * coef), name="model",
                                             input_example=DATA.head(3), registered_model_name=name)
            aml = MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)
            assert sorted(v.version for v in aml.search_model_versions(f"name = '{name}'")) == ["1", "2"]
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
    return name


@pytest.fixture
def aml_uris(emu):
    with mock.patch.dict(os.environ, emu.azureml.env):
        mlflow.set_tracking_uri(emu.azureml.tracking_uri)
        mlflow.set_registry_uri(emu.azureml.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def spark_session():
    from harness.spark import get_spark

    return get_spark()


def test_endpoint_check_passes_for_the_deployed_v2(emu, registered, aml_uris, spark_session):
    endpoints = OnlineEndpointsClient.for_workspace(emu.azureml)
    result = check_endpoint_scoring(endpoints, registered, 2, DATA, spark=spark_session)
    assert result.passed, result.summary()
    assert result.compared["rows"] == 300
    assert result.details["mismatches_vs_predict"] == 0 and result.details["mismatches_vs_spark_udf"] == 0
    assert result.details["provisioning_state"] == "Succeeded"
    assert "skipped" not in result.details
    # The endpoint is deleted afterwards.
    listed = endpoints.call("GET", "/onlineEndpoints").json()["value"]
    assert not [e for e in listed if e["name"].startswith("harness-")]


def test_wrong_version_deployed_is_reported_row_by_row(emu, registered, aml_uris):
    endpoints = OnlineEndpointsClient.for_workspace(emu.azureml)
    result = check_endpoint_scoring(endpoints, registered, 1, DATA,
                                    reference_model_uri=f"models:/{registered}/2")
    assert not result.passed
    assert result.details["mismatches_vs_predict"] > 250
    texts = [str(d) for d in result.differences]
    assert texts[0].startswith("predictions: ") and "differ between the endpoint and predict" in texts[0]
    assert any(t.startswith("row 0 (x1=") and "endpoint" in t and "vs predict" in t for t in texts), texts
    assert "spark_udf comparison skipped" in " ".join(result.notes)


def test_columns_out_of_order_are_explained_and_fail(emu, registered, aml_uris):
    endpoints = OnlineEndpointsClient.for_workspace(emu.azureml)
    result = check_endpoint_scoring(endpoints, registered, 2, DATA, columns=["x2", "x1", "x3"], positional=True)
    assert not result.passed
    texts = [str(d) for d in result.differences]
    assert any(t.startswith("payload columns: values sent in the order ['x2', 'x1', 'x3']") for t in texts), texts
    assert result.details["mismatches_vs_predict"] > 250
    # Named columns in any order are fine: the endpoint matches them by name.
    ok = check_endpoint_scoring(endpoints, registered, 2, DATA, columns=["x3", "x1", "x2"])
    assert ok.passed, ok.summary()


def test_missing_column_is_a_difference_not_a_pass(emu, registered, aml_uris):
    endpoints = OnlineEndpointsClient.for_workspace(emu.azureml)
    result = check_endpoint_scoring(endpoints, registered, 2, DATA, columns=["x1", "x2"])
    assert not result.passed
    texts = [str(d) for d in result.differences]
    assert "input column x3: required by the model signature, not sent to the endpoint" in texts


def test_plugin_helper(emu, registered, monkeypatch):
    from harness import pytest_plugin

    monkeypatch.setitem(pytest_plugin._ACTIVE, "workspaces", emu)
    result = assert_endpoint_matches_predict(registered, 2, DATA.head(50))
    assert result.passed
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_endpoint_matches_predict(registered, 1, DATA.head(50), reference_model_uri=f"models:/{registered}/2")
    assert "row 0 (x1=" in str(failed.value)


def test_scoring_uri_answers_on_the_workspace_listener(emu):
    # No endpoint: a clear 404 in the data plane's shape, not the workspace's 401.
    resp = requests.post(f"{emu.azureml.url}/inference/nope/score", json={"input_data": [[1]]}, timeout=30)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "EndpointNotFound"


def test_harness_check_reports_the_endpoint_check(emu, tmp_path):
    """`harness check` (what `make run` runs) includes endpoint scoring: linked, on the seed's
    Databricks model registered in Azure ML through the mirror."""
    from click.testing import CliRunner

    from harness.cli import main

    saved = dict(os.environ)
    try:
        result = CliRunner().invoke(main, ["check", "--state-dir", str(emu.state.root), "--no-spark",
                                           "--rows", "200", "--json", str(tmp_path / "report.json")])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    data = json.loads((tmp_path / "report.json").read_text())
    endpoint = next(c for c in data["checks"] if c["name"] == "endpoint_scoring")
    assert endpoint["passed"], result.output
    assert "registered in Azure ML through the mirror" in endpoint["notes"][0]
    assert endpoint["compared"]["rows"] == 200 and endpoint["details"]["mismatches_vs_predict"] == 0
    assert "spark_udf comparison skipped: no Spark session" in " ".join(endpoint["notes"])
    assert "endpoint_scoring" in result.output and result.exit_code == 0, result.output
