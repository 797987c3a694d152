"""Issue 33's figures that are recorded by other runs, not measured by the bench: the last
``make test``'s set-up steps (the Makefile's ``timed`` writes ``.emulator-cache/setup-times.txt``),
the suite's wall time (tests/conftest.py writes ``.emulator-cache/suite-time.json`` at the end
of a ``make test`` run) and the last ``make run``'s ``harness check`` (``python -m bench.records
make-run REPORT`` copies its wall time and load from the check's JSON report into
``.emulator-cache/make-run-time.json``). None where no record exists."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".emulator-cache"
SETUP_TIMES = "setup-times.txt"
SUITE_TIME = "suite-time.json"
MAKE_RUN_TIME = "make-run-time.json"


def setup_times(cache: Path = CACHE) -> dict | None:
    """{"steps": {name: seconds}, "total_s"} of the last `make test`'s set-up (a step run twice adds up)."""
    path = cache / SETUP_TIMES
    if not path.is_file():
        return None
    steps: dict[str, int] = {}
    for line in path.read_text().splitlines():
        name, _, seconds = line.rpartition(" ")
        if name and seconds.isdigit():
            steps[name] = steps.get(name, 0) + int(seconds)
    if not steps:
        return None
    return {"steps": steps, "total_s": sum(steps.values()), "recorded": path.stat().st_mtime}


def suite_time(cache: Path = CACHE) -> dict | None:
    """What tests/conftest.py recorded of the last `make test`: wall time, outcome counts, when."""
    path = cache / SUITE_TIME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("seconds"), (int, float)) else None


def make_run_time(cache: Path = CACHE) -> dict | None:
    """The last `make run`'s harness check: wall time (seconds), checks, passed, load average, when."""
    try:
        record = json.loads((cache / MAKE_RUN_TIME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("seconds"), (int, float)) else None


def record_make_run(report_path: Path, cache: Path = CACHE) -> dict | None:
    """Keep what the bench needs from a `harness check --json` report (None if it has no wall time)."""
    report = json.loads(Path(report_path).read_text())
    if not isinstance(report.get("wall_s"), (int, float)):
        return None
    record = {"seconds": report["wall_s"], "checks": len(report.get("checks", [])),
              "passed": bool(report.get("passed")), "spark": report.get("spark"),
              "load_average": report.get("load_average"), "recorded": time.time()}
    cache.mkdir(parents=True, exist_ok=True)
    (cache / MAKE_RUN_TIME).write_text(json.dumps(record, indent=2) + "\n")
    return record


def read(cache: Path = CACHE) -> dict:
    return {"setup": setup_times(cache), "suite": suite_time(cache), "make_run": make_run_time(cache)}


if __name__ == "__main__":  # python -m bench.records make-run REPORT (the Makefile's `run`)
    if len(sys.argv) != 3 or sys.argv[1] != "make-run":
        sys.exit("usage: python -m bench.records make-run HARNESS_REPORT_JSON")
    sys.exit(0 if record_make_run(Path(sys.argv[2])) else "no wall time in " + sys.argv[2])
