"""UDF scoring on `local[*]` vs the Compose Spark cluster (1 and 2 workers), and the harness's overhead.

    python -m bench.spark_cluster [--rows 10000000] [--check-rows 1000000] [--json]

Needs the images (`emulator images build --offline --spark`) and a Docker engine. The rows are made
by Spark itself (`spark.range` + `rand`), on the executors, so the driver ships nothing; each
configuration scores them with `spark_udf` twice (the first job pays the Python workers' start-up)
and reports the warm job's rows/s. "Bare" is `withColumn(udf).agg(sum)`: `count()` alone would let
Spark's optimizer drop the unused prediction column and score nothing. The harness's overhead is
`check_udf_scoring` (pandas reference predict, createDataFrame, scoring, comparison) over that bare
job on the same rows, on `local[*]`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench import report

LATEST = Path(__file__).with_name("spark-cluster-latest.json")
FEATURES = ("x1", "x2", "x3")


def _progress(msg: str) -> None:
    print(f"[bench.spark_cluster] {msg}", file=sys.stderr, flush=True)


def save_model(workdir: Path) -> str:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.random(size=(10_000, 3)), columns=list(FEATURES))
    y = X @ np.array([1.5, -2.0, 0.5]) + 3.0
    path = str(workdir / "lr-model")
    mlflow.sklearn.save_model(LinearRegression().fit(X, y), path, signature=infer_signature(X.head(100), y.head(100)))
    return path


def score(spark, model_path: str, rows: int, partitions: int) -> dict:
    """Warm rows/s of spark_udf over `rows` generated rows (two jobs; the second is reported)."""
    import mlflow
    from pyspark.sql import functions as F

    sdf = spark.range(rows, numPartitions=partitions).select(
        *[F.rand(seed).alias(name) for seed, name in enumerate(FEATURES, 1)])
    udf = mlflow.pyfunc.spark_udf(spark, model_path, result_type="double", env_manager="local")
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        sdf.withColumn("prediction", udf(F.struct(*FEATURES))).agg(F.sum("prediction")).collect()
        timings.append(time.perf_counter() - started)
    return {"rows": rows, "partitions": partitions, "first_s": round(timings[0], 2),
            "warm_s": round(timings[1], 2), "rows_per_s": round(rows / timings[1])}


def harness_overhead(spark, model_path: str, rows: int) -> dict:
    """check_udf_scoring's time over the bare scoring job's, on the same pandas rows."""
    import mlflow
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from harness.checks.udf_scoring import check_udf_scoring

    data = pd.DataFrame(np.random.default_rng(1).random(size=(rows, 3)), columns=list(FEATURES))
    partitions = spark.sparkContext.defaultParallelism
    sdf = spark.createDataFrame(data).repartition(partitions).cache()
    sdf.count()
    udf = mlflow.pyfunc.spark_udf(spark, model_path, result_type="double", env_manager="local")
    sdf.withColumn("prediction", udf(F.struct(*FEATURES))).agg(F.sum("prediction")).collect()  # warm
    started = time.perf_counter()
    sdf.withColumn("prediction", udf(F.struct(*FEATURES))).agg(F.sum("prediction")).collect()
    bare_s = time.perf_counter() - started
    sdf.unpersist()
    started = time.perf_counter()
    result = check_udf_scoring(spark, model_path, data, partitions=partitions)
    check_s = time.perf_counter() - started
    if not result.passed:
        raise RuntimeError(f"the UDF check failed while being measured:\n{result.summary()}")
    return {"rows": rows, "bare_s": round(bare_s, 2), "check_s": round(check_s, 2),
            "check_over_bare": round(check_s / bare_s, 2),
            "check_timings_s": {k: round(v, 2) for k, v in result.timings.items()}}


class Cluster:
    """The Compose file's spark-master/spark-worker services in a project of their own, free ports."""

    def __init__(self):
        from emulator.control import launcher
        from emulator.control.docker import compose, spark_cluster, spark_image

        self._spark_cluster = spark_cluster
        image = spark_image.build()["image"]
        ports = {spark_cluster.MASTER_PORT_ENV: launcher.free_port(), spark_cluster.UI_PORT_ENV: launcher.free_port()}
        self._env_file = Path(tempfile.mkdtemp(prefix="bench-spark-")) / "spark.env"
        self._env_file.write_text(f"EMULATOR_SPARK_IMAGE={image}\n" + "".join(f"{k}={v}\n" for k, v in ports.items()))
        self.deployment = compose.Deployment(
            compose.default_compose_file(), f"benchspark{os.getpid()}{secrets.token_hex(3)}",
            command=[*compose.compose_command(), "--env-file", str(self._env_file)])
        self.urls = spark_cluster.urls({k: str(v) for k, v in ports.items()})

    def scale(self, workers: int) -> None:
        self.deployment.compose("--profile", self._spark_cluster.PROFILE, "up", "-d", "--scale",
                                f"spark-worker={workers}", "spark-master", "spark-worker")
        self._spark_cluster.wait_ready(self.urls["ui_url"], workers, timeout=300)

    def down(self) -> None:
        self.deployment.compose("--profile", self._spark_cluster.PROFILE, "down", "-v", "--remove-orphans")


