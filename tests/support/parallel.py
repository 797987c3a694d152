"""The suite on pytest-xdist workers (`make test` runs ``-n 2 --dist loadgroup --no-loadscope-reorder``).

- Each worker picks free ports in a range of its own (the plugin does it: harness.pytest_plugin).
- A module's tests stay on one worker, so its module-scoped workspaces start once; tests/docker/ is
  one group, since its Compose deployment is a session fixture.
- The longest groups go first (tests/module_durations.json, written from a whole run's reports by
  the suite's summary under `make test`), so no worker is left alone with a long one at the end.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "module_durations.json"


def group_of(nodeid: str) -> str:
    return "docker" if nodeid.startswith("tests/docker/") else nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item.nodeid)))
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    # Stable: groups never measured keep their collection order, after the measured ones.
    items.sort(key=lambda item: -seconds.get(group_of(item.nodeid), 0.0))


def group_durations(stats: dict) -> dict[str, float]:
    """Seconds per group (set-up, call and tear-down) from the terminal reporter's reports."""
    seconds: dict[str, float] = defaultdict(float)
    for reports in stats.values():
        for report in reports:
            if getattr(report, "nodeid", None) and isinstance(getattr(report, "duration", None), float):
                seconds[group_of(report.nodeid)] += report.duration
    return {group: round(total, 1) for group, total in sorted(seconds.items(), key=lambda kv: -kv[1])}
