"""`harness scenario list|run NAME` and `harness replay JOURNAL`: registration bugs, reproduced."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile

import click

from emulator import settings

EXIT_OK, EXIT_FAILED, EXIT_NO_EMULATOR = 0, 1, 2


def _state_option(fn):
    return click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
                        show_default=True, help="The running emulator's state dir.")(fn)


def running_status(state_dir: str, exit_code: int = EXIT_NO_EMULATOR) -> dict:
    """`emulator status` of the running emulator; exits with exit_code if it is not running."""
    from emulator.control import status
    from emulator.control.state import StateDir

    try:
        info = status.collect(StateDir(state_dir))
        down = [r for r in settings.ROLES if not info[r]["healthy"]]
    except status.NotRunningHere:
        down = list(settings.ROLES)
    if down:
        click.secho(f"error: the emulator is not running ({', '.join(down)} down) in {state_dir}: run `emulator up`",
                    fg="red", err=True)
        sys.exit(exit_code)
    return info


def _workspaces(state_dir: str):
    """The running emulator's workspace handles; exits 2 if it is not running."""
    from harness.workspaces import Emulator

    running_status(state_dir)
    return Emulator(state_dir)  # handles on the running workspaces (nothing is started)


@click.group()
def scenario():
    """Named reproductions of registration bugs (fault injection + the real MLflow client)."""


@scenario.command("list")
def scenario_list():
    """The scenarios: the workspaces each runs on, the service rule, the public symptom it matches, the bug."""
    from harness.fault_scenarios import SCENARIOS

    for s in SCENARIOS.values():
        click.echo(f"{s.name}  [{', '.join(s.roles)}]\n    rule: {s.rule}\n    symptom: {s.symptom}\n"
                   f"    bug: {s.bug}\n    expected: {s.expected}")


@scenario.command("run")
@_state_option
@click.argument("name")
@click.option("--role", type=click.Choice([*settings.ROLES, "all"]), default="all", show_default=True,
              help="Which workspace(s); 'all' = every one that has the behaviour.")
@click.option("--json", "as_json", is_flag=True)
def scenario_run(state_dir, name, role, as_json):
    """Run one scenario (or `all`); exit 0 if each reproduced as documented."""
    from harness.fault_scenarios import SCENARIOS, run_scenario

    if name != "all" and name not in SCENARIOS:
        raise click.BadParameter(f"unknown scenario {name!r}; `harness scenario list` names them", param_hint="NAME")
    emu = _workspaces(state_dir)
    outcomes = []
    for s in SCENARIOS.values() if name == "all" else [SCENARIOS[name]]:
        for r in s.roles if role == "all" else [role]:
            if r not in s.roles:
                click.secho(f"{s.name}: not a {r} behaviour (runs on {', '.join(s.roles)})", fg="yellow", err=True)
                continue
            # With --json, stdout is the JSON only: anything the client prints goes to stderr.
            with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
                outcomes.append(run_scenario(s.name, getattr(emu, r)))
            if not as_json:
                click.echo(outcomes[-1].summary())
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    sys.exit(EXIT_OK if outcomes and all(o.reproduced for o in outcomes) else EXIT_FAILED)


@click.command("replay")
@click.argument("journal", type=click.Path(exists=True, dir_okay=False))
@click.option("--state-dir", default=None,
              help="Replay into this running emulator, RESETTING the workspace first (default: a throwaway emulator).")
@click.option("--reuse-destructive", is_flag=True,
              help="With --state-dir: reset (EMPTY) the workspace even if it holds data (runs, models, Unity "
                   "Catalog, files); without it such a workspace is refused.")
@click.option("--role", type=click.Choice(settings.ROLES), default=None, help="Default: the journal's.")
@click.option("--port-databricks", type=click.IntRange(1, 65535), default=None,
              help="Port of the throwaway Databricks workspace (default: a free one).")
@click.option("--port-azureml", type=click.IntRange(1, 65535), default=None,
              help="Port of the throwaway Azure ML workspace (default: a free one).")
@click.option("--no-faults", is_flag=True, help="Do not re-inject the faults the recorded calls met.")
@click.option("--script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="After the replay, reset the workspace and run this client script against it; compare the "
                   "exception it ends with to the recorded one (the journal file's client_exception).")
