"""`harness notebook run` and harness.notebooks.run_notebook: users' notebooks against the emulated workspace."""

import base64
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from harness.cli import main
from harness.notebooks import JsonFileTaskValues, run_notebook

DATA = Path(__file__).parent / "data" / "notebooks"


def _write(path: Path, *cells: str) -> Path:
    path.write_text("# Databricks notebook source\n" + "\n\n# COMMAND ----------\n\n".join(cells) + "\n")
    return path


def _cli(emulator, *args):
    return CliRunner().invoke(main, ["notebook", "run", "--state-dir", str(emulator.state.root), *args])


def test_widgets_from_params_run_sh_cd_and_exit_value(emulator, databricks_ws, tmp_path):
    report = tmp_path / "report.json"
    out = _cli(emulator, str(DATA / "main.py"), "--param", "name=Ada", "--param", "colours=green,blue",
               "--json", str(report))
    assert out.exit_code == 0, out.output
    data = json.loads(report.read_text())
    assert data["passed"] is True
    exit_value = json.loads(data["exit_value"])
    # --param wins over the widget's default; an unset widget keeps its default.
    assert exit_value == {"greeting": "Hello, Ada!", "helper_constant": 42, "data": "from sub",
                          "colours": "green,blue", "cwd": "sub"}
    names = [c["name"] for c in data["checks"]]
    assert names[0] == "main.py cell 1 (markdown)" and "main.py cell 3 (run)" in names
    assert "from sh in notebooks" in next(c for c in data["checks"] if c["name"].endswith("(sh)"))["details"]["output"]
    last = data["checks"][-1]
    assert last["passed"] is True and "exited earlier" in last["notes"][0]  # the cell after exit never ran
    assert "exit value: " in out.output


def test_a_failing_cell_fails_the_run_with_exit_code_1(emulator, databricks_ws, tmp_path):
    exits = run_notebook(_write(tmp_path / "exits.py", "import sys\nsys.exit(3)"), passthrough=io.StringIO())
    assert exits.cells[0].status == "failed" and exits.cells[0].error == "SystemExit: 3"  # not the runner's exit
    nb = _write(tmp_path / "broken.py", "x = 1", "y = x / 0", "print('unreachable')")
    junit = tmp_path / "junit.xml"
    out = _cli(emulator, str(nb), "--junit-xml", str(junit))
    assert out.exit_code == 1, out.output
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["broken.py cell 1 (python)"].find("error") is None
    error = cases["broken.py cell 2 (python)"].find("error")
    assert error.get("message") == "ZeroDivisionError: division by zero"
    assert cases["broken.py cell 3 (python)"].find("error").get("message") == "not run: cell 2 failed"
    assert "y = x / 0" in out.output  # the traceback shows the cell's line
    assert "--- cell 2 (python) FAILED" in out.output  # progress lines as the cells run
    bad_store = tmp_path / "bad-store.json"
    bad_store.write_text("[1, 2]")
    refused = _cli(emulator, str(nb), "--task-values", str(bad_store))
    assert refused.exit_code == 2 and "task values must be a JSON object" in refused.output
    missing = _cli(emulator, str(tmp_path / "nowhere.py"))
    assert missing.exit_code == 2 and "notebook not found" in missing.output


def test_percent_run_arguments_set_the_included_notebooks_widgets(databricks_ws, tmp_path):
    _write(tmp_path / "inc.py", "dbutils.widgets.text('who', 'nobody')\nwho = dbutils.widgets.get('who')")
    nb = _write(tmp_path / "outer.py", "dbutils.widgets.text('who', 'outer')", '# MAGIC %run ./inc $who="Bob Smith"',
                "dbutils.notebook.exit(who + '/' + dbutils.widgets.get('who'))")
    result = run_notebook(nb, workspace=databricks_ws, passthrough=io.StringIO())
    assert result.passed and result.exit_value == "Bob Smith/outer"
    broken = _write(tmp_path / "outer_broken.py", "# MAGIC %run ./nowhere")
    failed = run_notebook(broken, workspace=databricks_ws, passthrough=io.StringIO())
    assert failed.cells[0].status == "failed" and "notebook not found: ./nowhere" in failed.cells[0].error


