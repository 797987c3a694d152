"""Jobs API notebook tasks and workspace notebooks, driven by the real databricks-sdk.

Each task runs as a child process (harness.notebooks.job_task) against this workspace; no Spark.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from databricks.sdk.errors import DatabricksError, ResourceAlreadyExists, ResourceDoesNotExist
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType

WAIT = timedelta(minutes=10)

PRODUCER = """# Databricks notebook source
dbutils.widgets.text("n", "0")
n = int(dbutils.widgets.get("n"))
dbutils.jobs.taskValues.set("doubled", n * 2)

# COMMAND ----------
print("producer done", n)
"""

CONSUMER = """# Databricks notebook source
# MAGIC %run ./helper

# COMMAND ----------
doubled = dbutils.jobs.taskValues.get(taskKey="produce", key="doubled")
dbutils.notebook.exit(f"{HELPER_PREFIX}{doubled}-{dbutils.widgets.get('tag')}")
"""

HELPER = """# Databricks notebook source
HELPER_PREFIX = "got-"
"""

FAILING = """# Databricks notebook source
raise ValueError("boom from the first task")
"""

SLEEPER = """# Databricks notebook source
import time
time.sleep(600)
"""


@pytest.fixture(scope="module")
def folder(sdk):
    path = f"/Users/{sdk.current_user.me().user_name}/jobs-test"
    sdk.workspace.mkdirs(path)
    for name, text in (("producer", PRODUCER), ("consumer", CONSUMER), ("helper", HELPER),
                       ("failing", FAILING), ("sleeper", SLEEPER)):
        sdk.workspace.upload(f"{path}/{name}", text.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON)
    return path


def _notebook_task(key: str, path: str, depends: list[str] = (), **base) -> jobs.Task:
    return jobs.Task(task_key=key, notebook_task=jobs.NotebookTask(notebook_path=path, base_parameters=base or None),
                     depends_on=[jobs.TaskDependency(task_key=d) for d in depends] or None)


def _tasks(run: jobs.Run) -> dict[str, jobs.RunTask]:
    return {t.task_key: t for t in run.tasks}


def test_import_export_and_list_show_notebooks(sdk, folder):
    status = sdk.workspace.get_status(f"{folder}/producer")
    assert status.object_type == ObjectType.NOTEBOOK and status.language == Language.PYTHON
    listed = {o.path: o.object_type for o in sdk.workspace.list(folder)}
    assert listed[f"{folder}/consumer"] == ObjectType.NOTEBOOK
    with sdk.workspace.download(f"{folder}/producer", format=ExportFormat.SOURCE) as f:
        assert f.read().decode() == PRODUCER
    exported = sdk.workspace.export(f"{folder}/helper", format=ExportFormat.JUPYTER)
    assert "HELPER_PREFIX" in base64.b64decode(exported.content).decode()

    with pytest.raises(ResourceAlreadyExists):
        sdk.workspace.import_(f"{folder}/producer", content=base64.b64encode(b"x = 1").decode(),
                              format=ImportFormat.SOURCE, language=Language.PYTHON)
    with pytest.raises(ResourceDoesNotExist, match=r"doesn't exist"):
        sdk.workspace.get_status(f"{folder}/nope")
    sdk.workspace.import_(f"{folder}/scratch", content=base64.b64encode(b"x = 1").decode(),
                          format=ImportFormat.SOURCE, language=Language.PYTHON)
    sdk.workspace.import_(f"{folder}/scratch", content=base64.b64encode(b"x = 2").decode(),
                          format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True)
    with sdk.workspace.download(f"{folder}/scratch") as f:
        assert f.read().decode().endswith("x = 2")
    sdk.workspace.delete(f"{folder}/scratch")
    with pytest.raises(ResourceDoesNotExist):
        sdk.workspace.get_status(f"{folder}/scratch")

    sub = f"{folder}/sub/deeper"
    sdk.workspace.mkdirs(sub)
    sdk.workspace.upload(f"{sub}/nb.ipynb", b'{"cells": [{"cell_type": "code", "source": "x = 1"}]}',
                         format=ImportFormat.AUTO)
    assert sdk.workspace.get_status(f"{sub}/nb").object_type == ObjectType.NOTEBOOK  # AUTO drops .ipynb
    with sdk.workspace.download(f"{sub}/nb", format=ExportFormat.SOURCE) as f:
        assert f.read().decode() == "# Databricks notebook source\nx = 1\n"
    with pytest.raises(DatabricksError) as err:
        sdk.workspace.delete(f"{folder}/sub")
    assert err.value.error_code == "DIRECTORY_NOT_EMPTY"
    sdk.workspace.delete(f"{folder}/sub", recursive=True)
    with pytest.raises(ResourceDoesNotExist):
        sdk.workspace.get_status(f"{sub}/nb")
    with pytest.raises(ResourceDoesNotExist, match="parent folder"):
        sdk.workspace.upload(f"{sub}/nb", PRODUCER.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON)


def test_import_refuses_a_path_escape_and_other_languages(sdk, folder):
    with pytest.raises(DatabricksError) as err:
        sdk.workspace.import_(f"{folder}/../../x", content="eA==", format=ImportFormat.SOURCE, language=Language.PYTHON)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(DatabricksError, match="PYTHON only"):
        sdk.workspace.import_(f"{folder}/s", content="eA==", format=ImportFormat.SOURCE, language=Language.SCALA)


def test_two_task_job_shares_task_values_and_returns_the_exit_value(sdk, folder):
    job = sdk.jobs.create(
        name="two-tasks",
        parameters=[jobs.JobParameterDefinition(name="n", default="1")],
        tasks=[_notebook_task("produce", f"{folder}/producer"),
               _notebook_task("consume", f"{folder}/consumer", ["produce"], tag="base")])
    assert sdk.jobs.get(job.job_id).settings.name == "two-tasks"
    assert job.job_id in [j.job_id for j in sdk.jobs.list()]

    run = sdk.jobs.run_now(job.job_id, job_parameters={"n": "21"}).result(timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.TERMINATED
    tasks = _tasks(run)
    assert {k: t.state.result_state for k, t in tasks.items()} == {
        "produce": jobs.RunResultState.SUCCESS, "consume": jobs.RunResultState.SUCCESS}
    assert tasks["produce"].run_id != tasks["consume"].run_id != run.run_id
    assert tasks["produce"].end_time <= tasks["consume"].start_time  # dependency order
    output = sdk.jobs.get_run_output(tasks["consume"].run_id)
    assert output.notebook_output.result == "got-42-base"
    assert run.run_id in [r.run_id for r in sdk.jobs.list_runs(job_id=job.job_id)]
    with pytest.raises(DatabricksError, match="multiple tasks"):
        sdk.jobs.get_run_output(run.run_id)


def test_a_failed_task_fails_the_run_and_its_dependent_is_upstream_failed(sdk, folder):
    job = sdk.jobs.create(name="fails", tasks=[_notebook_task("first", f"{folder}/failing"),
                                               _notebook_task("second", f"{folder}/producer", ["first"])])
    run = sdk.jobs.run_now(job.job_id).result(timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.FAILED
    assert "Task first failed" in run.state.state_message
    tasks = _tasks(run)
    assert tasks["first"].state.result_state == jobs.RunResultState.FAILED
    assert tasks["second"].state.result_state == jobs.RunResultState.UPSTREAM_FAILED
    output = sdk.jobs.get_run_output(tasks["first"].run_id)
    assert "boom from the first task" in output.error
    assert "ValueError" in output.error_trace


def test_one_off_submit_runs_a_notebook(sdk, folder):
    run = sdk.jobs.submit(run_name="one-off", tasks=[
        jobs.SubmitTask(task_key="only", notebook_task=jobs.NotebookTask(
            notebook_path=f"{folder}/consumer", base_parameters={"tag": "x"}))]).result(timeout=WAIT)
    # consumer reads a task value no task set: the notebook fails, the run is FAILED
    assert run.state.result_state == jobs.RunResultState.FAILED
    run = sdk.jobs.submit(run_name="one-off", tasks=[
        jobs.SubmitTask(task_key="produce", notebook_task=jobs.NotebookTask(
            notebook_path=f"{folder}/producer", base_parameters={"n": "3"}))]).result(timeout=WAIT)
    assert run.state.result_state == jobs.RunResultState.SUCCESS
    output = sdk.jobs.get_run_output(run.run_id)  # a single-task run's id: allowed, answers its task
    assert output.metadata.run_id == run.tasks[0].run_id
    assert output.metadata.state.result_state == jobs.RunResultState.SUCCESS


def test_cancel_kills_a_long_running_task(sdk, folder):
    job = sdk.jobs.create(name="sleeps", tasks=[_notebook_task("sleep", f"{folder}/sleeper"),
                                                _notebook_task("after", f"{folder}/producer", ["sleep"])])
    waiter = sdk.jobs.run_now(job.job_id)
    deadline = time.monotonic() + 300
    while _tasks(sdk.jobs.get_run(waiter.run_id))["sleep"].state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(2)
    started = time.monotonic()
    sdk.jobs.cancel_run(waiter.run_id)
    run = waiter.result(timeout=WAIT)
    assert time.monotonic() - started < 120  # the 600 s sleep was killed
    assert run.state.result_state == jobs.RunResultState.CANCELED
    assert _tasks(run)["sleep"].state.result_state == jobs.RunResultState.CANCELED
    assert _tasks(run)["after"].state.result_state != jobs.RunResultState.SUCCESS
    sdk.jobs.delete_run(run.run_id)
    with pytest.raises(ResourceDoesNotExist):
        sdk.jobs.get_run(run.run_id)


def test_refusals_in_databricks_shape(sdk, folder):
    with pytest.raises(ResourceDoesNotExist, match=r"^Job 123 does not exist\.$"):
        sdk.jobs.get(123)
    with pytest.raises(DatabricksError, match=r"Job 123 does not exist\.") as err:
        sdk.jobs.run_now(123)
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(ResourceDoesNotExist, match=r"Run 123 does not exist\."):
        sdk.jobs.get_run(123)
    with pytest.raises(DatabricksError, match="notebook_task tasks only") as err:
        sdk.jobs.create(name="py", tasks=[jobs.Task(task_key="p", spark_python_task=jobs.SparkPythonTask(
            python_file="dbfs:/x.py"))])
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(DatabricksError, match="not a task of this job"):
        sdk.jobs.create(name="dangling", tasks=[_notebook_task("a", f"{folder}/producer", ["missing"])])
    job = sdk.jobs.create(name="deleted", tasks=[_notebook_task("a", f"{folder}/producer")])
    sdk.jobs.delete(job.job_id)
    with pytest.raises(ResourceDoesNotExist):
        sdk.jobs.get(job.job_id)


BUNDLE = """bundle:
  name: demo
