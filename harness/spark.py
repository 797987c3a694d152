"""A SparkSession for batch scoring: local[*] by default, a spark:// master or SPARK_MASTER for a cluster."""

from __future__ import annotations

import os
import sys

MASTER_ENV = "SPARK_MASTER"


def spark_env() -> None:
    """Environment every Spark process needs here: loopback address and the same Python everywhere."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the hostname resolves to loopback anyway
    # Workers must unpickle the model with the driver's interpreter and packages.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


def get_spark(master: str | None = None, app_name: str = "mlflow-harness", **conf):
    """Create (or return the running) SparkSession. `conf` keys use dots replaced by '__' or plain strings."""
    spark_env()
    from pyspark.sql import SparkSession

    master = master or os.environ.get(MASTER_ENV) or "local[*]"
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.host", os.environ["SPARK_LOCAL_IP"])
        .config("spark.driver.bindAddress", os.environ["SPARK_LOCAL_IP"])
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # the stage bar garbles the harness's progress lines
        .config("spark.python.worker.reuse", "true")
        .config("spark.task.maxFailures", "1")  # a failing UDF should fail fast, not be retried
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .config("spark.executorEnv.PYSPARK_PYTHON", sys.executable)
    )
    for key, value in conf.items():
        builder = builder.config(key.replace("__", "."), str(value))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
