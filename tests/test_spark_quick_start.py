"""harness.spark_jvm: the Spark driver JVMs the harness and MLflow start get the class-data archive
(and C1 only), the archive matches the classpath Spark really runs with, and a user's own JVM
settings are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import spark_jvm

# A harness session, then MLflow's own local session in a child process, as its requirement
# inference and spark_udf's Python workers start one for a Spark ML model.
PROBE = r"""
import json, subprocess, sys
from harness.spark import get_spark

def jvm_facts(spark):
    jvm = spark.sparkContext._jvm
    return {"args": list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()),
            "classpath": jvm.java.lang.System.getProperty("java.class.path")}

spark = get_spark("local[1]")
facts = jvm_facts(spark)
spark.stop()
child = subprocess.run([sys.executable, "-c", '''
import json
from mlflow.utils._spark_utils import (_create_local_spark_session_for_loading_spark_model,
                                       _prepare_subprocess_environ_for_creating_local_spark_session)
_prepare_subprocess_environ_for_creating_local_spark_session()
spark = _create_local_spark_session_for_loading_spark_model()
jvm = spark.sparkContext._jvm
print(json.dumps(list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())))
'''], capture_output=True, text=True, timeout=600)
assert child.returncode == 0, child.stderr[-3000:]
facts["child_args"] = json.loads(child.stdout.strip().splitlines()[-1])
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def probe():
    env = {k: v for k, v in os.environ.items() if k not in (spark_jvm.SUBMIT_ARGS_ENV, spark_jvm.QUICK_START_ENV)}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=1800, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_harness_and_mlflows_own_spark_sessions_start_with_the_archive(probe):
    archive = spark_jvm.archive_path()
    assert archive is not None and archive.is_file()
    for args in (probe["args"], probe["child_args"]):
        assert f"-XX:SharedArchiveFile={archive}" in args
        assert spark_jvm.C1_ONLY in args
    # MLflow's session keeps its own driver options beside ours (defaultJavaOptions + extraJavaOptions).
    assert any(a.startswith("-Dlog4j.configuration=") for a in probe["child_args"])


