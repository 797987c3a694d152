"""pytest plugin (entry point ``pytest11``): fixtures that start the emulated workspaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from harness import links
from harness.faults import clear_faults_after_test
from harness.faults import inject_fault_fixture as inject_fault, request_journal_fixture as request_journal  # noqa: F401
from harness.workspaces import Emulator

if TYPE_CHECKING:  # the checks import MLflow: loaded only when a helper runs, not at pytest start-up
    from harness.checks.result import CheckResult

# The session's workspaces, so the assertion helpers work without being handed clients.
_ACTIVE: dict = {}


def pytest_addoption(parser):
    group = parser.getgroup("mlflow-azure-emulator")
    group.addoption(
        "--emulator-docker", action="store_true", default=False,
        help="Use the workspaces from Docker Compose (pytest-docker, image built offline) "
             "instead of local processes.",
    )


def pytest_configure(config):
    if config.getoption("emulator_docker") and not config.pluginmanager.has_plugin("harness.compose_fixtures"):
        config.pluginmanager.import_plugin("harness.compose_fixtures")


@pytest.fixture(scope="session")
def emulated_workspaces(request, tmp_path_factory):
    """Both workspaces for the session: local server processes on free loopback ports, or with
    --emulator-docker the Compose deployment (anything with .databricks and .azureml handles)."""
    previous = _ACTIVE.get("workspaces")  # a nested in-process session (pytester) must not leak its own
    if request.config.getoption("emulator_docker"):
        try:
            workspaces = request.getfixturevalue("docker_workspaces")
        except pytest.FixtureLookupError:
            pytest.fail("--emulator-docker needs a `docker_workspaces` fixture (harness.compose_fixtures)")
        _ACTIVE["workspaces"] = workspaces
        yield workspaces
        _ACTIVE["workspaces"] = previous
        return
    emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    _ACTIVE["workspaces"] = emu
    try:
        yield emu
    finally:
        _ACTIVE["workspaces"] = previous
        emu.down()


@pytest.fixture
def databricks_workspace(emulated_workspaces, monkeypatch):
    """The Databricks workspace, with DATABRICKS_HOST/DATABRICKS_TOKEN set for the test."""
    ws = emulated_workspaces.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    yield ws
    clear_faults_after_test(ws)  # no fault rule outlives the test that added it


@pytest.fixture
def azureml_workspace(emulated_workspaces, monkeypatch):
    """The Azure ML workspace, with MLFLOW_TRACKING_TOKEN set for the test."""
    ws = emulated_workspaces.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    yield ws
    clear_faults_after_test(ws)  # no fault rule outlives the test that added it


@pytest.fixture
def linked_workspaces(emulated_workspaces, databricks_workspace, azureml_workspace):
    """Both workspaces, linked (Databricks runs are mirrored to Azure ML) for the test, unlinked after.

    The returned object has .databricks, .azureml, MLflow clients for each (.databricks_client with
    tracking and registry URI "databricks", .azureml_client with the Azure ML tracking URI) and the
    assertion helpers as methods."""
    links.link(databricks_workspace, azureml_workspace)
    yield LinkedWorkspaces(databricks_workspace, azureml_workspace)
    links.unlink(databricks_workspace)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession for the session (local[*], or $SPARK_MASTER)."""
    from harness.spark import get_spark

    session = get_spark()
    yield session
    session.stop()


class LinkedWorkspaces:
    def __init__(self, databricks, azureml):
        self.databricks = databricks
        self.azureml = azureml

    @property
    def databricks_client(self):
        from mlflow import MlflowClient

        return MlflowClient("databricks", "databricks")

    @property
    def azureml_client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.azureml.tracking_uri, self.azureml.tracking_uri)

    def assert_dual_logged(self, run_id=None, experiment_name=None, timeout: float = 30.0) -> CheckResult:
        return assert_dual_logged(run_id, experiment_name=experiment_name, databricks=self.databricks_client,
                                  azureml=self.azureml_client, timeout=timeout)

    def assert_versions_increment(self, name: str, registry: str = "databricks", **kwargs) -> CheckResult:
        client = self.databricks_client if registry == "databricks" else self.azureml_client
        return assert_versions_increment(name, client=client, **kwargs)


