"""Check 3: batch scoring with mlflow.pyfunc.spark_udf (as in the seed) gives what pyfunc predict gives."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

import mlflow
from harness.checks.result import CheckResult

ROW_ID = "__harness_row"


def _short_error(exc: Exception) -> str:
    """Spark wraps UDF errors in a long PythonException; keep the Python error line that matters."""
    text = str(exc)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln or "Exception:" in ln:
            return f"{type(exc).__name__}: {ln[:500]}"
    return f"{type(exc).__name__}: {(lines[0] if lines else '')[:500]}"


def _signature_columns(model) -> list[str] | None:
    sig = model.metadata.signature
    if sig is None or sig.inputs is None or not sig.inputs.has_input_names():
        return None
    return list(sig.inputs.input_names())


def _output_is_tensor(model) -> bool:
    sig = model.metadata.signature
    return bool(sig and sig.outputs is not None and sig.outputs.is_tensor_spec())


def explain_pitfalls(result: CheckResult, model, data: pd.DataFrame, columns: list[str], positional: bool) -> None:
    """Cheap checks for the spark_udf pitfalls in FIDELITY.md, before any Spark job runs."""
    expected = _signature_columns(model)
    if expected is None:
        if positional:
            result.notes.append(
                "the model has no signature: positional UDF columns reach it named 0, 1, ... "
                "(scikit-learn then fails on feature names)"
            )
        return
    missing = [c for c in expected if c not in columns]
    for col in missing:
        result.differ(f"input column {col}", "required by the model signature, not passed to the UDF")
    extra = [c for c in columns if c not in expected]
    if extra:
        result.notes.append(f"columns {extra} are not in the model signature: spark_udf silently drops them")
    if positional and not missing and [c for c in columns if c in expected] != expected:
        result.differ(
            "udf columns",
            f"positional order {columns} differs from the model signature's {expected}: spark_udf renames "
            "positional columns to the signature's order, so values feed the wrong features "
            "(pass F.struct(*cols) or use the signature's order)",
            expected, columns,
        )
    nulls = {c: int(n) for c, n in data[[c for c in columns if c in data]].isna().sum().items() if n}
    if nulls:
        result.notes.append(f"null values {nulls}: most models fail with 'Input X contains NaN'")
    strings = [c for c in columns if c in data and data[c].dtype == object]
    if strings:
        result.notes.append(f"columns {strings} hold strings: spark_udf fails with 'Can not safely convert'")


def check_udf_scoring(
    spark,
    model_uri: str,
    data: pd.DataFrame,
    columns: list[str] | None = None,
    reference_model_uri: str | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    positional: bool = False,
    result_type: str | None = None,
    partitions: int | None = None,
    max_reported: int = 10,
) -> CheckResult:
    """Score `data` with spark_udf(model_uri) via withColumn and compare with
    pyfunc.load_model(reference_model_uri or model_uri).predict on the same rows.

    Columns go to the UDF as F.struct(*columns) (names kept); positional=True passes them as
    separate arguments, as the seed does. `partitions` repartitions the Spark frame first."""
    from pyspark.sql import functions as F

    ref_uri = reference_model_uri or model_uri
    result = CheckResult("udf_scoring", subject=f"spark_udf({model_uri}) vs pyfunc predict({ref_uri})")
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        model = mlflow.pyfunc.load_model(model_uri)
        reference = model if ref_uri == model_uri else mlflow.pyfunc.load_model(ref_uri)
        result.timings["load_model"] = time.perf_counter() - t
        columns = list(columns or _signature_columns(model) or data.columns)
        explain_pitfalls(result, model, data, columns, positional)
        if result_type is None and _output_is_tensor(model):
            result_type = "double"
            result.notes.append("the signature's output is a tensor (spark_udf would return array<double>); "
                                "scored with result_type='double'")
        rows = len(data)
        result.compared.update(rows=rows, columns=columns)

        t = time.perf_counter()
        expected = np.asarray(reference.predict(data[columns].copy()), dtype="float64").reshape(rows, -1)[:, 0]
        pandas_s = time.perf_counter() - t
        result.timings["pandas_predict"] = pandas_s

        t = time.perf_counter()
        sdf = spark.createDataFrame(data[columns].assign(**{ROW_ID: np.arange(rows)}))
        if partitions:
            sdf = sdf.repartition(partitions)
        kwargs = {"env_manager": "local"}
        if result_type:
            kwargs["result_type"] = result_type
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, **kwargs)
        result.timings["spark_udf_create"] = time.perf_counter() - t
        call = udf(*columns) if positional else udf(F.struct(*columns))
        t = time.perf_counter()
        scored = sdf.withColumn("prediction", call).select(ROW_ID, "prediction").toPandas()
        spark_s = time.perf_counter() - t
        result.timings["spark_score"] = spark_s
        result.details.update(
            rows=rows,
            spark_rows_per_s=rows / spark_s if spark_s else None,
            pandas_rows_per_s=rows / pandas_s if pandas_s else None,
        )
        _compare(result, data, columns, scored, expected, atol, rtol, max_reported)
        result.notes.append(
            f"{rows} rows: spark_udf {rows / max(spark_s, 1e-9):,.0f} rows/s ({spark_s:.2f} s, plus "
            f"{result.timings['spark_udf_create']:.2f} s to build the UDF), pandas predict "
            f"{rows / max(pandas_s, 1e-9):,.0f} rows/s ({pandas_s:.3f} s)"
        )
    except Exception as exc:
        result.error = _short_error(exc)
    finally:
        result.timings["total"] = time.perf_counter() - started
    return result


def _compare(result, data, columns, scored, expected, atol, rtol, max_reported) -> None:
    rows = len(expected)
    if len(scored) != rows:
        result.differ("rows", f"spark returned {len(scored)} rows, expected {rows}", rows, len(scored))
    scored = scored.sort_values(ROW_ID)
    got = np.full(rows, np.nan)
    got[scored[ROW_ID].to_numpy()] = np.asarray(scored["prediction"].tolist(), dtype="float64").reshape(len(scored), -1)[:, 0]
    close = np.isclose(got, expected, atol=atol, rtol=rtol, equal_nan=True)
    bad = np.flatnonzero(~close)
    diff = np.abs(got - expected)
    result.details["mismatches"] = int(len(bad))
    result.details["max_abs_diff"] = float(np.nanmax(diff)) if rows else 0.0
    if len(bad):
        result.differ("predictions", f"{len(bad)} of {rows} rows differ beyond tolerance (atol={atol}, rtol={rtol})",
                      0, int(len(bad)))
    for i in bad[:max_reported]:
        inputs = ", ".join(f"{c}={data[c].iloc[i]!r}" for c in columns[:4])
        result.differ(f"row {i} ({inputs})",
                      f"spark_udf {got[i]!r} vs predict {expected[i]!r} (|diff| {diff[i]:.3g})",
                      float(expected[i]), float(got[i]))
