"""`harness run --mlflow 2.9.2 -- python repro.py`: a bug report's script, with the client
versions it names, against the running workspaces; exits with the script's exit code."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time

import click

from emulator import settings

# Out of the usual range, as `docker run` does: any lower code is the command's own.
EXIT_NOT_RUN, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND = 125, 126, 127
TRACKING_URIS = ("databricks", "azureml")


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
              show_default=True, help="The running emulator's state dir.")
@click.option("--mlflow", "mlflow_version", metavar="VER",
              help="MLflow version (the version matrix's pins for a known one: its venv is reused).")
@click.option("--azureml-mlflow", "azureml_mlflow", metavar="VER", help="azureml-mlflow version.")
@click.option("--databricks-sdk", "databricks_sdk", metavar="VER", help="databricks-sdk version.")
@click.option("--with", "extra", multiple=True, metavar="PKG==VER", help="Another pin (repeatable).")
@click.option("--tracking-uri", type=click.Choice(TRACKING_URIS), default=None,
              help="Set MLFLOW_TRACKING_URI to this workspace (default: unset, the script chooses).")
@click.option("--json", "as_json", is_flag=True,
              help="Print where and what ran as JSON on stdout (the command's stdout goes to stderr).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_cmd(state_dir, mlflow_version, azureml_mlflow, databricks_sdk, extra, tracking_uri, as_json, command):
    """Run COMMAND (after `--`) in a cached venv of the given client versions, with the running
    workspaces' client environment; exit with its exit code (125 if the emulator is not running or
    the venv cannot be built, 127 if COMMAND is not found)."""
    from harness import client_run, client_venvs
    from harness.cli_faults import running_status

    try:
        client = client_run.stack(mlflow_version, azureml_mlflow, databricks_sdk, tuple(extra))
    except client_run.PinError as exc:
        raise click.UsageError(str(exc)) from exc
    info = running_status(state_dir, EXIT_NOT_RUN)
    cached = client.cached
    started = time.monotonic()
    try:
        client_venvs.ensure(client.name, client.pins, log=lambda line: click.echo(line, err=True))
    except client_venvs.ClientVenvError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(EXIT_NOT_RUN)
    built_s = time.monotonic() - started
    click.echo(f"client venv {client.root} ({'cached' if cached else f'built in {built_s:.0f}s'}): "
               f"{' '.join(client.pins)}", err=True)
    env = client_run.environment(info, client.root)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = "databricks" if tracking_uri == "databricks" else info["azureml"]["tracking_uri"]
    # The venv's bin first: `python`, `mlflow` and `pip` are the client stack's.
    executable = shutil.which(command[0], path=env["PATH"]) or command[0]
    started = time.monotonic()
    try:
        with open(2, "w", closefd=False) if as_json else contextlib.nullcontext() as out:
            exit_code = subprocess.run([executable, *command[1:]], env=env, stdout=out, check=False).returncode
    except OSError as exc:  # as a shell answers
        click.secho(f"error: cannot run {command[0]!r}: {exc.strerror}", fg="red", err=True)
        exit_code = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_NOT_EXECUTABLE
    if as_json:
        click.echo(json.dumps({
            "venv": str(client.root), "python": str(client_venvs.python(client.root)), "pins": list(client.pins),
            "venv_cached": cached, "command": [executable, *command[1:]], "exit_code": exit_code,
            "seconds": round(time.monotonic() - started, 3), "state_dir": info["state_dir"],
            "workspaces": {"databricks": info["databricks"]["url"], "azureml": info["azureml"]["tracking_uri"]},
        }, indent=2))
    sys.exit(exit_code)
