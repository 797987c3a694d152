"""A SparkSession for batch scoring: local[*] by default, or a spark:// standalone master (a cluster).

The master comes from the argument, else EMULATOR_SPARK_MASTER, else SPARK_MASTER, else local[*].
On a cluster the driver stays in this process; executors run where the master's workers are (the
Compose services spark-master/spark-worker: docs/pages/docker.md) with their own Python."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import urllib.request

from harness import spark_jvm

MASTER_ENV = "SPARK_MASTER"
EMULATOR_MASTER_ENV = "EMULATOR_SPARK_MASTER"
# The executors' interpreter on a cluster (the Spark image's venv); the driver's on local[*].
EXECUTOR_PYTHON_ENV = "EMULATOR_SPARK_EXECUTOR_PYTHON"
IMAGE_PYTHON = "/opt/emulator/bin/python"
# The address executors connect back to: loopback suits the Compose workers (host networking).
DRIVER_HOST_ENV = "EMULATOR_SPARK_DRIVER_HOST"


def resolve_master(master: str | None = None) -> str:
    return master or os.environ.get(EMULATOR_MASTER_ENV) or os.environ.get(MASTER_ENV) or "local[*]"


def is_cluster(master: str) -> bool:
    return master.startswith("spark://")


def spark_env(executor_python: str | None = None) -> None:
    """Environment every Spark process needs here: loopback address and the executors' Python."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the hostname resolves to loopback anyway
    # Workers must unpickle the model with the driver's packages: locally the driver's own interpreter.
    # PySpark reads PYSPARK_PYTHON from the driver's environment for every Python worker it starts.
    os.environ["PYSPARK_PYTHON"] = executor_python or sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable


def get_spark(master: str | None = None, app_name: str = "mlflow-harness", **conf):
    """Create (or return the running) SparkSession. `conf` keys use dots replaced by '__' or plain strings."""
    master = resolve_master(master)
    cluster = is_cluster(master)
    executor_python = (os.environ.get(EXECUTOR_PYTHON_ENV) or IMAGE_PYTHON) if cluster else sys.executable
    spark_env(executor_python)
    # Before the first JVM: this session's driver and MLflow's own Spark sessions start faster.
    spark_jvm.prepare(conf, progress=lambda line: print(f"spark: {line}", file=sys.stderr, flush=True))
    from pyspark.sql import SparkSession

    local_ip = os.environ["SPARK_LOCAL_IP"]
    driver_host = (os.environ.get(DRIVER_HOST_ENV) or local_ip) if cluster else local_ip
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.host", driver_host)
        .config("spark.driver.bindAddress", driver_host if cluster else local_ip)
        # On a cluster the driver's UI (on SPARK_LOCAL_IP, a free port) is how the UDF check learns
        # which executors ran its tasks (harness.spark.tasks_by_executor).
        .config("spark.ui.enabled", "true" if cluster else "false")
        .config("spark.ui.port", "0")
        .config("spark.ui.showConsoleProgress", "false")  # the stage bar garbles the harness's progress lines
        .config("spark.python.worker.reuse", "true")
        .config("spark.task.maxFailures", "1")  # a failing UDF should fail fast, not be retried
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
        .config("spark.executorEnv.PYSPARK_PYTHON", executor_python)
    )
    if cluster:
        # Executors that share an address (the Compose workers all say 127.0.0.1) are taken for one
        # host, and would read each other's shuffle files from their own disk (NoSuchFileException
        # in another container): fetch them over the network instead.
        # fidelity: Spark standalone cluster
        builder = builder.config("spark.shuffle.readHostLocalDisk", "false")
    for key, value in conf.items():
        builder = builder.config(key.replace("__", "."), str(value))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def start_python_workers(session, workers: int) -> threading.Thread:
    """Start the Python worker daemon and `workers` idle workers now, in a thread, with a tiny Arrow
    UDF job on `workers` partitions: the first ``spark_udf`` job then finds them forked and waiting
    (the daemon's imports done, the JVM's Arrow path run once) instead of starting them itself.
    Best effort: whatever fails here fails again, and is reported, in the job that matters."""

    def same(batches):
        yield from batches

    def run() -> None:
        with contextlib.suppress(Exception):
            session.range(0, workers, numPartitions=workers).mapInPandas(same, "id long").collect()

    thread = threading.Thread(target=run, name="spark-python-workers", daemon=True)
    thread.start()
    return thread


def wait_for_executors(spark, count: int, timeout: float = 180.0) -> int:
    """Block until `count` executors (besides the driver) have registered; returns how many did."""
    deadline = time.monotonic() + timeout
    while True:
        # Spark's status tracker lists the driver's block manager too.
        registered = len(list(spark.sparkContext._jsc.sc().statusTracker().getExecutorInfos())) - 1
        if registered >= count:
            return registered
        if time.monotonic() > deadline:
            raise TimeoutError(f"{registered} of {count} executors registered after {timeout:.0f}s "
                               f"(master {spark.sparkContext.master}): are the workers up?")
        time.sleep(0.5)


def _rest(spark, path: str):
    url = spark.sparkContext.uiWebUrl
    with urllib.request.urlopen(f"{url}/api/v1/applications/{spark.sparkContext.applicationId}{path}",
                                timeout=30) as resp:
        return json.load(resp)


def tasks_by_executor(spark, job_group: str, timeout: float = 60.0) -> dict[str, dict] | None:
    """Tasks of the jobs in `job_group`, per executor id: {"host": ..., "tasks": n}, from the driver
    UI's REST API (None when the UI is off, as on local[*]). Waits until Spark has recorded every task
    (its status store trails the job by a moment)."""
    if not spark.sparkContext.uiWebUrl:
        return None
    tracker = spark.sparkContext.statusTracker()
    stage_ids = sorted({s for j in tracker.getJobIdsForGroup(job_group)
                        for s in (tracker.getJobInfo(j).stageIds if tracker.getJobInfo(j) else [])})
    deadline = time.monotonic() + timeout
    while True:
        by_executor: dict[str, dict] = {}
        complete = True
        for stage_id in stage_ids:
            for attempt in _rest(spark, f"/stages/{stage_id}?details=true"):
                tasks = attempt.get("tasks") or {}
                # A stage reused from an earlier job stays SKIPPED with no tasks: not pending.
                if attempt.get("status") in ("ACTIVE", "PENDING") or (
                        attempt.get("status") == "COMPLETE" and len(tasks) < attempt.get("numTasks", 0)):
                    complete = False
                for task in tasks.values():
                    entry = by_executor.setdefault(str(task["executorId"]), {"host": task.get("host"), "tasks": 0})
                    entry["tasks"] += 1
        if complete or time.monotonic() > deadline:
            return by_executor
        time.sleep(0.5)
