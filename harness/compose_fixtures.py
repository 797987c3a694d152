"""pytest-docker fixtures: both workspaces from the project's docker-compose.yml, image built offline.

Loaded by the harness plugin with ``--emulator-docker`` (and by this project's tests/docker). The image is built (or reused: the builder is idempotent) by a session fixture before Compose starts,
so `pytest tests/docker` works on its own. Host ports are picked free and handed to Compose through
an env file, never through os.environ, so local-mode tests in the same session are unaffected.
Without a Docker engine the tests skip, unless EMULATOR_REQUIRE_DOCKER=1 (`make test` sets it): then
they fail, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import subprocess
import time

import pytest
from pytest_docker.plugin import DockerComposeExecutor

from emulator import settings
from emulator.control import launcher, s3_store
from emulator.control.docker import compose, engine, images
from harness.workspaces import AzureMLWorkspace, DatabricksWorkspace

TOKENS = {"databricks": f"dapi{secrets.token_hex(16)}", "azureml": f"aml{secrets.token_hex(16)}"}


def docker_ready() -> str | None:
    """None if a Docker engine answers, else why not."""
    try:
        engine.client()
    except engine.EngineError as exc:
        return str(exc)
    return None


def require_docker() -> None:
    """Skip (or, with EMULATOR_REQUIRE_DOCKER=1 as `make test` sets, fail) without an engine."""
    why = docker_ready()
    if why:
        if os.environ.get("EMULATOR_REQUIRE_DOCKER") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def emulator_image():
    """The emulator image, built offline (debootstrap base + wheelhouse) unless it is current; tagged
    EMULATOR_IMAGE if set (a checkout of its own need not retag the engine's shared default)."""
    require_docker()
    result = images.build(offline=True, image=os.environ.get("EMULATOR_IMAGE") or images.IMAGE)
    return result["image"]


@pytest.fixture
def compose_project():
    """A unique Compose project name for one test; afterwards its containers, network and volumes
    are removed even if its `up` failed halfway (nothing recorded, so `emulator down` cannot)."""
    project = f"emutest{os.getpid()}{secrets.token_hex(3)}"
    yield project
    with contextlib.suppress(compose.ComposeError, subprocess.TimeoutExpired):
        compose.Deployment(compose.default_compose_file(), project).compose(
            "down", "-v", "--remove-orphans", timeout=300)


free_published_ports = compose.free_published_ports  # the tests' and users' fixtures import it from here


def deployment_env(*strip: str) -> dict[str, str]:
    """The environment for an `emulator up --docker` that a test runs as a user would: this process's
    environment without its EMULATOR_* settings (nor variables starting with `strip`), free published
    ports, and the session's restart policy kept (this plugin sets "no"), so that a killed session's
    deployment does not come back with the engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", *strip))}
    env.update(free_published_ports())
    env[compose.RESTART_POLICY_ENV] = os.environ.get(compose.RESTART_POLICY_ENV, "no")
    return env


@pytest.fixture(scope="session")
def compose_env_file(tmp_path_factory, emulator_image):
    """Everything docker-compose.yml interpolates, for this session's project only."""
    values = {
        "EMULATOR_IMAGE": emulator_image,
        **free_published_ports(),
        "EMULATOR_DATABRICKS_TOKEN": TOKENS["databricks"],
        "EMULATOR_AZUREML_TOKEN": TOKENS["azureml"],
        "EMULATOR_PUBLIC_HOST": "127.0.0.1",
    }
    path = tmp_path_factory.mktemp("compose") / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


@pytest.fixture(scope="session")
def docker_compose_command(compose_env_file) -> str:
    """v2 `docker compose` where the plugin exists, else v1 `docker-compose` (Debian's)."""
    return shlex.join([*compose.compose_command(), "--env-file", str(compose_env_file)])


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(compose.default_compose_file())


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    # Unique: parallel sessions on one engine must not share containers or volumes.
    return f"emutest{os.getpid()}{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def docker_setup(emulator_image):
    # Not pytest-docker's `up --build --wait`: v1 has no --wait and --build would try the registry.
    # The image is already built; health is awaited by `docker_workspaces`.
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup():
    return ["down -v --remove-orphans"]


class DockerWorkspaces:
    """The Compose deployment under test, with the same handles local mode's Emulator gives."""

    def __init__(self, services, command: str, compose_file: str, project: str):
        self.services = services
        self.compose = DockerComposeExecutor(command, compose_file, project)
        self.project = project
        self.urls = {
            role: f"http://127.0.0.1:{services.port_for(role, compose.INTERNAL_PORTS[role])}"
            for role in settings.ROLES
        }
        self.s3_url = f"http://127.0.0.1:{services.port_for('s3', compose.INTERNAL_PORTS['s3'])}"

    def wait_healthy(self, timeout: float = 180.0) -> float:
        started = time.monotonic()
        self.services.wait_until_responsive(
            check=lambda: (all(launcher.healthy(u, timeout=1.0) for u in self.urls.values())
                           and s3_store.healthy(self.s3_url, timeout=1.0)),
            timeout=timeout, pause=0.5,
        )
        return time.monotonic() - started

    @property
    def databricks(self) -> DatabricksWorkspace:
        return DatabricksWorkspace(self.urls["databricks"], TOKENS["databricks"],
                                   settings.DEFAULT_DATABRICKS_USER, self.s3_url)

    @property
    def azureml(self) -> AzureMLWorkspace:
        ident = settings.AZUREML_DEFAULTS
        url = self.urls["azureml"]
        return AzureMLWorkspace(url, TOKENS["azureml"], ident["subscription_id"], ident["resource_group"],
                                ident["workspace_name"], f"{url}/mlflow/v2.0/{settings.azureml_scope(ident)}")

    def container_health(self, service: str) -> str:
        return engine.health(self.project, service)


@pytest.fixture(scope="session")
def docker_workspaces(docker_services, docker_compose_command, docker_compose_file, docker_compose_project_name):
    started = time.monotonic()
    ws = DockerWorkspaces(docker_services, docker_compose_command, docker_compose_file,
                          docker_compose_project_name)
    ws.wait_healthy()
    ws.seconds_to_healthy = time.monotonic() - started
    print(f"\n[docker] both workspaces healthy {ws.seconds_to_healthy:.1f}s after `up -d` returned")
    return ws
