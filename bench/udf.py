"""UDF scoring: rows/s of mlflow.pyfunc.spark_udf against pyfunc.predict on pandas."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd


def udf_vs_pandas(rows: int, workdir) -> dict:
    import mlflow
    from mlflow.models import infer_signature
    from pyspark.sql import functions as F
    from sklearn.linear_model import LinearRegression

    from harness.spark import get_spark

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["x1", "x2", "x3"])
    y = X @ np.array([1.5, -2.0, 0.5]) + 3.0
    model = LinearRegression().fit(X.head(10_000), y.head(10_000))
    path = str(workdir / "lr-model")
    mlflow.sklearn.save_model(model, path, signature=infer_signature(X.head(100), y.head(100)))

    pyfunc = mlflow.pyfunc.load_model(path)
    started = time.perf_counter()
    pyfunc.predict(X)
    pandas_s = time.perf_counter() - started

    started = time.perf_counter()
    spark = get_spark()
    session_s = time.perf_counter() - started
    sdf = spark.createDataFrame(X).cache()
    sdf.count()
    udf = mlflow.pyfunc.spark_udf(spark, path, result_type="double", env_manager="local")
    timings = []
    for _ in range(2):  # the first job pays worker start-up; report both
        started = time.perf_counter()
        sdf.withColumn("prediction", udf(F.struct("x1", "x2", "x3"))).agg(F.sum("prediction")).collect()
        timings.append(time.perf_counter() - started)
    return {
        "rows": rows,
        "spark_session_s": round(session_s, 2),
        "spark_udf_first_s": round(timings[0], 3),
        "spark_udf_warm_s": round(timings[1], 3),
        "pandas_predict_s": round(pandas_s, 3),
        "spark_rows_per_s": round(rows / timings[1]),
        "pandas_rows_per_s": round(rows / pandas_s),
        "pandas_over_spark_ratio": round(timings[1] / pandas_s, 1),
    }
