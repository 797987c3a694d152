"""Run the seed flow (tests/clients/seed_flow.py) with every MLflow client of the version matrix.

Each client runs in its own cached venv (``client_venvs.MATRIX``), two at a time, each in a fresh
process with only the environment a notebook has, against one running, linked pair of workspaces.

    python -m tests.support.client_matrix --state-dir .emulator   # against `emulator up` + a link
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import client_venvs

SEED_FLOW = Path(__file__).resolve().parent.parent / "clients" / "seed_flow.py"
VERSIONS_ENV = "EMULATOR_MATRIX_VERSIONS"  # comma-separated subset, e.g. "2.9.2,3.17.2"
PARALLEL_ENV = "EMULATOR_MATRIX_PARALLEL"  # clients run at once (1: one after the other)


@dataclass
class ClientResult:
    version: str
    steps: dict[str, tuple[bool, str]] = field(default_factory=dict)
    seconds: float = 0.0
    build_seconds: float = 0.0
    output: str = ""

    @property
    def failed(self) -> list[str]:
        return [name for name, (ok, _) in self.steps.items() if not ok]


def versions() -> list[str]:
    chosen = [v.strip() for v in os.environ.get(VERSIONS_ENV, "").split(",") if v.strip()]
    unknown = [v for v in chosen if v not in client_venvs.MATRIX]
    if unknown:
        raise ValueError(f"{VERSIONS_ENV}: no pins for {unknown}; known: {list(client_venvs.MATRIX)}")
    return chosen or list(client_venvs.MATRIX)


def notebook_env(databricks, azureml, workdir: Path) -> dict[str, str]:
    """What a notebook process has: PATH and a private HOME, the workspaces' URLs and tokens."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "DATABRICKS_HOST": databricks.url,
        "DATABRICKS_TOKEN": databricks.token,
        "MLFLOW_TRACKING_TOKEN": azureml.token,
        "SEED_AZUREML_TRACKING_URI": azureml.tracking_uri,
        "SEED_USER": databricks.user,
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
    }


def run_client(version: str, databricks, azureml, workdir: Path, log=print) -> ClientResult:
    result = ClientResult(version)
    started = time.monotonic()
    python = client_venvs.ensure(f"mlflow-{version}", log=log)
    result.build_seconds = time.monotonic() - started
    home = workdir / f"client-{version}"
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    proc = subprocess.run([str(python), str(SEED_FLOW), version], cwd=home, capture_output=True, text=True,
                          env=notebook_env(databricks, azureml, home), timeout=1800)
    result.seconds = time.monotonic() - started
    result.output = proc.stdout + proc.stderr
    for line in proc.stdout.splitlines():
        if line.startswith("STEP "):
            step = json.loads(line[5:])
            result.steps[step["step"]] = (step["ok"], step["error"])
    if proc.returncode != 0 or not result.steps:
        result.steps.setdefault("seed_flow_process", (False, f"exit {proc.returncode}: {proc.stderr[-500:]}"))
    return result


def run_all(databricks, azureml, workdir: Path, log=print) -> list[ClientResult]:
    """Every client of ``versions()``, in that order; ``EMULATOR_MATRIX_PARALLEL`` (default 2) at once.

    A client's run is mostly waiting (its interpreter and MLflow starting, the server's answers, the
    mirror): two at once cut the matrix's wall time by about a third on 2 cores. Each version names its
    own folder, experiment and models (seed_flow.py's TAG), so concurrent runs share nothing."""
    from concurrent.futures import ThreadPoolExecutor

    chosen = versions()
    # The venvs first, one at a time: a missing one is built with uv under a lock anyway.
    for version in chosen:
        client_venvs.ensure(f"mlflow-{version}", log=log)
    width = max(1, int(os.environ.get(PARALLEL_ENV, "2")))
    with ThreadPoolExecutor(max_workers=width) as pool:
        return list(pool.map(lambda v: run_client(v, databricks, azureml, workdir, log=log), chosen))


def table(results: list[ClientResult]) -> str:
    """A version x step table: ``ok`` / ``FAIL`` per cell, then passed/total and times."""
    steps: list[str] = []
    for r in results:
        steps += [s for s in r.steps if s not in steps]
    width = max([len(s) for s in steps] + [4])
    cols = [r.version for r in results]
    lines = ["step".ljust(width) + " | " + " | ".join(c.ljust(6) for c in cols)]
    lines.append("-" * len(lines[0]))
    for s in steps:
        cells = []
        for r in results:
            ok = r.steps.get(s, (None, ""))[0]
            cells.append(("ok" if ok else "-" if ok is None else "FAIL").ljust(6))
        lines.append(s.ljust(width) + " | " + " | ".join(cells))
    lines.append("-" * len(lines[0]))
    lines.append("passed".ljust(width) + " | " + " | ".join(
        f"{sum(ok for ok, _ in r.steps.values())}/{len(steps)}".ljust(6) for r in results))
    lines.append("run s".ljust(width) + " | " + " | ".join(f"{r.seconds:.0f}".ljust(6) for r in results))
    lines.append("venv s".ljust(width) + " | " + " | ".join(f"{r.build_seconds:.0f}".ljust(6) for r in results))
    return "\n".join(lines)


def main() -> None:
    import argparse
    import tempfile

    from harness.workspaces import Emulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=os.environ.get("EMULATOR_STATE_DIR", ".emulator"))
    args = parser.parse_args()
    emu = Emulator(args.state_dir)
    results = run_all(emu.databricks, emu.azureml, Path(tempfile.mkdtemp(prefix="matrix-")))
    print(table(results))
    raise SystemExit(1 if any(r.failed for r in results) else 0)


if __name__ == "__main__":
    main()