resources:
  jobs:
    pipeline:
      name: demo pipeline
      parameters:
        - name: n
          default: "1"
      tasks:
        - task_key: produce
          notebook_task:
            notebook_path: ./src/producer.py
        - task_key: consume
          depends_on:
            - task_key: produce
          notebook_task:
            notebook_path: ./src/consumer.py
            base_parameters:
              tag: bundle
"""


def _bundle_cli(emulator, *args):
    from click.testing import CliRunner

    from harness.cli import main

    return CliRunner().invoke(main, ["job", "run", "--state-dir", str(emulator.state.root), *args])


def test_harness_job_run_runs_a_bundle_job(emulator, sdk, tmp_path):
    (tmp_path / "src").mkdir()
    for name, text in (("producer", PRODUCER), ("consumer", CONSUMER), ("helper", HELPER)):
        (tmp_path / "src" / f"{name}.py").write_text(text)
    (tmp_path / "databricks.yml").write_text(BUNDLE)
    report = tmp_path / "report.json"
    done = _bundle_cli(emulator, str(tmp_path / "databricks.yml"), "--param", "n=5", "--json", str(report))
    assert done.exit_code == 0, done.output
    assert "SUCCESS" in done.output
    tasks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert tasks["task consume"]["details"]["exit_value"] == "got-10-bundle"

    (tmp_path / "src" / "producer.py").write_text(FAILING)
    done = _bundle_cli(emulator, str(tmp_path / "databricks.yml"))
    assert done.exit_code == 1, done.output
    assert "UPSTREAM_FAILED" in done.output
    done = _bundle_cli(emulator, str(tmp_path / "databricks.yml"), "--job", "nope")
    assert done.exit_code == 2 and "no job 'nope'" in done.output


def test_a_restart_ends_an_unfinished_run_and_its_task_process(emulator, sdk, folder):
    job = sdk.jobs.create(name="restarted", tasks=[_notebook_task("sleep", f"{folder}/sleeper")])
    run_id = sdk.jobs.run_now(job.job_id).run_id
    deadline = time.monotonic() + 300
    while _tasks(sdk.jobs.get_run(run_id))["sleep"].state.life_cycle_state != jobs.RunLifeCycleState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # RUNNING is set just before the task's process starts: on a busy machine its exec can lag
    deadline = time.monotonic() + 120
    while not _sleeping_notebooks(emulator.state.root):  # the check below sees this session's task process
        assert time.monotonic() < deadline, "the task's process never appeared"
        time.sleep(0.2)
    emulator.stop("databricks")
    emulator.start("databricks")
    run = sdk.jobs.get_run(run_id)
    assert run.state.life_cycle_state == jobs.RunLifeCycleState.INTERNAL_ERROR
    assert "restarted" in run.state.state_message
    assert sdk.jobs.get(job.job_id).settings.name == "restarted"  # jobs survive a restart
    # the orphaned notebook process (sleeping 600 s) noticed and exited
    deadline = time.monotonic() + 120
    while _sleeping_notebooks(emulator.state.root):
        assert time.monotonic() < deadline, _sleeping_notebooks(emulator.state.root)
        time.sleep(0.2)


def _sleeping_notebooks(state_root) -> list[str]:
    """This state dir's sleeper tasks only: another session's (pytest-xdist, a neighbour's suite) are not ours."""
    found, ours = [], str(state_root).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (b"harness.notebooks.job_task" in args and any(a.endswith(b"/sleeper.py") for a in args)
                and any(ours in a for a in args)):
            found.append(cmdline.parent.name)
    return found


def test_reset_empties_notebooks_jobs_and_runs(databricks_ws, sdk, folder):
    """Last in the module: the workspace reset forgets notebooks, jobs and runs; ids start over."""
    job = sdk.jobs.create(name="before-reset", tasks=[_notebook_task("a", f"{folder}/producer")])
    run = sdk.jobs.run_now(job.job_id).result(timeout=WAIT)
    headers = {"Authorization": f"Bearer {databricks_ws.token}"}
    assert requests.get(f"{databricks_ws.url}/__emulator/reset", headers=headers, timeout=60).json()["holds_data"]
    answer = requests.post(f"{databricks_ws.url}/__emulator/reset", json={}, headers=headers, timeout=120)
    assert answer.status_code == 200, answer.text
    assert list(sdk.jobs.list()) == [] and list(sdk.jobs.list_runs()) == []
    with pytest.raises(ResourceDoesNotExist):
        sdk.jobs.get_run(run.run_id)
    with pytest.raises(ResourceDoesNotExist):
        sdk.workspace.get_status(f"{folder}/producer")
    assert not requests.get(f"{databricks_ws.url}/__emulator/reset", headers=headers, timeout=60).json()["holds_data"]
    sdk.workspace.mkdirs(folder)
    sdk.workspace.upload(f"{folder}/producer", PRODUCER.encode(), format=ImportFormat.SOURCE, language=Language.PYTHON)
    again = sdk.jobs.create(name="after", tasks=[_notebook_task("a", f"{folder}/producer")])
    assert job.job_id > again.job_id == 100_000_000_000_001  # numbering starts over
