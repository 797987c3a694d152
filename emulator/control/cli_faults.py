"""`emulator fault add|list|clear` and `emulator requests`: fault rules and the request journal of
the running workspaces (the admin routes of emulator.pipeline, called with the state dir's tokens)."""

from __future__ import annotations

import json
import sys

import click
import requests as http

from emulator import settings
from emulator.control import status
from emulator.control.state import StateDir
from emulator.pipeline import fault_match, faults

ROLE = click.Choice(settings.ROLES)


def _state_option(fn):
    return click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
                        show_default=True, help="The emulator's state dir.")(fn)


def _call(state_dir: str, role: str, method: str, path: str, **kwargs) -> dict:
    state = StateDir(state_dir)
    url, token = status.workspace_url(state, role), state.config()[f"{role}_token"]
    try:
        answer = http.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                              **kwargs)
    except http.RequestException as exc:
        click.secho(f"error: the {role} workspace at {url} is not reachable ({exc}); run `emulator up`",
                    fg="red", err=True)
        sys.exit(2)
    if answer.status_code >= 400:
        click.secho(f"error: {answer.status_code} {answer.text}", fg="red", err=True)
        sys.exit(1)
    return answer.json()


def _roles(role: str | None) -> tuple[str, ...]:
    return (role,) if role else settings.ROLES


@click.group("fault")
def fault():
    """Inject failures into a workspace's API (in memory: a restart or reset clears them)."""


@fault.command("add")
@_state_option
@click.option("--role", type=ROLE, default="databricks", show_default=True)
@click.option("--method", default="*", show_default=True, help="HTTP method, or * for any.")
@click.option("--path", default=None, help="[required without --json] Path or glob, e.g. '*/api/2.0/mlflow/model-versions/create'.")
@click.option("--body", "body", multiple=True, metavar="FIELD=VALUE",
              help="Only calls whose JSON body (or query) has it; FIELD may be nested (JMESPath: tags[].key); "
                   "FIELD^=PREFIX and FIELD~=GLOB match a prefix or a glob.")
@click.option("--skip", type=int, default=0, help="Let the first N matching calls pass.")
@click.option("--times", type=int, default=None, help="Fire N times (default: every matching call).")
@click.option("--status", type=int, default=None, help="Answer this HTTP status in the backend's error shape.")
@click.option("--retry-after", type=int, default=None, help="Seconds, sent as Retry-After with --status.")
@click.option("--error-code", default=None)
@click.option("--shape", type=click.Choice(faults.SHAPES), default=None,
              help="The error body's shape: Databricks/MLflow, Unity Catalog's codes, or Azure ARM's "
                   "(default: the workspace's own for the route).")
@click.option("--message", default=None)
@click.option("--delay", "delay_s", type=float, default=None, help="Added latency in seconds.")
@click.option("--drop", is_flag=True, help="Close the connection without an answer.")
@click.option("--after-commit", type=click.Choice(["status", "drop"]), default=None,
              help="Perform the call, then answer --status (default 503) or drop: the lost-response case.")
@click.option("--hold-pending", "hold_pending_s", type=float, default=None,
              help="[databricks model-versions/create] keep the version PENDING_REGISTRATION this many seconds.")
