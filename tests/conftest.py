import os
import time

import mlflow
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from harness import mlflow_uris
from harness.workspaces import Emulator

# A failed browser test leaves a screenshot under reports/screenshots/ and names it (a hook).
from tests.support.browser import pytest_runtest_makereport  # noqa: F401
# `make test` runs the suite on pytest-xdist workers: groups and their order (a hook).
from tests.support.parallel import group_durations, pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401

# Most modules start workspaces through the `emulator` fixture below, not the plugin's: the session's
# prefork zygote (harness.pytest_plugin, emulator.control.prefork_zygote) is wanted all the same.
os.environ.setdefault("EMULATOR_PREFORK_ZYGOTE", "on")


@pytest.fixture(autouse=True, scope="module")
def _isolate_mlflow_uris_per_module():
    """No module leaks the URIs its module-scoped fixtures set (mlflow.set_registry_uri exports
    MLFLOW_REGISTRY_URI, and set_registry_uri(None) never removes it: later modules' subprocesses
    and models:/ loads then went to "databricks")."""
    saved = mlflow_uris.snapshot()
    yield
    mlflow_uris.restore(saved)


@pytest.fixture(autouse=True)
def _isolate_mlflow_client_state():
    """No test leaks its tracking/registry URI or an active run into the next test."""
    saved = mlflow_uris.snapshot()
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow_uris.restore(saved)


@pytest.fixture(scope="module")
def emulator(request, tmp_path_factory):
    """Both workspaces as real local server processes on free loopback ports.

    A module marked ``shared_emulator`` (it never stops, restarts, links or journals them, nor reads
    their state dir) gets the session's local pair instead (the plugin's ``emulated_workspaces``), emptied in
    place before and after it: an ``up`` costs several seconds per module, a reset tens of milliseconds,
    and a reset leaves what a new state dir holds (emulator.pipeline.reset)."""
    if request.node.get_closest_marker("shared_emulator") and _session_pair_is_ours(request.config):
        emu = request.getfixturevalue("emulated_workspaces")
        _empty(emu)
        yield emu
        _empty(emu)
        return
    emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    yield emu
    emu.down()


def _session_pair_is_ours(config) -> bool:
    """The plugin's pair is local, in a temp state dir of this session, unlinked: not a Compose deployment
    (--emulator-docker), a user's state dir (--emulator-state-dir: a reset would empty it) or a linked pair."""
    from harness.pytest_plugin import setting

    return not any(setting(config, name) for name in ("emulator_docker", "emulator_state_dir", "emulator_linked"))


def _empty(emu) -> None:
    """Unlinked and reset, Databricks first (its mirror outbox goes before Azure ML's store)."""
    from emulator.control.live_reset import request_reset
    from harness import links

    links.unlink(emu.databricks)
    for ws in (emu.databricks, emu.azureml):
        request_reset(ws.url, ws.token)


@pytest.fixture(scope="module")
def databricks_ws(emulator):
    """The Databricks workspace, with the env vars and URIs a notebook uses ("databricks")."""
    ws = emulator.databricks
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ws.env.items():
            mp.setenv(key, value)
        with mlflow_uris.using("databricks", "databricks"):
            yield ws


@pytest.fixture(scope="module")
def sdk(databricks_ws):
    # A short retry budget: a workspace that is down fails the test in a minute, not five per call.
    return WorkspaceClient(config=Config(host=databricks_ws.url, token=databricks_ws.token,
                                         retry_timeout_seconds=60))


_SUITE_STARTED = time.monotonic()
CI_BUDGET_SECONDS = 90 * 60  # CI's hard limit for .ci/run; the suite should stay well under half


def pytest_terminal_summary(terminalreporter):
    """The suite's own wall time against CI's budget, so growth is seen before it fails CI; under
    `make test`, also what its set-up steps took before the first test (EMULATOR_SETUP_TIMES)."""
    if hasattr(terminalreporter.config, "workerinput"):  # an xdist worker: the controller reports
        return
    took = time.monotonic() - _SUITE_STARTED
    times = os.environ.get("EMULATOR_SETUP_TIMES")
    if times and os.path.isfile(times):
        steps = [line.rsplit(" ", 1) for line in open(times).read().splitlines() if " " in line]
        total = sum(int(seconds) for _, seconds in steps if seconds.isdigit())
        terminalreporter.write_sep("-", f"set-up before the suite {total / 60:.1f} min: " + ", ".join(
            f"{name} {int(seconds) / 60:.1f} min" for name, seconds in steps if seconds.isdigit()))
    terminalreporter.write_sep("-", f"suite wall time {took / 60:.1f} min "
                                    f"({100 * took / CI_BUDGET_SECONDS:.0f}% of CI's 90-minute budget)")
    if times:  # `make test`: the whole suite; the bench reports the last one (bench/records.py)
        import json
        from pathlib import Path

        counts = {key: len(terminalreporter.stats.get(key, [])) for key in ("passed", "failed", "error", "skipped")}
        # The groups' durations, for tests/module_durations.json (tests/support/parallel.py).
        Path(times).with_name("suite-groups.json").write_text(json.dumps(group_durations(terminalreporter.stats), indent=1))
        Path(times).with_name("suite-time.json").write_text(json.dumps(
            {"seconds": round(took, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **counts}))
