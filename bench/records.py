"""Issue 33's figures that are recorded by other runs, not measured by the bench: the last
``make test``'s set-up steps (the Makefile's ``timed`` writes ``.emulator-cache/setup-times.txt``)
and the suite's wall time (tests/conftest.py writes ``.emulator-cache/suite-time.json`` at the end
of a ``make test`` run). None where no record exists."""

from __future__ import annotations

import json
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".emulator-cache"
SETUP_TIMES = "setup-times.txt"
SUITE_TIME = "suite-time.json"


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


def read(cache: Path = CACHE) -> dict:
    return {"setup": setup_times(cache), "suite": suite_time(cache)}
