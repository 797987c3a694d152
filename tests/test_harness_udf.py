"""Check 3 with a real local Spark session (one for the whole test session) and real models."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from harness import scenarios
from harness.checks import check_udf_scoring

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def seed(emulated_workspaces, spark):
    """The seed notebook on the Databricks workspace, including its spark_udf batch-scoring cell."""
    import os

    ws = emulated_workspaces.databricks
    os.environ.update(ws.env)
    return scenarios.run_databricks_scenario(ws.url, ws.token, ws.user, folder="harness-udf",
                                             model_name="udf-seed", epochs=3, spark=spark, score_rows=200)


@pytest.fixture(scope="module")
def data():
    return scenarios.training_data(200, seed=3)[0]


def batch_centering_model(path):
    """A pyfunc whose output depends on the batch it gets (it centres by the batch mean): Spark
    scores in per-partition batches, pandas predict sees all rows at once."""

    class CentreByBatch(mlflow.pyfunc.PythonModel):  # defined here so cloudpickle stores it by value
        def predict(self, context, model_input, params=None):
            col = model_input["Input_column1"]
            return col - col.mean()

    X = scenarios.training_data(20)[0]
    mlflow.pyfunc.save_model(path, python_model=CentreByBatch(),
                             signature=infer_signature(X, pd.Series(np.zeros(20), name="prediction")))
    return str(path)


def test_seed_batch_scoring_and_udf_matches_predict(seed, spark, data):
    assert seed.scored_rows == 200
    assert set(seed.score_sample[0]) == {*scenarios.FEATURES, "prediction"}
    result = check_udf_scoring(spark, seed.model_uri, data, partitions=2)
    assert result.passed, result.summary()
    assert result.compared["rows"] == 200 and result.details["mismatches"] == 0
    assert result.details["spark_rows_per_s"] > 0 and result.details["pandas_rows_per_s"] > 0


def test_batch_dependent_model_is_caught_row_by_row(spark, data, tmp_path):
    uri = batch_centering_model(tmp_path / "centre")
    result = check_udf_scoring(spark, uri, data, partitions=2)
    assert not result.passed
    first = str(result.differences[0])
    assert first.startswith("predictions: ") and "of 200 rows differ beyond tolerance" in first
    assert str(result.differences[1]).startswith("row ")
    assert "spark_udf" in str(result.differences[1]) and "vs predict" in str(result.differences[1])


def test_different_reference_model_and_positional_column_order(seed, spark, data, tmp_path):
    from sklearn.linear_model import LinearRegression

    X, y = scenarios.training_data(50, seed=9)
    other = tmp_path / "other"
    mlflow.sklearn.save_model(LinearRegression().fit(X, -y), other,
                              signature=infer_signature(X, pd.Series(-y.to_numpy(), name="prediction")))
    result = check_udf_scoring(spark, seed.model_uri, data, reference_model_uri=str(other))
    assert "200 of 200 rows differ" in str(result.differences[0])

    # The seed's positional call with the columns in another order than the signature: spark_udf
    # feeds them by position, so the check names the cause as well as the wrong rows.
    reordered = list(reversed(scenarios.FEATURES))
    result = check_udf_scoring(spark, seed.model_uri, data, columns=reordered, positional=True)
    texts = [str(d) for d in result.differences]
    assert texts[0].startswith(f"udf columns: positional order {reordered} differs from the model signature's")
    assert any(t.startswith("predictions: ") for t in texts)
