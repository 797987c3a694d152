"""pytest plugin (entry point ``pytest11``): fixtures that start the emulated workspaces."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from harness import faults, links, mlflow_uris
from harness.faults import clear_faults_after_test
from harness.workspaces import Emulator

inject_fault, request_journal = faults.fixtures()

if TYPE_CHECKING:  # the checks import MLflow: loaded only when a helper runs, not at pytest start-up
    from harness.checks.result import CheckResult

# The session's workspaces, so the assertion helpers work without being handed clients.
_ACTIVE: dict = {}


# How the session's workspaces are set up: a pytest option, else an EMULATOR_* variable
# (docs/pages/harness.md). Ports default to free ones; a state dir whose workspaces already run is reused.
_OPTIONS = {
    # option dest: (flag, environment variable, help)
    "emulator_docker": ("--emulator-docker", "EMULATOR_DOCKER",
                        "Use the workspaces from Docker Compose (pytest-docker, image built offline) "
                        "instead of local processes."),
    "emulator_linked": ("--emulator-linked", "EMULATOR_LINKED",
                        "Link the session's workspaces from the start (Databricks runs mirrored to Azure ML)."),
    "emulator_reuse_destructive": ("--emulator-reuse-destructive", "EMULATOR_REUSE_DESTRUCTIVE",
                                   "Let fresh_workspaces EMPTY a reused state dir (--emulator-state-dir) that "
                                   "already holds data this session did not write: runs, models, Unity Catalog, "
                                   "files. Without it such a session refuses to reset."),
}
_VALUES = {
    "emulator_state_dir": ("--emulator-state-dir", "EMULATOR_PYTEST_STATE_DIR",
                           "State dir for the session's workspaces (default: a temporary one); if its "
                           "workspaces already run (`emulator up --state-dir`), they are used and left running."),
    "emulator_databricks_port": ("--emulator-databricks-port", "EMULATOR_DATABRICKS_PORT",
                                 "Port of the Databricks workspace (default: a free one)."),
    "emulator_azureml_port": ("--emulator-azureml-port", "EMULATOR_AZUREML_PORT",
                              "Port of the Azure ML workspace (default: a free one)."),
    "emulator_tls_port": ("--emulator-azureml-tls-port", "EMULATOR_AZUREML_TLS_PORT",
                          "Port of Azure ML's HTTPS listener, for the real Azure clients (default: a free one)."),
    "emulator_proxy_port": ("--emulator-azureml-proxy-port", "EMULATOR_AZUREML_PROXY_PORT",
                            "Port of Azure ML's CONNECT proxy (default: a free one)."),
    "emulator_s3_port": ("--emulator-s3-port", "EMULATOR_S3_PORT",
                         "Port of the S3 store of Unity Catalog model files (default: a free one)."),
}
_TRUE = ("1", "true", "yes", "on")
# The workspace URLs of a reused state dir that held data before the session (fresh_workspaces refuses to reset them).
_PRIOR_DATA = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("mlflow-azure-emulator")
    for dest, (flag, env, text) in _OPTIONS.items():
        group.addoption(flag, dest=dest, action="store_true", default=None, help=f"{text} Env: {env}=1.")
    for dest, (flag, env, text) in _VALUES.items():
        group.addoption(flag, dest=dest, default=None, help=f"{text} Env: {env}.")


def setting(config, dest: str):
    """A plugin setting: the command-line option wins, then its EMULATOR_* environment variable."""
    import os

    value = config.getoption(dest)
    if value is not None:
        return value
    if dest in _OPTIONS:
        return os.environ.get(_OPTIONS[dest][1], "").strip().lower() in _TRUE
    return os.environ.get(_VALUES[dest][1]) or None


def _ports(config) -> dict[str, int] | None:
    """Configured ports; each pytest-xdist worker gets its own (offset by its number)."""
    import os

    # Every port `emulator up` takes from the environment (Emulator.PORT_NAMES); unset: a free one.
    wanted = {name: setting(config, f"emulator_{name}_port") for name in Emulator.PORT_NAMES}
    if not any(wanted.values()):
        return None
    offset = 10 * _xdist_worker(config)[0]
    return {name: int(port) + offset for name, port in wanted.items() if port and int(port)}


def _xdist_worker(config) -> tuple[int, int]:
    """This session's pytest-xdist worker number and the number of workers ((0, 1) when it is none).
    From the worker's own input, not PYTEST_XDIST_WORKER: a pytest session that a worker's test runs
    in a subprocess inherits that variable, and is no worker."""
    workerinput = getattr(config, "workerinput", None) or {}
    worker = str(workerinput.get("workerid", "gw0"))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return index, max(int(workerinput.get("workercount", 1)), 1)


def _own_port_range_per_worker(config) -> None:
    """Under pytest-xdist, each worker picks free ports in a slice of its own of EMULATOR_PORT_RANGE
    (default 20000-32767, below Linux's ephemeral ports): two processes' bind(0) picks can be the
    same port, and then one worker's workspace cannot start."""
    import os

    from emulator import settings

    if not getattr(config, "workerinput", None):
        return
    index, count = _xdist_worker(config)
    low, high = settings.port_range() or (20_000, 32_767)
    width = (high - low + 1) // count
    if width >= 1:
        os.environ[settings.PORT_RANGE_ENV] = f"{low + index * width}-{low + (index + 1) * width - 1}"


def _main_module_for_pyspark(config) -> None:
    """An xdist worker's ``__main__`` (execnet's) has neither ``__spec__`` nor ``__file__``, which
    pyspark.sql.connect.utils takes for a doctest run: it then exits the worker's test with
    SystemExit(0) ("Skipping doctests") when Spark Connect's extras are missing, e.g. in spark_udf.
    A spec named ``__main__`` (not a ``__file__``: multiprocessing's spawn would run that path in its
    children) tells it otherwise, and spawn leaves such a main alone."""
    import importlib.machinery
    import sys

    main = sys.modules.get("__main__")
    if getattr(config, "workerinput", None) and main is not None and getattr(main, "__spec__", None) is None \
            and not hasattr(main, "__file__"):
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)