def test_notebook_run_and_task_values_across_the_tasks_of_a_job(databricks_ws, tmp_path):
    store_file = tmp_path / "task-values.json"
    child = DATA / "child.py"
    first = _write(tmp_path / "ingest.py",
                   f"square = dbutils.notebook.run({str(child)!r}, 60, {{'x': '7'}})",
                   "dbutils.jobs.taskValues.set('rows', 1234)\ndbutils.jobs.taskValues.set('square', int(square))")
    result = run_notebook(first, workspace=databricks_ws, task_values=JsonFileTaskValues(store_file),
                          task_key="ingest", passthrough=io.StringIO())
    assert result.passed, result.to_dict()
    assert json.loads(store_file.read_text())["ingest"] == {"child_square": 49, "rows": 1234, "square": 49}

    second = _write(tmp_path / "train.py",
                    "rows = dbutils.jobs.taskValues.get('ingest', 'rows', default=0, debugValue=-1)\n"
                    "missing = dbutils.jobs.taskValues.get('ingest', 'nope', default='fallback', debugValue='dbg')\n"
                    "dbutils.notebook.exit(f'{rows} {missing}')",
                    "dbutils.jobs.taskValues.get('ingest', 'nope')")
    result = run_notebook(second, workspace=databricks_ws, task_values=JsonFileTaskValues(store_file),
                          task_key="train", passthrough=io.StringIO())
    assert result.passed and result.exit_value == "1234 fallback"
    # Outside a job (no store given) get answers debugValue, as on Databricks.
    outside = run_notebook(second, workspace=databricks_ws, passthrough=io.StringIO())
    assert outside.exit_value == "-1 dbg"
    # A failing called notebook fails the caller's cell.
    bad_child = _write(tmp_path / "bad_child.py", "raise RuntimeError('child broke')")
    caller = _write(tmp_path / "caller.py", "dbutils.notebook.run('./bad_child', 60)")
    failed = run_notebook(caller, workspace=databricks_ws, passthrough=io.StringIO())
    assert not failed.passed
    assert failed.cells[0].error == "NotebookRunFailed: Notebook ./bad_child failed: cell 1 failed: RuntimeError: child broke"
    assert bad_child.exists()


def test_fs_and_secrets_go_to_the_workspace(databricks_ws, sdk, tmp_path):
    sdk.secrets.create_scope("nb-scope")
    sdk.secrets.put_secret("nb-scope", "token", string_value="t0k3n")
    nb = _write(tmp_path / "files.py",
                "dbutils.fs.mkdirs('dbfs:/tmp/nb')\n"
                "dbutils.fs.put('dbfs:/tmp/nb/hello.txt', 'hello dbfs', True)\n"
                "listed = [f.name for f in dbutils.fs.ls('dbfs:/tmp/nb')]\n"
                "head = dbutils.fs.head('dbfs:/tmp/nb/hello.txt')\n"
                "dbutils.fs.cp('dbfs:/tmp/nb/hello.txt', 'dbfs:/tmp/nb/copy.txt')\n"
                "dbutils.fs.rm('dbfs:/tmp/nb/hello.txt')",
                "dbutils.fs.put('/Volumes/main/default/vol/note.txt', 'in a volume', True)\n"
                "volume = dbutils.fs.head('/Volumes/main/default/vol/note.txt')",
                "from databricks.sdk.runtime import dbutils as runtime_dbutils\n"
                "assert runtime_dbutils is dbutils\n"
                "secret = dbutils.secrets.get('nb-scope', 'token')\n"
                "scopes = [s.name for s in dbutils.secrets.listScopes()]",
                "dbutils.library.restartPython()\n"
                "import json\n"
                "dbutils.notebook.exit(json.dumps([listed, head, volume, secret, 'nb-scope' in scopes]))")
    result = run_notebook(nb, workspace=databricks_ws, passthrough=io.StringIO())
    assert result.passed, result.to_dict()
    assert json.loads(result.exit_value) == [["hello.txt"], "hello dbfs", "in a volume", "t0k3n", True]
    assert "no-op" in result.cells[3].output
    # The files are in the workspace's DBFS afterwards.
    assert [Path(f.path).name for f in sdk.dbfs.list("/tmp/nb")] == ["copy.txt"]
    assert base64.b64decode(sdk.dbfs.read("/tmp/nb/copy.txt").data) == b"hello dbfs"
    missing = run_notebook(_write(tmp_path / "nosecret.py", "dbutils.secrets.get('nb-scope', 'absent')"),
                           workspace=databricks_ws, passthrough=io.StringIO())
    assert "Secret does not exist with scope: nb-scope and key: absent" in missing.cells[0].error


