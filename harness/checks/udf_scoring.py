"""Check 3: batch scoring with mlflow.pyfunc.spark_udf (as in the seed) gives what pyfunc predict gives."""

from __future__ import annotations

import contextlib
import time
import uuid

import mlflow
import numpy as np
import pandas as pd

from harness.checks import udf_failures
from harness.checks.result import CheckResult

ROW_ID = "__harness_row"


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
                "(a model that looks its inputs up by name then fails; struct(*cols) keeps the names)"
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
    strings = [c for c in columns if c in data and (data[c].dtype == object or pd.api.types.is_string_dtype(data[c]))]
    if strings:
        result.notes.append(f"columns {strings} hold strings: spark_udf fails with 'Can not safely convert'")


def _output_width(model) -> int | None:
    """Values per row the signature promises: 1 for a column, k for a (-1, k) tensor; None if unknown."""
    sig = model.metadata.signature
    if sig is None or sig.outputs is None:
        return None
    if sig.outputs.is_tensor_spec():
        shape = sig.outputs.inputs[0].shape
        return int(shape[1]) if len(shape) == 2 and shape[1] and shape[1] > 0 else (1 if len(shape) == 1 else None)
    return len(sig.outputs.inputs)


def _type_name(result_type) -> str:
    return result_type if isinstance(result_type, str) else result_type.simpleString()


def explain_result_type(result: CheckResult, model, result_type) -> None:
    """Array vs scalar: what spark_udf will hand back for this model and result_type."""
    # fidelity: Spark UDF scoring — result types
    width = _output_width(model)
    name = _type_name(result_type).replace(" ", "").lower()
    is_array = name.startswith("array")
    if width and width > 1 and not is_array:
        result.differ(
            "result type",
            f"the model returns {width} values per row but result_type is {name!r}: spark_udf cannot fit "
            f"them in one number. Fix: result_type=ArrayType(FloatType()) (or 'array<double>')",
            "array", name)
    elif width == 1 and is_array:
        result.notes.append(f"the model returns one value per row and result_type is {name!r}: each prediction "
                            "is a one-element array (result_type='double' gives a plain number column)")
    if "array<float>" in name or name == "float":
        result.notes.append("FloatType is 32-bit: predictions are rounded to ~7 significant digits "
                            "(compared with that tolerance)")


def _worker_python(spark) -> str | None:
    """The interpreter the Spark workers run (one tiny job, only after a failure)."""
    try:
        return spark.sparkContext.parallelize([0], 1).map(lambda _: __import__("sys").executable).first()
    except Exception:
        return None


def check_udf_scoring(
    spark,
    model_uri: str,
    data: pd.DataFrame,
    columns: list[str] | None = None,
    reference_model_uri: str | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    positional: bool = False,
    result_type=None,
    partitions: int | None = None,
    max_reported: int = 10,
) -> CheckResult:
    """Score `data` with spark_udf(model_uri) via withColumn and compare with
    pyfunc.load_model(reference_model_uri or model_uri).predict on the same rows.

    Columns go to the UDF as F.struct(*columns) (names kept); positional=True passes them as
    separate arguments, as the seed does. `result_type` is what spark_udf gets (a string or a
    Spark type such as ArrayType(FloatType())). `partitions` repartitions the Spark frame first.
    A failing Spark job is not a crash of the check: it becomes a difference that says the cause
    in the user's terms with its fix (harness.checks.udf_failures)."""
    from pyspark.sql import functions as F

    ref_uri = reference_model_uri or model_uri
    result = CheckResult("udf_scoring", subject=f"spark_udf({model_uri}) vs pyfunc predict({ref_uri})")
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        model = mlflow.pyfunc.load_model(model_uri)
        reference = model if ref_uri == model_uri else mlflow.pyfunc.load_model(ref_uri)
        result.timings["load_model"] = time.perf_counter() - t
    except Exception as exc:
        result.error = udf_failures.short_error(exc)
        result.timings["total"] = time.perf_counter() - started
        return result
    sig_columns = _signature_columns(model)
    columns = list(columns or sig_columns or data.columns)
    ctx = udf_failures.Context(columns=columns, positional=positional, signature_columns=sig_columns)
    explain_pitfalls(result, model, data, columns, positional)
    if result_type is None and _output_is_tensor(model) and (_output_width(model) or 1) == 1:
        result_type = "double"
        result.notes.append("the signature's output is a tensor (spark_udf would return array<double>); "
                            "scored with result_type='double'")
    if result_type is not None:
        explain_result_type(result, model, result_type)
    if "array<float>" in _type_name(result_type or "double").replace(" ", "").lower():
        rtol = max(rtol, 1e-6)
        atol = max(atol, 1e-6)
    rows = len(data)
    result.compared.update(rows=rows, columns=columns)

    expected = None
    t = time.perf_counter()
    try:
        expected = np.asarray(reference.predict(data[columns].copy()), dtype="float64").reshape(rows, -1)
    except Exception as exc:
        ctx.driver_predict_ok = False
        _failed(result, "predict", exc, ctx)
    pandas_s = time.perf_counter() - t
    result.timings["pandas_predict"] = pandas_s

    try:
        t = time.perf_counter()
        sdf = spark.createDataFrame(data[columns].assign(**{ROW_ID: np.arange(rows)}))
        if partitions:
            sdf = sdf.repartition(partitions)
        kwargs = {"env_manager": "local"}
        if result_type is not None:
            kwargs["result_type"] = result_type
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, **kwargs)
        result.timings["spark_udf_create"] = time.perf_counter() - t
        call = udf(*columns) if positional else udf(F.struct(*columns))
        t = time.perf_counter()
        with _job_group(spark) as group:
            scored = sdf.withColumn("prediction", call).select(ROW_ID, "prediction").toPandas()
        spark_s = time.perf_counter() - t
        result.timings["spark_score"] = spark_s
    except Exception as exc:
        text = str(exc)
        if "No module named" in text:
            ctx.worker_python = _worker_python(spark)
        _failed(result, "spark_udf", exc, ctx)
        result.timings["total"] = time.perf_counter() - started
        return result
    result.details.update(
        rows=rows,
        spark_rows_per_s=rows / spark_s if spark_s else None,
        pandas_rows_per_s=rows / pandas_s if pandas_s else None,
    )
    _report_executors(result, spark, group)
    if expected is not None:
        _compare(result, data, columns, scored, expected, atol, rtol, max_reported)
    result.notes.append(
        f"{rows} rows: spark_udf {rows / max(spark_s, 1e-9):,.0f} rows/s ({spark_s:.2f} s, plus "
        f"{result.timings['spark_udf_create']:.2f} s to build the UDF), pandas predict "
        f"{rows / max(pandas_s, 1e-9):,.0f} rows/s ({pandas_s:.3f} s)"
    )
    result.timings["total"] = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _job_group(spark):
    """The scoring job under a job group of its own, so its tasks can be found afterwards."""
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.jobGroup.id")
    group = f"harness-udf-scoring-{uuid.uuid4().hex[:12]}"
    sc.setJobGroup(group, "harness UDF check: spark_udf scoring")
    try:
        yield group
    finally:
        sc.setLocalProperty("spark.jobGroup.id", previous)
        sc.setLocalProperty("spark.job.description", None)


