"""Drives issue 32's MLOps project (tests/data/mlops_project) as a Jobs API job: shared by its
local-mode test (tests/test_mlops_project.py) and its Compose one (tests/docker/)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import yaml
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language
from mlflow import MlflowClient

PROJECT = Path(__file__).parents[1] / "data" / "mlops_project"
TASKS = ["train", "validate", "promote", "batch_score"]
SCORING_ROWS = 89  # the diabetes set's 442 rows: 60 % train, then half of the rest held out, half scored
WAIT = timedelta(minutes=30)


def upload_project(sdk, folder: str) -> None:
    sdk.workspace.mkdirs(folder)
    for notebook in sorted(PROJECT.glob("*.py")):
        sdk.workspace.upload(f"{folder}/{notebook.stem}", notebook.read_bytes(), format=ImportFormat.SOURCE,
                             language=Language.PYTHON, overwrite=True)


def sdk_job(sdk, folder: str) -> int:
    """The bundle's job, created through the Jobs API as a user would with databricks-sdk."""
    spec = yaml.safe_load((PROJECT / "databricks.yml").read_text())["resources"]["jobs"]["mlops"]
    tasks = []
    for task in spec["tasks"]:
        task = dict(task, notebook_task=dict(task["notebook_task"]))
        task["notebook_task"]["notebook_path"] = f"{folder}/{Path(task['notebook_task']['notebook_path']).stem}"
        tasks.append(jobs.Task.from_dict(task))
    parameters = [jobs.JobParameterDefinition(name=p["name"], default=p["default"]) for p in spec["parameters"]]
    return sdk.jobs.create(name=spec["name"], parameters=parameters, tasks=tasks).job_id


def sdk_run(sdk, job_id: int, **params) -> dict:
    run = sdk.jobs.run_now(job_id, job_parameters=params).result(timeout=WAIT)
    states = {t.task_key: t.state.result_state for t in run.tasks}
    errors = {t.task_key: sdk.jobs.get_run_output(t.run_id).error for t in run.tasks
              if t.state.result_state != jobs.RunResultState.SUCCESS}
    assert run.state.result_state == jobs.RunResultState.SUCCESS, (states, errors)
    assert states == dict.fromkeys(TASKS, jobs.RunResultState.SUCCESS)
    return {t.task_key: sdk.jobs.get_run_output(t.run_id).notebook_output.result for t in run.tasks}


def bundle_run(emulator, tmp_path: Path, **params) -> dict:
    from click.testing import CliRunner

    from harness.cli import main

    report = tmp_path / "job-report.json"
    args = ["job", "run", str(PROJECT / "databricks.yml"), "--state-dir", str(emulator.state.root),
            "--json", str(report)]
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    checks = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert [checks[f"task {t}"]["details"]["result_state"] for t in TASKS] == ["SUCCESS"] * 4, done.output
    return {t: checks[f"task {t}"]["details"].get("exit_value") for t in TASKS}


def predictions(sdk, path: str) -> pd.DataFrame:
    with sdk.dbfs.download(path.removeprefix("dbfs:")) as f:
        return pd.read_csv(io.BytesIO(f.read()))


def aliases(client: MlflowClient, name: str) -> dict:
    return {a: client.get_model_version_by_alias(name, a).version for a in ("challenger", "champion")}


def check_scored(sdk, exit_value: str, output: str, champion: str) -> None:
    assert json.loads(exit_value) == {"rows": SCORING_ROWS, "champion": champion, "output": output}
    scored = predictions(sdk, output)
    assert len(scored) == SCORING_ROWS and scored["prediction"].notna().all()
    assert scored["prediction"].std() > 0  # a real model's predictions, not a constant
