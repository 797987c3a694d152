"""The suite on pytest-xdist workers (`make test` runs ``-n 2 --dist loadscope --no-loadscope-reorder``).

- Each worker picks free ports in a range of its own (the plugin does it: harness.pytest_plugin).
- A module's tests stay on one worker, so its module-scoped workspaces start once; tests/docker/ is
  one unit, since its Compose deployment is a session fixture. A scheduler of our own says so:
  xdist's ``xdist_group`` marks do nothing under pytest 9 (xdist 3.8 sets ``item._nodeid``,
  which pytest 9 no longer reads).
- The longest units go first (tests/module_durations.json, from a whole run's reports: the suite's
  summary writes them under `make test`), so no worker is left alone with a long one at the end.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "module_durations.json"


def group_of(nodeid: str) -> str:
    return "docker" if nodeid.startswith("tests/docker/") else nodeid.split("::")[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ModuleScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """On a worker, the longest units first: the scheduler hands them out in collection order."""
    if not hasattr(config, "workerinput"):
        return
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    # Stable: units never measured keep their collection order, after the measured ones.
    items.sort(key=lambda item: -seconds.get(group_of(item.nodeid), 0.0))


def group_durations(stats: dict) -> dict[str, float]:
    """Seconds per unit (set-up, call and tear-down) from the terminal reporter's reports."""
    seconds: dict[str, float] = defaultdict(float)
    for reports in stats.values():
        for report in reports:
            if getattr(report, "nodeid", None) and isinstance(getattr(report, "duration", None), float):
                seconds[group_of(report.nodeid)] += report.duration
    return {group: round(total, 1) for group, total in sorted(seconds.items(), key=lambda kv: -kv[1])}