def test_an_mlflow_cell_logs_a_run_and_registers_a_model(databricks_ws, tmp_path):
    nb = _write(tmp_path / "train_model.py",
                "import mlflow\n"
                "from sklearn.linear_model import LinearRegression\n"
                "mlflow.set_registry_uri('databricks')  # the workspace registry\n"
                "model = LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])\n"
                "with mlflow.start_run() as run:\n"
                "    mlflow.log_metric('slope', float(model.coef_[0]))\n"
                "    mlflow.sklearn.log_model(model, name='model', registered_model_name='notebook-model')\n"
                "dbutils.notebook.exit(run.info.run_id)")
    result = run_notebook(nb, workspace=databricks_ws, passthrough=io.StringIO())
    assert result.passed, result.to_dict()
    client = MlflowClient("databricks", "databricks")
    run = client.get_run(result.exit_value)
    assert run.data.metrics["slope"] == pytest.approx(2.0)
    # The notebook's own experiment, as on Databricks.
    assert client.get_experiment(run.info.experiment_id).name == f"/Users/{databricks_ws.user}/train_model"
    versions = client.search_model_versions("name='notebook-model'")
    assert [v.run_id for v in versions] == [run.info.run_id]


def test_ipynb_notebook_and_pip_checks(emulator, databricks_ws, tmp_path):
    def code(src):
        return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}

    (tmp_path / "requirements.txt").write_text("click>=7\n# a comment\npackaging\n")
    nb = tmp_path / "analysis.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Analysis\n"]},
        code("%pip install -r requirements.txt"),
        code(["dbutils.widgets.text('n', '2')\n", "n = int(getArgument('n'))\n", "n * 21"]),
        code(["%%sh\n", "echo sh-in-ipynb"]),
        code("%pip install definitely-not-installed-pkg-xyz==1.0 'click<1'"),
    ]}))
    report = tmp_path / "r.json"
    out = _cli(emulator, str(nb), "--param", "n=3", "--json", str(report))
    assert out.exit_code == 1, out.output
    checks = json.loads(report.read_text())["checks"]
    assert [c["passed"] for c in checks] == [True, True, True, True, False]
    assert "sh-in-ipynb" in checks[3]["details"]["output"]
    assert "already satisfied" in checks[1]["details"]["output"]
    assert checks[2]["details"]["output"].strip() == "63"  # the last expression is displayed
    assert "definitely-not-installed-pkg-xyz==1.0 (not installed)" in checks[4]["error"] + checks[4]["details"]["traceback"]
    assert "click<1 (installed: " in checks[4]["details"]["traceback"]


def test_a_notebook_that_uses_spark_gets_a_local_session(databricks_ws, tmp_path):
    nb = _write(tmp_path / "sparky.py",
                "df = spark.range(5)\nassert df.count() == 5\ndisplay(df)",
                "# MAGIC %sql\n# MAGIC SELECT 40 + 2 AS answer")
    result = run_notebook(nb, workspace=databricks_ws, passthrough=io.StringIO(), spark_master="local[1]")
    assert result.passed, result.to_dict()
    assert "42" in result.cells[1].output


def test_the_job_task_entry_point_imports_without_pytest():
    """A job's notebook task process imports harness.notebooks.job_task where pytest is not
    installed (the emulator's Docker image): the harness's fault fixtures must not need it then."""
    import subprocess
    import sys

    code = "import sys; sys.modules['pytest'] = None; import harness.notebooks.job_task, harness.workspaces"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