def _test_deployments_do_not_restart() -> None:
    """Compose deployments started in this session (fixtures, `emulator up --docker` run by a test)
    get restart policy "no" unless EMULATOR_RESTART_POLICY says otherwise: one whose session is
    killed before its `down` then stays stopped, instead of coming back with every Docker engine
    start and loading the machine (Spark clusters included) for whoever runs next."""
    import os

    from emulator.control.docker.compose import RESTART_POLICY_ENV

    os.environ.setdefault(RESTART_POLICY_ENV, "no")


def pytest_configure(config):
    _own_port_range_per_worker(config)
    _test_deployments_do_not_restart()
    _main_module_for_pyspark(config)
    if setting(config, "emulator_docker") and not config.pluginmanager.has_plugin("harness.compose_fixtures"):
        try:
            import pytest_docker  # noqa: F401  (checked first: pytest wraps a plugin's ImportError)
        except ImportError as exc:
            raise pytest.UsageError(
                f"--emulator-docker needs pytest-docker and the docker SDK ({exc}): "
                "pip install 'mlflow-azure-emulator[pytest,docker]'") from None
        config.pluginmanager.import_plugin("harness.compose_fixtures")


# The session's warm pre-forking parent (emulator.control.prefork_zygote): every local start after
# it is ready (in-process or `emulator up` run by a test) forks from it instead of importing MLflow.
_ZYGOTE = pytest.StashKey[tuple]()


def _zygote_wanted(config) -> bool:
    import os

    from emulator.control import prefork_zygote_client as prefork_zygote

    value = os.environ.get(prefork_zygote.ENV, "").strip().lower()
    if value and value not in prefork_zygote.ON:
        return False  # off, or a socket someone else runs (a nested session's outer one)
    return not setting(config, "emulator_docker")


# A session whose tests use none of these starts no zygote unless EMULATOR_PREFORK_ZYGOTE=on.
_WORKSPACE_FIXTURES = {"emulated_workspaces", "fresh_workspaces", "databricks_workspace", "azureml_workspace",
                       "linked_workspaces"}


