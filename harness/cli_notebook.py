"""`harness notebook run PATH --param k=v`: a user's Databricks notebook, cell by cell, against the
running emulated workspace; a per-cell report; exit 0 only if every cell passed.

Exit codes: 0 every cell passed; 1 a cell failed; 2 the emulator is not running or the notebook
cannot be read."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from emulator import settings
from harness import report
from harness.checks.result import CheckResult

EXIT_OK, EXIT_FAILED, EXIT_NOT_RUN = 0, 1, 2


def _param(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r}: expected NAME=VALUE", param_hint="--param")
        params[name] = rest
    return params


def check_results(result) -> list[CheckResult]:
    """One CheckResult per cell (harness.report's tables, JSON and JUnit XML)."""
    checks = []
    for cell in result.cells:
        check = CheckResult(f"{Path(cell.notebook).name} cell {cell.index} ({cell.kind})", subject=cell.first_line,
                            timings={"total": round(cell.seconds, 3)},
                            details={"output": cell.output, "traceback": cell.traceback})
        if cell.status == "failed":
            check.error = cell.error or "failed"
        elif cell.status == "not run":
            check.error = cell.error or "not run"
        elif cell.status == "skipped":
            check.notes.append("not run: the notebook exited earlier (dbutils.notebook.exit)")
        checks.append(check)
    if result.error:
        checks.append(CheckResult(Path(result.path).name, error=result.error))
    return checks


def _progress(cell, done: bool) -> None:
    """A line on stderr as each cell starts and ends (its own output goes to stdout between)."""
    label = f"cell {cell.index} ({cell.kind})"
    if not done:
        click.echo(f"--- {label}: {cell.first_line}", err=True)
    elif cell.status == "failed":
        click.secho(f"--- {label} FAILED ({cell.seconds:.1f}s): {cell.error}", fg="red", err=True)
    else:
        click.echo(f"--- {label} {cell.status} ({cell.seconds:.1f}s)", err=True)


@click.group()
def notebook():
    """Databricks notebooks run locally against the emulated workspace."""


@notebook.command("run")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A job parameter (widget value), repeatable.")
@click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
              show_default=True, help="The running emulator's state dir (its Databricks workspace is used).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report here.")
@click.option("--junit-xml", "junit_path", type=click.Path(dir_okay=False), help="Write a JUnit XML report here.")
@click.option("--spark-master", default=None,
              help="Spark master for `spark` (started only if the notebook uses it). Default: "
                   "$EMULATOR_SPARK_MASTER, $SPARK_MASTER or local[*].")
@click.option("--pip-install", is_flag=True,
              help="Run `%pip install` cells with pip (default: only check the packages are installed here).")
@click.option("--task-values", "task_values_path", type=click.Path(dir_okay=False),
              help="Run as a job task: dbutils.jobs.taskValues reads and writes this JSON file (shared by the "
                   "job's tasks; created if missing).")
@click.option("--task-key", default=None, help="This task's key in the job (default: the notebook's name).")
def run_cmd(path, params, state_dir, json_path, junit_path, spark_master, pip_install, task_values_path, task_key):
    """Run the notebook at PATH (Databricks source format or .ipynb) cell by cell; print a per-cell
    table; exit 0 only if every cell passed."""
    from harness.cli_faults import running_status
    from harness.notebooks import JsonFileTaskValues, run_notebook, source
    from harness.workspaces import Emulator

    parsed = _param(params)
    try:
        source.resolve(path)
    except source.NotebookError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_NOT_RUN)
    running_status(state_dir, EXIT_NOT_RUN)
    workspace = Emulator(state_dir).databricks
    try:
        store = JsonFileTaskValues(task_values_path) if task_values_path else None
    except (OSError, ValueError) as exc:
        click.secho(f"error: --task-values: {exc}", fg="red", err=True)
        sys.exit(EXIT_NOT_RUN)
    result = run_notebook(path, parsed, workspace=workspace, task_values=store, task_key=task_key,
                          spark_master=spark_master, pip_install=pip_install, progress=_progress)
    checks = check_results(result)
    click.echo("")
    click.echo(report.table(checks))
    failed = result.failed_cell
    if failed is not None:
        click.secho(f"\ncell {failed.index} of {failed.notebook} failed:\n{failed.traceback}", fg="red", err=True)
    if result.exit_value is not None:
        click.echo(f"exit value: {result.exit_value}")
    extra = {"notebook": result.path, "params": result.params, "exit_value": result.exit_value,
             "seconds": round(result.seconds, 3), "workspace": workspace.url}
    if json_path:
        report.write_json(json_path, checks, extra)
        click.echo(f"JSON report: {json_path}")
    if junit_path:
        report.write_junit_xml(junit_path, checks, suite=f"notebook {Path(result.path).name}")
        click.echo(f"JUnit XML report: {junit_path}")
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
