import time

import mlflow
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config

from harness.workspaces import Emulator


@pytest.fixture(autouse=True)
def _isolate_mlflow_client_state():
    """No test leaks its tracking/registry URI (mlflow.set_tracking_uri also exports
    MLFLOW_TRACKING_URI, which subprocesses of later tests would inherit) or an active run."""
    import os

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """Both workspaces as real local server processes on free loopback ports."""
    emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    yield emu
    emu.down()


@pytest.fixture(scope="module")
def databricks_ws(emulator):
    """The Databricks workspace, with the env vars and URIs a notebook uses ("databricks")."""
    ws = emulator.databricks
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ws.env.items():
            mp.setenv(key, value)
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri("databricks")
        yield ws
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def sdk(databricks_ws):
    # A short retry budget: a workspace that is down fails the test in a minute, not five per call.
    return WorkspaceClient(config=Config(host=databricks_ws.url, token=databricks_ws.token,
                                         retry_timeout_seconds=60))


_SUITE_STARTED = time.monotonic()
CI_BUDGET_SECONDS = 90 * 60  # CI's hard limit for .ci/run; the suite should stay well under half


def pytest_terminal_summary(terminalreporter):
    """The suite's own wall time against CI's budget, so growth is seen before it fails CI."""
    took = time.monotonic() - _SUITE_STARTED
    terminalreporter.write_sep("-", f"suite wall time {took / 60:.1f} min "
                                    f"({100 * took / CI_BUDGET_SECONDS:.0f}% of CI's 90-minute budget)")