def pytest_collection_finish(session):
    """Start the zygote before the first test (it answers once its import is done; until then
    starts are cold), if the session's tests start workspaces."""
    import atexit
    import os

    from emulator.control import prefork_zygote_client as prefork_zygote

    config = session.config
    if _ZYGOTE in config.stash or not _zygote_wanted(config):
        return
    forced = os.environ.get(prefork_zygote.ENV, "").strip().lower() in prefork_zygote.ON
    if not forced and not any(_WORKSPACE_FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    previous = os.environ.get(prefork_zygote.ENV)
    try:
        zygote = prefork_zygote.start()
    except OSError:
        return  # the cold path, as without it
    atexit.register(zygote.stop)  # whatever ends the session: no zygote is left behind
    os.environ[prefork_zygote.ENV] = zygote.socket
    config.stash[_ZYGOTE] = (zygote, previous)


def pytest_unconfigure(config):
    """Stop the session's zygote by its PID (the workspaces it forked live on until their own down)."""
    import os

    from emulator.control import prefork_zygote_client as prefork_zygote

    zygote, previous = config.stash.get(_ZYGOTE, (None, None))
    if zygote is None:
        return
    del config.stash[_ZYGOTE]
    if previous is None:
        os.environ.pop(prefork_zygote.ENV, None)
    else:
        os.environ[prefork_zygote.ENV] = previous
    zygote.stop()


@pytest.fixture(scope="session")
def emulated_workspaces(request, tmp_path_factory):
    """Both workspaces for the session: local server processes on free loopback ports (or the
    configured ports / state dir), or with --emulator-docker the Compose deployment (anything with
    .databricks and .azureml handles). --emulator-linked links them for the whole session."""
    previous = _ACTIVE.get("workspaces")  # a nested in-process session (pytester) must not leak its own
    if setting(request.config, "emulator_docker"):
        try:
            workspaces = request.getfixturevalue("docker_workspaces")
        except pytest.FixtureLookupError:
            pytest.fail("--emulator-docker needs a `docker_workspaces` fixture (harness.compose_fixtures)")
        _ACTIVE["workspaces"] = workspaces
        if setting(request.config, "emulator_linked"):
            links.link(workspaces.databricks, workspaces.azureml)
        yield workspaces
        _ACTIVE["workspaces"] = previous
        return
    state_dir = setting(request.config, "emulator_state_dir")
    emu = Emulator(state_dir or tmp_path_factory.mktemp("emulator-state"), ports=_ports(request.config))
    started_here = not emu.running()
    if started_here:
        from harness.port_owners import taken_by_an_emulator

        # At once, not after up()'s wait for the ports to free (meant for restarts on fixed ports).
        # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
        problem = taken_by_an_emulator({**emu.ports, **emu.azureml_extra_ports})
        if problem:
            pytest.fail(problem, pytrace=False)
        zygote, _ = request.config.stash.get(_ZYGOTE, (None, None))
        if zygote is not None:
            # Its import is under way since the session started: a cold start now would import
            # MLflow a second time beside it, on the same cores. Not ready in time: cold anyway.
            zygote.ready(timeout=60)
        emu.up()
    _ACTIVE["workspaces"] = emu
    if state_dir:
        from emulator.control.live_reset import holds_data

        # Asked before any test writes: what is there now is not the session's.
        request.config.stash[_PRIOR_DATA] = [ws.url for ws in (emu.databricks, emu.azureml)
                                             if holds_data(ws.url, ws.token)]
    if setting(request.config, "emulator_linked"):
        links.link(emu.databricks, emu.azureml)
    try:
        yield emu
    finally:
        _ACTIVE["workspaces"] = previous
        if started_here:
            emu.down()


@pytest.fixture
def fresh_workspaces(request, emulated_workspaces, databricks_workspace, azureml_workspace):
    """The session's workspaces, emptied in place before the test (runs, models, artifacts,
    folders, faults, mirror state: POST /__emulator/reset; tens of milliseconds for both, set-up
    and tear-down, bench.fresh_workspaces), as moto users expect of a fresh backend. The link
    state is kept."""
    from emulator.control.live_reset import request_reset

    prior = request.config.stash.get(_PRIOR_DATA, [])
    if prior and not setting(request.config, "emulator_reuse_destructive"):
        state = getattr(emulated_workspaces, "state", None)
        pytest.fail(f"fresh_workspaces would empty state dir {state.root if state else '?'}, which held data "
                    f"before this session ({', '.join(prior)}: runs, models, Unity Catalog, files...). Use a "
                    "state dir of the session's own (unset EMULATOR_PYTEST_STATE_DIR), or pass "
                    "--emulator-reuse-destructive (EMULATOR_REUSE_DESTRUCTIVE=1) to empty it.", pytrace=False)
    from harness.admin_http import session

    # One after the other, Databricks first: its mirror outbox is emptied before Azure ML's store,
    # so nothing it still held for a linked pair lands in Azure ML after that store's reset.
    for ws in (databricks_workspace, azureml_workspace):
        request_reset(ws.url, ws.token, http=session())
    return emulated_workspaces


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
    """One SparkSession for the session: local[*], or the master in $EMULATOR_SPARK_MASTER (else
    $SPARK_MASTER), e.g. spark://127.0.0.1:7077 from `emulator up --docker --spark`: the driver runs
    here, the executors on the cluster's workers."""
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
        time.sleep(0.2)
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

    from harness.checks.endpoint_scoring import check_endpoint_scoring
    from harness.online_endpoints import OnlineEndpointsClient

    active = _ACTIVE.get("workspaces")
    if endpoints is None:
        if active is None:
            raise RuntimeError("give endpoints=OnlineEndpointsClient(...) (or use the plugin's fixtures)")
        endpoints = OnlineEndpointsClient.for_workspace(active.azureml)
    uri = active.azureml.tracking_uri if active is not None else None
    if active is not None:
        os.environ.update(active.azureml.env)
    with mlflow_uris.using(uri, uri):
        result = check_endpoint_scoring(endpoints, model_name, version, data, **kwargs)
    _fail_with(result)
    return result
