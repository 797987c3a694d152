"""Quick start for the local Spark JVMs (a class-data archive, C1 only): each starts in half the time.

A local SparkSession starts a JVM that loads some 10,000 classes before its first job; MLflow
starts more of them for the Spark ML flavour: ``log_model``'s requirement inference loads the
model in a subprocess with a Spark session of its own, and ``spark_udf`` starts one in each
Python worker that loads the model. Measured on 2 cores: a session and its first job 12.5 s
cold, 4.6 s with a shared class archive (bench/README.md).

The archive is a JVM dynamic CDS archive (``-XX:ArchiveClassesAtExit``), built once per Java and
PySpark installation by a small Spark ML workload in a subprocess, into the user cache. It and
``-XX:TieredStopAtLevel=1`` are handed to every driver JVM of this process and its children
through ``PYSPARK_SUBMIT_ARGS`` (``spark.driver.defaultJavaOptions``), the one channel MLflow's
own Spark sessions also read: nothing in user code or in MLflow changes, only how fast the JVMs
start. Not applied when the user set ``PYSPARK_SUBMIT_ARGS`` or ``spark.driver.defaultJavaOptions``
themselves, or ``EMULATOR_SPARK_QUICK_START=0``. A JVM that cannot use the archive (another
classpath, e.g. a non-empty ``SPARK_CONF_DIR``) starts as before, after a one-line warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK_START_ENV = "EMULATOR_SPARK_QUICK_START"
SUBMIT_ARGS_ENV = "PYSPARK_SUBMIT_ARGS"
_OPTIONS_CONF = "spark.driver.defaultJavaOptions"
# These JVMs live seconds on small data: compiling hot code only with C1 saves the optimising
# compiler's warm-up (measured: make run 97 s -> 88 s); a long job would run slower with it.
C1_ONLY = "-XX:TieredStopAtLevel=1"
BUILD_TIMEOUT_S = 900  # a busy machine; the workload itself takes about 30 s on 2 cores


def _java() -> Path | None:
    """The java that PySpark's launcher runs: $JAVA_HOME/bin/java, else the one on PATH."""
    import shutil

    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def pyspark_jars() -> tuple[str, Path]:
    """PySpark's version and its jars folder: every local Spark JVM's classpath."""
    import pyspark

    return pyspark.__version__, Path(pyspark.__file__).parent / "jars"


def archive_path() -> Path | None:
    """Where this Java and PySpark's archive lives (None without a java)."""
    from emulator.control.user_cache import cache_root

    java = _java()
    if java is None:
        return None
    version, jars = pyspark_jars()
    listing = sorted(f"{p.name}:{p.stat().st_size}" for p in jars.glob("*.jar")) if jars.is_dir() else []
    key = hashlib.sha256("\n".join([str(java), str(java.stat().st_mtime_ns), version,
                                    str(jars), *listing]).encode()).hexdigest()[:16]
    return cache_root() / "spark-cds" / f"spark-{version}-{key}.jsa"