def _session(master: str, executors: int = 0):
    from harness.spark import get_spark, wait_for_executors

    spark = get_spark(master, app_name="bench-spark-cluster")
    if executors:
        wait_for_executors(spark, executors)
    return spark


def run(rows: int, check_rows: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-spark-model-"))
    model_path = save_model(workdir)
    result: dict = {"rows": rows, "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}

    _progress(f"local[*]: spark_udf over {rows:,} rows")
    spark = _session("local[*]")
    partitions = max(4, spark.sparkContext.defaultParallelism * 2)
    result["local"] = score(spark, model_path, rows, partitions)
    _progress(f"harness overhead: check_udf_scoring vs the bare job, {check_rows:,} rows on local[*]")
    result["harness_overhead"] = harness_overhead(spark, model_path, check_rows)
    spark.stop()

    cluster = Cluster()
    try:
        for workers in (1, 2):
            _progress(f"cluster with {workers} worker(s): starting")
            cluster.scale(workers)
            spark = _session(cluster.urls["master_url"], executors=workers)
            _progress(f"cluster with {workers} worker(s): spark_udf over {rows:,} rows")
            result[f"cluster_{workers}_workers"] = score(spark, model_path, rows, partitions)
            spark.stop()
    finally:
        cluster.down()
    local = result["local"]["rows_per_s"]
    result["ratios_to_local"] = {f"cluster_{w}_workers": round(result[f"cluster_{w}_workers"]["rows_per_s"] / local, 2)
                                 for w in (1, 2)}
    return result


def table(result: dict) -> str:
    lines = [f"spark_udf over {result['rows']:,} generated rows ({result['cpus']} CPUs, "
             f"load {result['load_avg_at_start']:.1f} at start)",
             f"{'where':<22}{'rows/s (warm)':>16}{'warm s':>10}{'first s':>10}{'x local':>10}"]
    for key, label in (("local", "local[*]"), ("cluster_1_workers", "cluster, 1 worker"),
                       ("cluster_2_workers", "cluster, 2 workers")):
        r = result[key]
        ratio = result["ratios_to_local"].get(key, 1.0)
        lines.append(f"{label:<22}{r['rows_per_s']:>16,}{r['warm_s']:>10}{r['first_s']:>10}{ratio:>10}")
    o = result["harness_overhead"]
    lines.append(f"harness overhead on {o['rows']:,} rows: check {o['check_s']} s / bare job {o['bare_s']} s "
                 f"= {o['check_over_bare']}x")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--check-rows", type=int, default=1_000_000,
                        help="Rows for the harness-overhead figure (the check holds them in pandas).")
    parser.add_argument("--json", action="store_true", help="Print the JSON document instead of the table.")
    parser.add_argument("--out", type=Path, help=f"Write the JSON here (default with 10M rows: {LATEST.name}).")
    args = parser.parse_args(argv)
    result = run(args.rows, args.check_rows)
    report.emit(result, args.json, table(result), args.out or (LATEST if args.rows >= 10_000_000 else None), _progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