@click.option("--mlflow", "mlflow_version", default=None,
              help="With --script: run it under this MLflow client version (a harness client venv, e.g. 3.1.4).")
@click.option("--expect-exception", default=None, metavar="'TYPE: MESSAGE'",
              help="With --script: the recorded exception, instead of the journal file's.")
@click.option("--json", "as_json", is_flag=True)
def replay_cmd(journal, state_dir, reuse_destructive, role, port_databricks, port_azureml, no_faults, script,
               mlflow_version, expect_exception, as_json):
    """Send a recorded journal's tracking and registry calls to a fresh workspace; exit 1 if any outcome differs."""
    import requests

    from emulator.control.live_reset import holds_data
    from emulator.control.processes import port_in_use
    from harness import client_venvs, replay, replay_script
    from harness.workspaces import Emulator

    ports = {r: p for r, p in (("databricks", port_databricks), ("azureml", port_azureml)) if p}
    if ports and state_dir:
        raise click.UsageError("--port-databricks/--port-azureml are for the throwaway emulator; "
                               "with --state-dir the running emulator's ports are used")
    # At once, not after up()'s wait for fixed ports to free (meant for restarts).
    taken = [f"{settings.DEFAULT_HOST}:{p} (--port-{r})" for r, p in ports.items()
             if port_in_use(settings.DEFAULT_HOST, p)]
    if taken:
        raise click.UsageError(f"port in use: {', '.join(taken)}; pick another or leave it out for a free one")
    if (mlflow_version or expect_exception) and not script:
        raise click.UsageError("--mlflow and --expect-exception go with --script")
    if mlflow_version and f"mlflow-{mlflow_version}" not in client_venvs.VENVS:
        known = sorted(v.removeprefix("mlflow-") for v in client_venvs.VENVS if v.startswith("mlflow-"))
        raise click.BadParameter(f"no client venv for MLflow {mlflow_version}; known: {', '.join(known)}",
                                 param_hint="--mlflow")
    entries = replay.load(journal)
    role = role or replay.role_of_journal(entries)
    with contextlib.ExitStack() as stack:
        if state_dir:
            ws = getattr(_workspaces(state_dir), role)
            base = getattr(ws, "tracking_uri", ws.url)
            # MLflow makes its tables on the first call; a reset before that fails (emulator.pipeline.reset).
            requests.get(f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=300,
                         headers={"Authorization": f"Bearer {ws.token}"})
            if not reuse_destructive and holds_data(ws.url, ws.token):
                raise click.UsageError(
                    f"the {role} workspace of state dir {state_dir} holds data (runs, models, Unity Catalog, "
                    "files...) that replaying would erase (it resets the workspace first). Replay into a "
                    "throwaway emulator (no --state-dir), or pass --reuse-destructive to empty it.")
            _reset(ws)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="harness-replay-"))
            emu = Emulator(tmp, ports=ports).up()
            stack.callback(emu.down)
            ws = getattr(emu, role)
            if not as_json:
                click.echo(f"throwaway workspaces: databricks {emu.databricks.url}, azureml {emu.azureml.url}")
        report = replay.replay(entries, ws, with_faults=not no_faults)
        ran = None
        if script:
            _reset(ws)  # the script meets a fresh workspace too, not the replay's objects
            expected = (replay_script.parse_exception(expect_exception) if expect_exception
                        else replay_script.recorded_exception(journal))
            # With --json, stdout is the JSON only: what the script prints stays in the outcome.
            ran = replay_script.run_script(script, ws, expected, mlflow_version)
    if as_json:
        click.echo(json.dumps({**report.to_json(), "script": ran.to_json() if ran else None}, indent=2))
    else:
        click.echo(report.summary())
        if ran:
            click.echo(ran.summary())
    sys.exit(EXIT_FAILED if report.differing or (ran and not ran.same) else EXIT_OK)


def _reset(ws) -> None:
    import requests

    answer = requests.post(f"{ws.url}/__emulator/reset", json={}, timeout=300,
                           headers={"Authorization": f"Bearer {ws.token}"})
    answer.raise_for_status()


def register(main: click.Group) -> None:
    main.add_command(scenario)
    main.add_command(replay_cmd)