@click.option("--fail-registration", default=None, help="[databricks model-versions/create] FAILED_REGISTRATION with this message.")
@click.option("--json", "as_json", default=None, help="The whole rule as JSON instead of the options.")
def fault_add(state_dir, role, method, path, body, skip, times, status, retry_after, error_code, shape, message,
              delay_s, drop, after_commit, hold_pending_s, fail_registration, as_json):
    """Add a fault rule; prints it with its id."""
    if as_json:
        try:
            rule = json.loads(as_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--json") from None
    else:
        if not path:
            raise click.UsageError("give --path (or the whole rule with --json)")
        pairs = {}
        for item in body:
            try:
                key, value = fault_match.split_cli_condition(item)
            except fault_match.BadMatch as exc:
                raise click.BadParameter(str(exc), param_hint="--body") from None
            pairs[key] = value
        rule = {"method": method, "path": path, "body": pairs, "skip": skip, "times": times, "status": status,
                "retry_after": retry_after, "error_code": error_code, "shape": shape, "message": message,
                "delay_s": delay_s, "drop": drop, "after_commit": after_commit, "hold_pending_s": hold_pending_s,
                "fail_registration": fail_registration}
        rule = {k: v for k, v in rule.items() if v not in (None, False, {})}
    click.echo(json.dumps(_call(state_dir, role, "POST", "/__emulator/faults", json=rule)["rule"], indent=2))


@fault.command("list")
@_state_option
@click.option("--role", type=ROLE, default=None, help="Default: both workspaces.")
@click.option("--json", "as_json", is_flag=True)
def fault_list(state_dir, role, as_json):
    """The rules in force, with how often each matched and fired."""
    rules = {r: _call(state_dir, r, "GET", "/__emulator/faults")["rules"] for r in _roles(role)}
    if as_json:
        click.echo(json.dumps(rules, indent=2))
        return
    for r, items in rules.items():
        for rule in items:
            effect = {k: v for k, v in rule.items()
                      if k not in ("id", "method", "path", "body", "skip", "times", "matched", "hits") and v}
            click.echo(f"{r:>10} #{rule['id']} {rule['method']} {rule['path']} {rule.get('body') or ''} "
                       f"{json.dumps(effect)} skip={rule['skip']} times={rule['times']} "
                       f"matched={rule['matched']} hits={rule['hits']}")


@fault.command("clear")
@_state_option
@click.option("--role", type=ROLE, default=None, help="Default: both workspaces.")
@click.argument("rule_id", type=int, required=False)
def fault_clear(state_dir, role, rule_id):
    """Remove one rule (by id, with --role) or all of them."""
    if rule_id is not None and role is None:
        raise click.UsageError("give --role with a rule id")
    for r in _roles(role):
        path = f"/__emulator/faults/{rule_id}" if rule_id is not None else "/__emulator/faults"
        click.echo(f"{r}: cleared {_call(state_dir, r, 'DELETE', path)['cleared']}")


@click.command("requests")
@_state_option
@click.option("--role", type=ROLE, default="databricks", show_default=True)
@click.option("--since", type=int, default=0, help="Only entries after this sequence number.")
@click.option("--path", default=None, help="Only paths containing this (or matching it as a glob).")
@click.option("--json", "as_json", is_flag=True, help="The entries as JSON (what `harness replay` reads).")
@click.option("--on", "switch", flag_value="on", default=None, help="Start journaling.")
@click.option("--off", "switch", flag_value="off", help="Stop journaling.")
@click.option("--clear", is_flag=True, help="Empty the journal.")
def requests_cmd(state_dir, role, since, path, as_json, switch, clear):
    """The workspace's request journal (off by default: --on, or EMULATOR_JOURNAL=1 before `emulator up`)."""
    if switch:
        state = _call(state_dir, role, "POST", "/__emulator/requests", json={"enabled": switch == "on"})
        click.echo(f"{role}: journal {'on' if state['enabled'] else 'off'} ({state['entries']} entries)", err=as_json)
    if clear:
        _call(state_dir, role, "DELETE", "/__emulator/requests")
    params = {"since": since, **({"path": path} if path else {})}
    answer = _call(state_dir, role, "GET", "/__emulator/requests", params=params)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    if switch or clear:
        return
    if not answer["enabled"] and not answer["requests"]:
        click.echo(f"{role}: the journal is off (`emulator requests --on --role {role}`)")
    for e in answer["requests"]:
        fault_note = f"  [fault #{e['fault']['id']}]" if e.get("fault") else ""
        query = f"?{e['query']}" if e["query"] else ""
        click.echo(f"{e['seq']:>6} {e['method']:<6} {e['path']}{query} -> {e['status']} "
                   f"{e['latency_ms']:.0f} ms{fault_note}")


def register(main: click.Group) -> None:
    main.add_command(fault)
    main.add_command(requests_cmd)
