"""The seed's Spark ML flavour against the emulated Databricks workspace, with one real SparkSession:
mlflow.spark.log_model(..., registered_model_name=...) registers v1 then v2; the seed's positional
scoring line fails on the model without signature (as on a real cluster) and the check says why and
how to fix it; the struct form and the signed model pass; the run is dual-logged and the mirrored
Spark model loads from Azure ML. Spark ML UDFs start a JVM per worker: jobs are one partition,
a hundred rows."""

import mlflow
import pytest
from mlflow import MlflowClient

from harness import links, scenarios
from harness.checks import (
    check_dual_logging,
    check_registry_increments,
    check_udf_scoring,
)
from harness.checks.registry import verify_registry_versions
from harness.spark_ml_steps import (
    NO_SIGNATURE_MARK,
    expected_failure,
    mirrored_model_predicts,
)

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def linked(emulated_workspaces):
    """Linked for this module only (the scenario's runs are mirrored); unlinked after."""
    import os

    db, aml = emulated_workspaces.databricks, emulated_workspaces.azureml
    saved = dict(os.environ)
    os.environ.update({**db.env, **aml.env})
    links.link(db, aml)
    yield emulated_workspaces
    links.unlink(db)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def runs(linked, spark):
    ws = linked.databricks
    return scenarios.run_spark_ml_scenario(ws.url, ws.token, ws.user, spark, folder="harness-spark-ml",
                                           model_name="spark-seed", rows=100)


@pytest.fixture(scope="module")
def data():
    return scenarios.training_data(100, seed=7)[0][scenarios.SPARK_FEATURES]


def texts(result):
    return [str(d) for d in result.differences]


def test_log_model_registers_v1_then_v2_and_increments(runs):
    assert runs.versions == [1, 2]
    client = MlflowClient("databricks", "databricks")
    assert verify_registry_versions(client, "spark-seed").passed
    flavors = mlflow.models.get_model_info(runs.plain.model_uri).flavors
    assert "spark" in flavors and mlflow.models.get_model_info(runs.plain.model_uri).signature is None
    assert mlflow.models.get_model_info(runs.signed.model_uri).signature is not None
    res = check_registry_increments(client, "spark-seed-again", runs.signed.registered_source,
                                    run_id=runs.signed.run_id, model_id=runs.signed.model_id, registrations=3)
    assert res.passed, res.summary()


def test_seeds_positional_line_without_signature_is_explained(runs, spark, data):
    result = check_udf_scoring(spark, runs.plain.model_uri, data, positional=True, partitions=1)
    assert not result.passed and result.error is None  # caught from the Spark job, not a crash
    explained = [t for t in texts(result) if NO_SIGNATURE_MARK in t]
    assert explained, result.summary()
    assert explained[0].startswith("spark_udf: failed: ")
    assert "'Input_column1'" in explained[0] and "struct('Input_column1', 'Input_column2')" in explained[0]
    assert "signature=infer_signature" in explained[0]
    assert "FIELD_NOT_FOUND" in result.details["spark_udf_error"]
    # harness check reports the seed's line on this model as an expected, explained failure.
    verdict = expected_failure(result, "seed line", NO_SIGNATURE_MARK, "why")
    assert verdict.passed and NO_SIGNATURE_MARK in verdict.notes[0]


def test_struct_form_and_signed_model_pass(runs, spark, data):
    """Negative controls: the two fixes the explanation names both score, and match predict."""
    for uri, positional in ((runs.plain.model_uri, False), (runs.signed.model_uri, True)):
        result = check_udf_scoring(spark, uri, data, positional=positional, partitions=1)
        assert result.passed, result.summary()
        assert result.details["mismatches"] == 0 and result.compared["rows"] == 100
        assert not any(NO_SIGNATURE_MARK in n for n in result.notes)


def test_spark_run_is_dual_logged_and_mirrored_model_loads_from_azureml(linked, runs, data):
    import time

    db = MlflowClient("databricks", "databricks")
    aml_uri = linked.azureml.tracking_uri
    aml = MlflowClient(aml_uri, aml_uri)
    deadline = time.monotonic() + 60
    while True:
        res = check_dual_logging(db, aml, run_id=runs.signed.run_id)
        if res.passed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert res.passed, res.summary()
    # mlflow.spark.log_model keeps the model as run artifacts (MLmodel, the saved pipeline under sparkml/),
    # every file compared by sha256 with the mirror's.
    files = res.details["artifacts"]
    assert "model/MLmodel" in files and any(p.startswith("model/sparkml/") for p in files), sorted(files)
    loaded = mirrored_model_predicts(db, aml, aml_uri, runs.signed.run_id, data)
    assert loaded.passed, loaded.summary()
    assert loaded.compared["rows"] == 100