def _fail_with(result: CheckResult) -> None:
    __tracebackhide__ = True
    if not result.passed:
        pytest.fail(result.summary(), pytrace=False)


def _default_client(kind: str):
    import os

    from mlflow import MlflowClient

    active = _ACTIVE.get("workspaces")  # None outside the plugin's fixtures
    if kind == "databricks":
        if active is not None:
            os.environ.update(active.databricks.env)
        return MlflowClient("databricks", "databricks")
    if active is not None:
        os.environ.update(active.azureml.env)
        uri = active.azureml.tracking_uri
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise RuntimeError("give azureml=MlflowClient(<Azure ML tracking URI>) (or use the plugin's fixtures)")
    return MlflowClient(uri, uri)


def assert_dual_logged(run_id=None, *, experiment_name=None, databricks=None, azureml=None,
                       timeout: float = 30.0) -> CheckResult:
    """Fail the test, listing every difference, unless the Databricks run's Azure ML mirror matches.
    Waits up to `timeout` seconds for the mirror to catch up."""
    __tracebackhide__ = True
    import time

    from harness.checks import check_dual_logging

    databricks = databricks or _default_client("databricks")
    azureml = azureml or _default_client("azureml")
    deadline = time.monotonic() + timeout
    while True:
        result = check_dual_logging(databricks, azureml, run_id=run_id, experiment_name=experiment_name)
        if result.passed or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    _fail_with(result)
    return result


def assert_versions_increment(name: str, *, client=None, source: str | None = None, run_id=None, model_id=None,
                              registrations: int = 3, concurrency: int = 1) -> CheckResult:
    """With `source`: register it `registrations` times and fail unless the versions go 1, 2, 3...
    (`concurrency` > 1 registers at once). Without: fail unless `name` exists and its versions are
    1..N (N >= 1), each once, READY, with no retried duplicates (a misspelt name fails, naming it)."""
    __tracebackhide__ = True
    from harness.checks import check_registry_increments, verify_registry_versions

    client = client or _default_client("databricks")
    if source is None:
        result = verify_registry_versions(client, name)
    else:
        result = check_registry_increments(client, name, source, run_id=run_id, model_id=model_id,
                                           registrations=registrations, concurrency=concurrency)
    _fail_with(result)
    return result


def assert_udf_matches_predict(spark, model_uri: str, data, **kwargs) -> CheckResult:
    """Fail unless spark_udf scoring of `data` matches pyfunc predict (see check_udf_scoring)."""
    __tracebackhide__ = True
    from harness.checks import check_udf_scoring

    result = check_udf_scoring(spark, model_uri, data, **kwargs)
    _fail_with(result)
    return result


def assert_endpoint_matches_predict(model_name: str, version, data, *, endpoints=None, **kwargs) -> CheckResult:
    """Fail unless a managed online endpoint serving `model_name` `version` (Azure ML registry)
    answers what pyfunc predict answers for `data`, row by row (see check_endpoint_scoring).
    `endpoints` defaults to the session's Azure ML workspace; the reference model loads through
    the Azure ML tracking/registry URI."""
    __tracebackhide__ = True
    import os

    import mlflow

    from harness.checks.endpoint_scoring import check_endpoint_scoring
    from harness.online_endpoints import OnlineEndpointsClient

    active = _ACTIVE.get("workspaces")
    if endpoints is None:
        if active is None:
            raise RuntimeError("give endpoints=OnlineEndpointsClient(...) (or use the plugin's fixtures)")
        endpoints = OnlineEndpointsClient.for_workspace(active.azureml)
    previous = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    if active is not None:
        os.environ.update(active.azureml.env)
        mlflow.set_tracking_uri(active.azureml.tracking_uri)
        mlflow.set_registry_uri(active.azureml.tracking_uri)
    try:
        result = check_endpoint_scoring(endpoints, model_name, version, data, **kwargs)
    finally:
        if active is not None:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
    _fail_with(result)
    return result
