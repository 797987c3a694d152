"""Re-run a captured client script against a workspace and compare the exception it ends with.

A replay compares HTTP answers; what a user reports is the client's exception. ``harness replay
--script PATH [--mlflow VER]`` runs the script (under that MLflow client's venv, see
``harness.client_venvs``, else this interpreter) against the fresh workspace, with only the
workspace's settings in its environment, and compares the exception type and the first line of
its message with the recorded one (the journal file's ``client_exception``, or
``--expect-exception``); no exception recorded means the script must end without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from harness import client_venvs

MARK = "HARNESS-SCRIPT-EXCEPTION "
# Runs the script as __main__ and prints how it ended, whatever it prints itself.
_RUNNER = textwrap.dedent(
    """
    import json, runpy, sys
    path, mark = sys.argv[1], sys.argv[2]
    sys.argv = [path]
    ended = None
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            ended = {"type": "SystemExit", "message": str(exc.code)}
    except BaseException as exc:
        text = str(exc)
        ended = {"type": type(exc).__name__, "message": text.splitlines()[0] if text else ""}
    print(mark + json.dumps(ended), flush=True)
    """
)


def parse_exception(text: str | None) -> dict | None:
    """``"Type: message"`` (as Python prints it) -> ``{"type", "message"}``; None for no exception."""
    if not text:
        return None
    kind, _, message = text.partition(": ")
    return {"type": kind.strip(), "message": message.strip()}


def recorded_exception(journal_file) -> dict | None:
    with open(journal_file) as fh:
        data = json.load(fh)
    return data.get("client_exception") if isinstance(data, dict) else None


@dataclass
class ScriptOutcome:
    script: str
    client: str
    expected: dict | None
    got: dict | None
    output: str = ""

    @property
    def same(self) -> bool:
        return self.expected == self.got

    def summary(self) -> str:
        def show(e):
            return "no exception" if e is None else f"{e['type']}: {e['message']}"
        verdict = "same exception" if self.same else "DIFFERENT exception"
        return (f"script {self.script} ({self.client}): {verdict}\n  recorded: {show(self.expected)}\n"
                f"  replayed: {show(self.got)}")

    def to_json(self) -> dict:
        return {"script": self.script, "client": self.client, "same": self.same, "expected": self.expected,
                "got": self.got}


def client_environment(ws) -> dict:
    """This process's environment without its own MLflow/Databricks/Azure ML settings (they must not
    steer a client script elsewhere), plus the workspace's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABRICKS_", "AZUREML_"))}
    env.update(ws.env)
    env["MLFLOW_TRACKING_URI"] = getattr(ws, "tracking_uri", "databricks")
    return env


def run_script(path, ws, expected: dict | None, mlflow_version: str | None = None,
               timeout_s: float = 1800) -> ScriptOutcome:
    if mlflow_version:
        client = f"mlflow-{mlflow_version}"
        python = client_venvs.ensure(client, log=lambda line: print(line, file=sys.stderr))
    else:
        client, python = "this interpreter's mlflow", Path(sys.executable)
    with tempfile.TemporaryDirectory(prefix="harness-replay-script-") as workdir:
        out = subprocess.run([str(python), "-c", _RUNNER, str(Path(path).resolve()), MARK], env=client_environment(ws),
                             cwd=workdir, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(MARK)]
    if lines:
        got = json.loads(lines[-1][len(MARK):])
    else:  # the interpreter itself failed (an import error in the venv, a crash)
        got = {"type": "ScriptDidNotFinish", "message": (out.stderr.strip().splitlines() or ["no output"])[-1]}
    return ScriptOutcome(str(path), client, expected, got, (out.stdout + out.stderr)[-4000:])
