"""PySpark's Python worker daemon with MLflow's scoring imports loaded before it forks any worker.

Each Python worker is forked from this daemon; PySpark's own daemon has imported only pyspark, so
every worker of a ``spark_udf`` job spent its first seconds importing MLflow, pandas and the model's
flavour. Forked from here, the workers start with them imported. Used for local masters only
(``spark.python.daemon.module``): on a cluster the executors' Python need not have the harness.
"""

import contextlib

with contextlib.suppress(ImportError):  # a flavour that is not installed is simply not preloaded
    import mlflow.pyfunc  # noqa: F401  what spark_udf's workers unpickle and call
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
with contextlib.suppress(ImportError):
    import mlflow.sklearn  # noqa: F401
    import sklearn.linear_model  # noqa: F401
with contextlib.suppress(ImportError):
    import mlflow.spark  # noqa: F401

from pyspark.daemon import manager

if __name__ == "__main__":
    manager()
