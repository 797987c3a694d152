"""Spark UDF scoring failures in the user's terms: what went wrong, and the line that fixes it.

A failing spark_udf job surfaces as a long PythonException / IllegalArgumentException whose
useful part is one line deep in a worker traceback. Each explainer below recognises one cause
seen with the real MLflow 3.17.2 + PySpark 4.3 (docs/pages/fidelity.md, "Spark UDF scoring") and says
it as the notebook author would need it."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass


@dataclass
class Context:
    """What the check knows about the scoring call whose job failed."""

    columns: list[str]
    positional: bool
    signature_columns: list[str] | None  # None: the model was logged without a signature
    where: str = "spark_udf"  # "spark_udf" (the Spark job) or "predict" (pandas, on the driver)
    driver_predict_ok: bool = True  # the same model predicted on the driver without error
    worker_python: str | None = None  # the Python the Spark workers run, when it was asked


NO_SIGNATURE_FIX = (
    "pass the columns as one struct so they keep their names: "
    "pyfunc_udf(struct({cols})) (from pyspark.sql.functions import struct), "
    "or log the model with a signature (log_model(..., signature=infer_signature(X, predictions)) "
    "or input_example=X.head())"
)


def _cols(ctx: Context) -> str:
    return ", ".join(repr(c) for c in ctx.columns)


def _no_signature(text: str, ctx: Context) -> str | None:
    # fidelity: Spark UDF scoring — a Spark ML pipeline reports FIELD_NOT_FOUND on fields `0`, `1`;
    # scikit-learn fitted on a DataFrame reports unseen feature names.
    field = re.search(r"FIELD_NOT_FOUND\]? No such struct field `?([^`\s]+)`? in (`?0`?(?:, `?\d+`?)*)", text)
    sklearn_names = "feature names should match" in text or "Feature names unseen at fit time" in text
    if not (field or (sklearn_names and ctx.positional and ctx.signature_columns is None)):
        return None
    wanted = f" and cannot find its input {field.group(1)!r}" if field else " and rejects the unknown feature names"
    return (f"the model was logged without a signature, so spark_udf passed the positional columns "
            f"({_cols(ctx)}) as fields named 0, 1, ...{wanted}. Fix: "
            + NO_SIGNATURE_FIX.format(cols=_cols(ctx)))


def _missing_module(text: str, ctx: Context) -> str | None:
    # fidelity: Spark UDF scoring — workers without the venv's Python fail with No module named 'pandas'.
    found = re.search(r"No module named '([^']+)'", text)
    if not found:
        return None
    module = found.group(1)
    if ctx.where == "spark_udf" and ctx.driver_predict_ok:
        python = ""
        if ctx.worker_python and ctx.worker_python != sys.executable:
            python = f" (the workers run {ctx.worker_python}, the driver {sys.executable})"
        return (f"the Spark workers cannot import {module!r}, which the model needs, although the driver "
                f"can{python}. Fix: run the workers on the Python that has the model's requirements "
                f"(PYSPARK_PYTHON={sys.executable}, and spark.executorEnv.PYSPARK_PYTHON on a cluster), install "
                f"them on the cluster (Databricks: the cluster's Libraries tab), or "
                f"spark_udf(spark, model_uri, env_manager='virtualenv') to rebuild the model's environment "
                f"from its requirements on each worker (needs PyPI from the workers)")
    return (f"{module!r}, which the model needs, is not installed where it is loaded. Fix: install the "
            f"model's requirements (mlflow.pyfunc.get_model_dependencies(model_uri) names the file)")


def _strings(text: str, ctx: Context) -> str | None:
    # fidelity: Spark UDF scoring — string columns: "Can not safely convert".
    if not re.search(r"Can not safely convert|could not convert string to float|Incompatible input types"
                     r"|cannot resolve .* due to data type mismatch.*string", text, re.S):
        return None
    col = re.search(r"column '?([\w ]+?)'?[.:]", text)
    which = f"column {col.group(1)!r}" if col else "a column"
    return (f"{which} reaches the model as strings where it expects numbers. Fix: cast before scoring, "
            f"e.g. scoreDf.withColumn(c, col(c).cast('double')) for each of {_cols(ctx)}")


def _nulls(text: str, ctx: Context) -> str | None:
    if "contains NaN" not in text and "Input contains NaN" not in text:
        return None
    return ("some input values are null (NaN to the model). Fix: drop or fill them before scoring: "
            "scoreDf.dropna(subset=[...]) or scoreDf.fillna(...)")


def _missing_inputs(text: str, ctx: Context) -> str | None:
    found = re.search(r"Model is missing inputs \[([^\]]*)\]", text)
    if not found:
        return None
    return (f"the UDF was given {_cols(ctx)} but the model's signature also needs {found.group(1)}. "
            f"Fix: pass every input column the signature names")


def _result_type(text: str, ctx: Context) -> str | None:
    # fidelity: Spark UDF scoring — array vs scalar result types.
    if not re.search(r"result_type|ArrayType|array<|Unsupported type in conversion|"
                     r"cannot be converted to|Expected \d+ values|'numpy\.float64' object is not iterable", text):
        return None
    return ("the UDF's result_type does not fit what the model returns (one number per row needs "
            "result_type='double'; several outputs per row need result_type=ArrayType(FloatType()) or "
            "'array<double>'). Fix: choose result_type from the model's output signature")


EXPLAINERS = (_no_signature, _missing_module, _strings, _nulls, _missing_inputs, _result_type)


def short_error(exc: BaseException | str) -> str:
    """The one line that matters from a long Spark/py4j exception text."""
    text = exc if isinstance(exc, str) else str(exc)
    name = "" if isinstance(exc, str) else f"{type(exc).__name__}: "
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error:" in ln or "Exception:" in ln or "FIELD_NOT_FOUND" in ln:
            return f"{name}{ln[:500]}"
    return f"{name}{(lines[0] if lines else '')[:500]}"


def explain(text: str, ctx: Context) -> list[str]:
    """Every cause recognised in an error text, each with its fix; empty if none is recognised."""
    found = []
    for explainer in EXPLAINERS:
        message = explainer(text, ctx)
        if message:
            found.append(message)
            break  # the first match is the root cause; later ones are its echoes
    return found