def enabled(conf: dict | None = None) -> bool:
    if os.environ.get(QUICK_START_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if os.environ.get(SUBMIT_ARGS_ENV):  # the user's own: never rewritten
        return False
    return not any(k.replace("__", ".") == _OPTIONS_CONF for k in (conf or {}))


def prepare(conf: dict | None = None, progress=None) -> Path | None:
    """Hand the archive to every Spark driver JVM this process (and its children) starts; build it
    first if this machine has none yet. Returns the archive used, or None."""
    if not enabled(conf):
        return None
    options = [C1_ONLY]
    archive = archive_path()
    if archive is not None and (archive.exists() or build(archive, progress)):
        options[:0] = [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto"]
    else:
        archive = None
    os.environ[SUBMIT_ARGS_ENV] = submit_args(" ".join(options))
    return archive


def submit_args(java_options: str) -> str:
    return f"--conf {shlex.quote(f'{_OPTIONS_CONF}={java_options}')} pyspark-shell"


def build(archive: Path, progress=None) -> bool:
    """Build the archive (one process at a time; the others wait for it). False if it cannot be:
    noted beside it so later sessions do not try again."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    failed = archive.with_suffix(".failed")
    with open(archive.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if archive.exists():
            return True
        if failed.exists():
            return False
        for stale in archive.parent.glob("*.jsa.tmp"):  # a build killed half-way (the lock is ours)
            stale.unlink(missing_ok=True)
        if progress:
            progress("building the Spark JVMs' class-data archive (once per Java and PySpark)")
        started = time.monotonic()
        fd, tmp = tempfile.mkstemp(dir=archive.parent, suffix=".jsa.tmp")
        os.close(fd)
        os.unlink(tmp)  # the JVM writes it at exit
        env = {**os.environ, SUBMIT_ARGS_ENV: submit_args(f"-XX:ArchiveClassesAtExit={tmp}")}
        try:
            proc = subprocess.run([sys.executable, "-m", "harness.spark_jvm", "exercise"], env=env,
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
            ok = proc.returncode == 0 and Path(tmp).is_file() and _usable(Path(tmp))
            why = "" if ok else f"exit {proc.returncode}: {(proc.stderr or '')[-2000:]}"
        except subprocess.TimeoutExpired:
            ok, why = False, f"timed out after {BUILD_TIMEOUT_S} s"
        if ok:
            os.replace(tmp, archive)
            if progress:
                progress(f"class-data archive ready ({time.monotonic() - started:.0f} s): {archive}")
            return True
        Path(tmp).unlink(missing_ok=True)
        failed.write_text(why)
        if progress:
            progress(f"no class-data archive, Spark starts as before ({failed} says why; delete it to try "
                     f"again): {(why.strip().splitlines() or [why])[-1]}")
        return False


def _usable(archive: Path) -> bool:
    """A truncated archive aborts every JVM handed it (one that does not match the classpath is only
    ignored): start one JVM with it first."""
    java = _java()
    cp = f"{pyspark_jars()[1]}/*"
    # It crashes (SIGBUS) on a cut-off archive: its crash report goes to a folder dropped after.
    with tempfile.TemporaryDirectory() as scratch:
        try:
            return subprocess.run([str(java), f"-XX:SharedArchiveFile={archive}", "-Xshare:auto",
                                   f"-XX:ErrorFile={scratch}/hs_err_%p.log", "-cp", cp, "-version"],
                                  capture_output=True, timeout=120, cwd=scratch).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def exercise() -> None:
    """The archive's workload: what the harness's Spark ML checks load (a session, Arrow, Python
    workers, Pipeline fit, save, load and transform). Its own session: harness.spark imports this."""
    import pandas as pd
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import LinearRegression
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("class-data-archive")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    frame = spark.createDataFrame(pd.DataFrame({"a": [float(i) for i in range(50)],
                                                "b": [float(i % 7) for i in range(50)],
                                                "target": [2.0 * i + 1 for i in range(50)]}))
    model = Pipeline(stages=[VectorAssembler(inputCols=["a", "b"], outputCol="features"),
                             LinearRegression(labelCol="target", maxIter=5)]).fit(frame)
    with tempfile.TemporaryDirectory() as folder:
        model.write().overwrite().save(f"{folder}/model")
        PipelineModel.load(f"{folder}/model").transform(frame).select("prediction").toPandas()
    spark.range(8).mapInPandas(lambda batches: (b * 2 for b in batches), "id long").collect()
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    # The JVM writes the archive as it exits, which it does when its stdin closes: wait for it, or
    # this process would end first and the archive be read half-written.
    jvm.stdin.close()
    jvm.wait(timeout=BUILD_TIMEOUT_S)


if __name__ == "__main__" and sys.argv[1:] == ["exercise"]:
    exercise()