def _report_executors(result: CheckResult, spark, group: str) -> None:
    """Where the scoring tasks ran (on a cluster: which executors), from Spark's own records."""
    from harness.spark import tasks_by_executor

    try:
        executors = tasks_by_executor(spark, group)
    except Exception as exc:  # the report is a diagnostic: never fail the check over it
        result.notes.append(f"could not read where the tasks ran: {type(exc).__name__}: {exc}")
        return
    if not executors:
        return
    result.details["executors"] = executors
    where = ", ".join(f"{eid} ({e['host']}): {e['tasks']} tasks" for eid, e in sorted(executors.items()))
    result.notes.append(f"scored on {len(executors)} executor(s) of {spark.sparkContext.master}: {where}")


def _failed(result: CheckResult, where: str, exc: Exception, ctx: udf_failures.Context) -> None:
    """A failing predict or Spark job, said as its cause and fix (or as the raw error line)."""
    ctx.where = where
    raw = udf_failures.short_error(exc)
    result.details[f"{where}_error"] = raw
    explanations = udf_failures.explain(str(exc), ctx)
    if not explanations:
        result.differ(where, f"failed: {raw}")
    for message in explanations:
        result.differ(where, f"failed: {message} (error: {raw})")


def _values(series) -> np.ndarray:
    """Predictions as a 2-D float array: one column for scalars, k for arrays of k values."""
    items = series.tolist()
    if items and isinstance(items[0], (list, tuple, np.ndarray)):
        return np.asarray([np.asarray(v, dtype="float64") for v in items], dtype="float64")
    return np.asarray(items, dtype="float64").reshape(len(items), -1)


def _compare(result, data, columns, scored, expected, atol, rtol, max_reported) -> None:
    rows = len(expected)
    if len(scored) != rows:
        result.differ("rows", f"spark returned {len(scored)} rows, expected {rows}", rows, len(scored))
    scored = scored.sort_values(ROW_ID)
    values = _values(scored["prediction"])
    width = min(values.shape[1], expected.shape[1]) if len(values) else expected.shape[1]
    if len(values) and values.shape[1] != expected.shape[1]:
        result.differ("values per row", f"spark_udf returns {values.shape[1]}, predict {expected.shape[1]} "
                      "(choose result_type to match the model's output)", expected.shape[1], values.shape[1])
    result.compared["values_per_row"] = int(expected.shape[1])
    got = np.full((rows, width), np.nan)
    got[scored[ROW_ID].to_numpy()] = values[:, :width]
    exp = expected[:, :width]
    close = np.isclose(got, exp, atol=atol, rtol=rtol, equal_nan=True).all(axis=1)
    bad = np.flatnonzero(~close)
    diff = np.abs(got - exp).max(axis=1) if rows else np.zeros(0)
    result.details["mismatches"] = int(len(bad))
    result.details["max_abs_diff"] = float(np.nanmax(diff)) if rows else 0.0
    if len(bad):
        result.differ("predictions", f"{len(bad)} of {rows} rows differ beyond tolerance (atol={atol}, rtol={rtol})",
                      0, int(len(bad)))

    def show(a):
        return repr(float(a[0])) if len(a) == 1 else repr([float(x) for x in a])

    for i in bad[:max_reported]:
        inputs = ", ".join(f"{c}={data[c].iloc[i]!r}" for c in columns[:4])
        result.differ(f"row {i} ({inputs})",
                      f"spark_udf {show(got[i])} vs predict {show(exp[i])} (|diff| {diff[i]:.3g})",
                      exp[i].tolist(), got[i].tolist())
