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


# Each explanation appears for the case that triggers it, with its fix; passing forms have none.
EXPLANATION_MARKS = ("logged without a signature", "Spark workers cannot import", "as strings",
                     "result_type", "values per row")


def texts(result):
    return [str(d) for d in result.differences]


def test_passing_forms_carry_no_explanation(seed, spark, data):
    # The seed's positional line on a model with a signature, and the struct form.
    for positional in (True, False):
        result = check_udf_scoring(spark, seed.model_uri, data, positional=positional, partitions=1)
        assert result.passed, result.summary()
        assert not [t for t in texts(result) + result.notes if any(m in t for m in EXPLANATION_MARKS)]


def test_no_signature_positional_sklearn_is_explained(spark, data, tmp_path):
    from sklearn.linear_model import LinearRegression

    X, y = scenarios.training_data(50)
    mlflow.sklearn.save_model(LinearRegression().fit(X, y), tmp_path / "nosig")  # fitted on named columns
    result = check_udf_scoring(spark, str(tmp_path / "nosig"), data, positional=True, partitions=1)
    assert not result.passed and result.error is None
    explained = [t for t in texts(result) if "logged without a signature" in t]
    assert explained and "struct('Input_column1', 'Input_column2', 'Input_column3')" in explained[0], result.summary()
    assert "feature names" in result.details["spark_udf_error"]


def test_workers_without_the_models_dependency_are_explained(spark, data, tmp_path, monkeypatch):
    """A module the driver can import (sys.path) but the Spark workers cannot: as a venv package
    on a driver whose workers run another Python."""
    dep = tmp_path / "dep"
    dep.mkdir()
    (dep / "harness_driver_only_dep.py").write_text("K = 2.0\n")
    monkeypatch.syspath_prepend(str(dep))

    class UsesDep(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            import harness_driver_only_dep

            return model_input["Input_column1"] * harness_driver_only_dep.K

    X = scenarios.training_data(20)[0]
    mlflow.pyfunc.save_model(tmp_path / "dep-model", python_model=UsesDep(),
                             signature=infer_signature(X, pd.Series(np.zeros(20), name="prediction")))
    result = check_udf_scoring(spark, str(tmp_path / "dep-model"), data, partitions=1)
    assert not result.passed and result.error is None
    explained = [t for t in texts(result) if "Spark workers cannot import 'harness_driver_only_dep'" in t]
    assert explained, result.summary()
    assert "PYSPARK_PYTHON" in explained[0] and "env_manager='virtualenv'" in explained[0]


def test_string_columns_are_explained(seed, spark, data):
    as_strings = data.astype(str)
    result = check_udf_scoring(spark, seed.model_uri, as_strings, positional=True, partitions=1)
    assert result.error is None
    assert any("hold strings" in n for n in result.notes)  # explained before scoring, always
    if not result.passed:  # pandas 3 refuses the conversion inside the workers; pandas 2 converts
        assert any("as strings" in t and "cast('double')" in t for t in texts(result)), result.summary()
    else:
        assert result.details["mismatches"] == 0, result.summary()


def test_result_type_for_a_multi_output_model(spark, data, tmp_path):
    from pyspark.sql.types import ArrayType, FloatType
    from sklearn.linear_model import LinearRegression

    X, y = scenarios.training_data(50)
    Y = np.c_[y, -2 * y]
    model = LinearRegression().fit(X, Y)
    mlflow.sklearn.save_model(model, tmp_path / "multi", signature=infer_signature(X, model.predict(X)))
    uri = str(tmp_path / "multi")

    # The seed's ArrayType(FloatType()): both outputs, compared at float32 precision.
    result = check_udf_scoring(spark, uri, data, positional=True, result_type=ArrayType(FloatType()), partitions=1)
    assert result.passed, result.summary()
    assert result.compared["values_per_row"] == 2 and result.details["mismatches"] == 0
    assert any("32-bit" in n for n in result.notes)

    # A scalar result type: spark_udf silently keeps the first output only.
    result = check_udf_scoring(spark, uri, data, positional=True, result_type="double", partitions=1)
    assert not result.passed
    first = texts(result)[0]
    assert first.startswith("result type: the model returns 2 values per row but result_type is 'double'")
    assert "ArrayType(FloatType())" in first
    assert any(t.startswith("values per row: spark_udf returns 1, predict 2") for t in texts(result))

    # No result_type: spark_udf takes array<double> from the tensor signature and fails converting.
    result = check_udf_scoring(spark, uri, data, positional=True, partitions=1)
    assert not result.passed and result.error is None
    assert any(t.startswith("spark_udf: failed: the UDF's result_type does not fit") and "not iterable" in t
               for t in texts(result)), result.summary()
