"""A pytest plugin for bench.fresh_workspaces: times each test's set-up and tear-down phases
(every fixture the test asks for, through pytest's own machinery) and writes them as JSON to
$BENCH_FIXTURE_TIMES when the session ends."""

from __future__ import annotations

import json
import os
import time

import pytest

_TIMES: dict[str, dict[str, float]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    started = time.perf_counter()
    yield
    _TIMES.setdefault(item.nodeid, {})["setup_s"] = time.perf_counter() - started


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    started = time.perf_counter()
    yield
    _TIMES.setdefault(item.nodeid, {})["teardown_s"] = time.perf_counter() - started


def pytest_sessionfinish(session):
    out = os.environ.get("BENCH_FIXTURE_TIMES")
    if out:
        with open(out, "w") as f:
            json.dump([{"test": test, **phases} for test, phases in _TIMES.items()], f)
