"""Tables in notebooks: a job task's saveAsTable under a three-level name is read by the next task
and by a later `harness notebook run`, each in its own process with a real SparkSession."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

from emulator import settings

WAIT = timedelta(minutes=20)  # two Spark drivers start one after the other on a busy machine
REPO = Path(__file__).resolve().parents[1]

WRITER = """# Databricks notebook source
from pyspark.sql import Row
df = spark.createDataFrame([Row(id=i, name=f"n{i}") for i in range(5)])
df.write.mode("overwrite").saveAsTable("main.default.people")

# COMMAND ----------
# MAGIC %sql
# MAGIC CREATE SCHEMA IF NOT EXISTS main.sales

# COMMAND ----------
spark.range(3).write.mode("overwrite").saveAsTable("main.sales.orders")
spark.sql("INSERT INTO main.default.people VALUES (5, 'n5')")
"""

READER = """# Databricks notebook source
import json
counts = {
    "table": spark.table("main.default.people").count(),
    "sql": spark.sql("SELECT count(*) AS c FROM main.default.people").first().c,
    "hive_metastore": spark.table("hive_metastore.default.people").count(),
    "two_level": spark.table("default.people").count(),
    "orders": spark.sql("SELECT sum(id) AS s FROM main.sales.orders").first().s,
}
spark.catalog.setCurrentCatalog("main")
spark.catalog.setCurrentDatabase("sales")
counts["current"] = spark.table("orders").count()
iris = "/databricks-datasets/emulator-samples/iris/iris.csv"
counts["iris"] = spark.read.option("header", True).csv(iris).count()
counts["dbfs_iris"] = spark.read.option("header", True).csv("dbfs:" + iris).count()
try:  # only the datasets are mounted under dbfs:/, nothing falls through to the local disk
    counts["dbfs_tmp"] = spark.read.text("dbfs:/tmp").count()
except Exception as exc:
    counts["dbfs_tmp"] = type(exc).__name__
dbutils.notebook.exit(json.dumps(counts))
"""

EXPECTED = {"table": 6, "sql": 6, "hive_metastore": 6, "two_level": 6, "orders": 3, "current": 3,
            "iris": 150, "dbfs_iris": 150,
            "dbfs_tmp": "AnalysisException"}


def _task(key: str, path: str, depends: tuple[str, ...] = ()) -> jobs.Task:
    return jobs.Task(task_key=key, notebook_task=jobs.NotebookTask(notebook_path=path),
                     depends_on=[jobs.TaskDependency(task_key=d) for d in depends] or None)


@pytest.fixture(scope="module")
def folder(sdk):
    path = f"/Users/{sdk.current_user.me().user_name}/tables"
    sdk.workspace.mkdirs(path)
    for name, text in (("writer", WRITER), ("reader", READER)):
        sdk.workspace.upload(f"{path}/{name}", text.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON)
    return path


def test_a_table_saved_by_one_task_is_read_by_the_next_and_by_a_later_run(emulator, sdk, folder, tmp_path):
    job = sdk.jobs.create(name="tables", tasks=[_task("write", f"{folder}/writer"),
                                               _task("read", f"{folder}/reader", ("write",))])
    run = sdk.jobs.run_now(job.job_id).result(timeout=WAIT)
    tasks = {t.task_key: t for t in run.tasks}
    for key in ("write", "read"):
        output = sdk.jobs.get_run_output(tasks[key].run_id)
        assert tasks[key].state.result_state == jobs.RunResultState.SUCCESS, (output.error, output.error_trace)
    assert json.loads(sdk.jobs.get_run_output(tasks["read"].run_id).notebook_output.result) == EXPECTED

    # The tables are Parquet files in the workspace's own warehouse, under its state dir.
    tables = Path(settings.spark_tables_dir(str(emulator.state.role_dir("databricks"))))
    assert list((tables / "warehouse" / "people").glob("*.parquet"))
    assert list((tables / "warehouse" / "sales.db" / "orders").glob("*.parquet"))

    # A later run outside the job (`harness notebook run`, another process) sees the same tables.
    reader = tmp_path / "reader.py"
    reader.write_text(READER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "notebook", "run", "--state-dir",
                           str(emulator.state.root), str(reader), "--json", str(tmp_path / "report.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(json.loads((tmp_path / "report.json").read_text())["exit_value"]) == EXPECTED
    assert not (tmp_path / "derby.log").exists() and not (tmp_path / "metastore_db").exists()
    assert "Not Databricks' sample data" in (tables / "databricks-datasets" / "README.md").read_text().replace("\n", " ")
