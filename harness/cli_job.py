"""`harness job run BUNDLE.yml [--job NAME]`: a bundle's notebook-task job, run by the emulated
workspace's Jobs API; a per-task report; exit 0 only if the run succeeded.

Exit codes: 0 the run succeeded; 1 it did not; 2 the emulator is not running or the bundle cannot
be read."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from emulator import settings
from harness import report
from harness.checks.result import CheckResult
from harness.cli_notebook import _param

EXIT_OK, EXIT_FAILED, EXIT_NOT_RUN = 0, 1, 2


def task_results(run, outputs: dict) -> list[CheckResult]:
    checks = []
    for task in run.tasks or []:
        state = task.state
        result = state.result_state.value if state and state.result_state else "?"
        seconds = ((task.end_time or 0) - (task.start_time or 0)) / 1000 if task.start_time else 0.0
        output = outputs.get(task.task_key)
        check = CheckResult(f"task {task.task_key}", subject=task.notebook_task.notebook_path if task.notebook_task else "",
                            timings={"total": round(max(seconds, 0.0), 3)},
                            details={"run_id": task.run_id, "result_state": result,
                                     "exit_value": output.notebook_output.result
                                     if output and output.notebook_output else None,
                                     "error_trace": output.error_trace if output else None})
        if result not in ("SUCCESS", "EXCLUDED"):
            check.error = (output.error if output and output.error else None) or f"{result}: {state.state_message}"
        checks.append(check)
    return checks


@click.group()
def job():
    """Databricks jobs (notebook tasks) run by the emulated workspace's Jobs API."""


@job.command("run")
@click.argument("bundle_path", metavar="BUNDLE.yml", type=click.Path(dir_okay=False))
@click.option("--job", "job_key", default=None, help="The job's key under resources.jobs (default: the only one).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A job parameter, repeatable.")
@click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
              show_default=True, help="The running emulator's state dir (its Databricks workspace is used).")
@click.option("--timeout", "timeout_minutes", default=60.0, show_default=True, help="Minutes to wait for the run.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report here.")
def run_cmd(bundle_path, job_key, params, state_dir, timeout_minutes, json_path):
    """Upload the bundle's notebooks, create the job and run it now; print each task's result;
    exit 0 only if the run succeeded."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from harness import bundle_jobs
    from harness.cli_faults import running_status
    from harness.workspaces import Emulator

    parsed = _param(params)
    try:
        bundle = bundle_jobs.load(bundle_path)
        if job_key is None:
            if len(bundle.jobs) != 1:
                raise bundle_jobs.BundleError(f"the bundle has jobs {sorted(bundle.jobs)}: choose one with --job")
            job_key = next(iter(bundle.jobs))
        if job_key not in bundle.jobs:
            raise bundle_jobs.BundleError(f"no job {job_key!r} in the bundle (it has {sorted(bundle.jobs)})")
    except bundle_jobs.BundleError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_NOT_RUN)
    running_status(state_dir, EXIT_NOT_RUN)
    workspace = Emulator(state_dir).databricks
    w = WorkspaceClient(config=Config(host=workspace.url, token=workspace.token, retry_timeout_seconds=120))
    try:
        remote = bundle_jobs.upload(w, bundle, workspace.user)
        job_settings = bundle_jobs.job_settings(bundle, job_key, remote)
        click.echo(f"running job {job_settings['name']} ({len(job_settings['tasks'])} tasks) in {workspace.url}",
                   err=True)
        finished, outputs = bundle_jobs.run(w, job_settings, parsed, timedelta(minutes=timeout_minutes))
    except bundle_jobs.BundleError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_NOT_RUN)
    except Exception as exc:  # noqa: BLE001 - the workspace refused the job (DatabricksError) or timed out
        click.secho(f"error: {type(exc).__name__}: {exc}", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    checks = task_results(finished, outputs)
    click.echo(report.table(checks))
    result = finished.state.result_state.value if finished.state.result_state else "?"
    click.echo(f"run {finished.run_id}: {result} {finished.state.state_message or ''}".rstrip())
    if json_path:
        report.write_json(json_path, checks, {"job": job_key, "run_id": finished.run_id, "result_state": result,
                                              "workspace": workspace.url})
        click.echo(f"JSON report: {json_path}")
    sys.exit(EXIT_OK if result == "SUCCESS" else EXIT_FAILED)