def test_the_archive_matches_the_classpath_spark_runs_with(probe):
    """-Xshare:on refuses to start on a classpath the archive was not made for: a mismatch would
    otherwise only cost a warning and the whole speed-up, silently."""
    java = spark_jvm._java()
    proc = subprocess.run([str(java), f"-XX:SharedArchiveFile={spark_jvm.archive_path()}", "-Xshare:on",
                           "-cp", probe["classpath"], "-version"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_truncated_archive_is_never_handed_to_a_jvm(probe, tmp_path):
    """A cut-off archive aborts the JVM (it is not ignored like a mismatched one): the build checks
    its result before putting it in place."""
    archive = spark_jvm.archive_path()
    assert spark_jvm._usable(archive)
    crash_reports = set(Path.cwd().glob("hs_err_pid*.log"))
    cut = tmp_path / "cut.jsa"
    with open(archive, "rb") as whole:
        cut.write_bytes(whole.read(1_000_000))
    assert not spark_jvm._usable(cut)
    assert set(Path.cwd().glob("hs_err_pid*.log")) == crash_reports  # the JVM's crash report is not left here


@pytest.mark.parametrize("setting", ["submit_args", "opt_out", "own_java_options"])
def test_a_users_own_jvm_settings_are_left_alone(setting, monkeypatch):
    monkeypatch.delenv(spark_jvm.SUBMIT_ARGS_ENV, raising=False)
    monkeypatch.delenv(spark_jvm.QUICK_START_ENV, raising=False)
    conf = {}
    if setting == "submit_args":
        monkeypatch.setenv(spark_jvm.SUBMIT_ARGS_ENV, "--driver-memory 2g pyspark-shell")
    elif setting == "opt_out":
        monkeypatch.setenv(spark_jvm.QUICK_START_ENV, "0")
    else:
        conf = {"spark__driver__defaultJavaOptions": "-Xss4m"}  # get_spark's key form
    assert spark_jvm.prepare(conf) is None
    expected = "--driver-memory 2g pyspark-shell" if setting == "submit_args" else None
    assert os.environ.get(spark_jvm.SUBMIT_ARGS_ENV) == expected


def test_a_failed_build_is_noted_and_not_tried_again(tmp_path, monkeypatch):
    """A machine where the archive cannot be made (here: a java that cannot start) pays for the
    attempt once; later sessions start Spark as before without trying again."""
    fake_home = tmp_path / "jdk"
    (fake_home / "bin").mkdir(parents=True)
    java = fake_home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    monkeypatch.setenv("EMULATOR_CACHE_DIR", str(tmp_path / "cache"))
    archive = spark_jvm.archive_path()
    assert not spark_jvm.build(archive)
    assert archive.with_suffix(".failed").is_file() and not archive.exists()
    started = Path(archive.with_suffix(".failed")).stat().st_mtime_ns
    assert not spark_jvm.build(archive)  # not tried again: the note is unchanged
    assert archive.with_suffix(".failed").stat().st_mtime_ns == started


WORKER_PROBE = r"""
import json, os, sys
from harness.cli import CHECK_SPARK_CONF, _local_daemon
from harness.spark import get_spark, start_python_workers

spark = get_spark("local[2]", **CHECK_SPARK_CONF, **_local_daemon("local[2]"))

def idle_workers():
    # This process's Python workers: forked by its JVM's harness.spark_daemon (same command line).
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            procs[int(pid)] = (ppid, open(f"/proc/{pid}/cmdline").read())
        except OSError:
            continue
    daemons = {pid for pid, (ppid, cmd) in procs.items()
               if "harness.spark_daemon" in cmd and procs.get(ppid, (0, ""))[0] == os.getpid()}
    return sorted(pid for pid, (ppid, _) in procs.items() if ppid in daemons)

if sys.argv[1] == "warm":
    start_python_workers(spark, 2).join(timeout=900)
idle = idle_workers()

def facts(batches):
    import os, sys
    import pandas as pd
    for _ in batches:
        yield pd.DataFrame({"pid": [os.getpid()], "mlflow_pyfunc": [int("mlflow.pyfunc" in sys.modules)],
                            "sklearn": [int("sklearn" in sys.modules)]})

job = [row.asDict() for row in spark.range(0, 2, numPartitions=2).mapInPandas(
    facts, "pid long, mlflow_pyfunc int, sklearn int").collect()]
print(json.dumps({"idle_before": idle, "job": job}))
"""


def worker_probe(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER_PROBE, *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_checks_python_workers_start_with_mlflow_imported():
    """harness check's workers fork from harness.spark_daemon, which imported MLflow's scoring
    modules and the seed's flavour: a UDF that never imports them finds them loaded."""
    facts = worker_probe("cold")
    assert facts["idle_before"] == []  # a new session: no Python worker before its first job
    assert facts["job"] and all(row["mlflow_pyfunc"] == 1 and row["sklearn"] == 1 for row in facts["job"]), facts


def test_the_first_udf_job_finds_its_python_workers_waiting():
    """harness check starts the Python workers while the seed trains (start_python_workers): the
    first job's tasks run in workers that were already forked and idle before it started."""
    facts = worker_probe("warm")
    assert len(facts["idle_before"]) == 2, facts
    assert {row["pid"] for row in facts["job"]} <= set(facts["idle_before"]), facts


def test_a_cluster_keeps_pysparks_own_worker_daemon():
    """The executors' Python on a cluster (the Spark image's venv) has no harness to import."""
    from harness.cli import _local_daemon

    assert _local_daemon("spark://127.0.0.1:7077") == {}
    assert _local_daemon("local[2]") == {"spark.python.daemon.module": "harness.spark_daemon"}
