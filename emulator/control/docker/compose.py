"""Docker mode: run both workspaces with Docker Compose (v2 `docker compose`, else v1 `docker-compose`).

The host's state dir still holds the tokens and identity (so `emulator status` reports the same
fields as in local mode) and ``deployment.json`` says which Compose project runs them; the
workspaces' own stores live in the project's named volumes, or with ``--store postgres`` their
MLflow stores in the ``postgres`` service (profile "postgres"; its volume, a database each).
Up and down go through the Compose CLI; questions to the engine (images, logs) through
emulator.control.docker.engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from emulator import settings
from emulator.control import launcher, s3_store
from emulator.control.docker import engine, packaged, postgres_image, spark_cluster
from emulator.control.state import StateDir

DEFAULT_PROJECT = "mlflow-azure-emulator"
PROJECT_ENV = "EMULATOR_COMPOSE_PROJECT"
COMPOSE_FILE_ENV = "EMULATOR_COMPOSE_FILE"
PUBLIC_HOST_ENV = "EMULATOR_PUBLIC_HOST"
INTERNAL_PORTS = {"databricks": 5001, "azureml": 5002, "s3": 5005}  # inside the containers (docker-compose.yml)
# The host ports docker-compose.yml publishes, by the variable that sets each, with its default
# there (the local mode's); and the address it publishes on.
PUBLISHED_PORT_DEFAULTS = {
    settings.PORT_ENV["databricks"]: settings.DEFAULT_PORTS["databricks"],
    settings.PORT_ENV["azureml"]: settings.DEFAULT_PORTS["azureml"],
    settings.AZUREML_TLS_PORT_ENV: settings.DEFAULT_AZUREML_TLS_PORT,
    settings.AZUREML_PROXY_PORT_ENV: settings.DEFAULT_AZUREML_PROXY_PORT,
    s3_store.PORT_ENV: s3_store.DEFAULT_PORT,
}
PUBLISHED_PORT_ENVS = tuple(PUBLISHED_PORT_DEFAULTS)
BIND_ADDRESS_ENV = "EMULATOR_BIND_ADDRESS"
# Words of an engine's answer when an image is missing and would have to come from a registry.
_IMAGE_TROUBLE = ("pull access denied", "no such image", "manifest", "registry", "repository does not exist")
STORES = ("sqlite", "postgres")
POSTGRES_IMAGE_ENV = "EMULATOR_POSTGRES_IMAGE"
# Every service's restart policy (docker-compose.yml; default unless-stopped, a deployment that
# outlives reboots). The pytest plugin sets "no" for its session, so a test deployment whose session
# is killed stays stopped instead of coming back, with its load, on every engine start.
RESTART_POLICY_ENV = "EMULATOR_RESTART_POLICY"


class ComposeError(RuntimeError):
    """Compose is missing or failed; the message says what to do."""


def compose_command() -> list[str]:
    """``docker compose`` (v2 plugin) where it works, else the v1 ``docker-compose`` binary."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise ComposeError("neither `docker compose` nor `docker-compose` is installed "
                       "(Debian: apt-get install docker.io docker-compose; or `.ci/system-deps.sh docker`)")


def default_compose_file() -> Path:
    """EMULATOR_COMPOSE_FILE, else the checkout's docker-compose.yml, else the installed package's copy.

    Never the working directory's: a user's own project may have a docker-compose.yml of its own.
    """
    if os.environ.get(COMPOSE_FILE_ENV):
        return Path(os.environ[COMPOSE_FILE_ENV]).resolve()
    try:
        return packaged.shipped_file("docker-compose.yml")  # fidelity: Emulator-only controls
    except packaged.PackagingError as exc:
        raise ComposeError(f"{exc}; or set {COMPOSE_FILE_ENV}") from None


def free_published_ports() -> dict[str, str]:
    """A free host port for every port docker-compose.yml publishes, by its variable: never the
    defaults (5001-5005), which another deployment on this engine or a local emulator may hold."""
    return {name: str(launcher.free_port()) for name in PUBLISHED_PORT_ENVS}


def compose_env(state: StateDir, store: str = "sqlite") -> dict[str, str]:
    """The variables docker-compose.yml reads: this state dir's tokens and identity, the ports, and
    where the MLflow stores are (SQLite in the volumes, or the postgres service)."""
    cfg = state.config()
    env = dict(os.environ)
    env["EMULATOR_POSTGRES_URL"] = env["EMULATOR_POSTGRES_PASSWORD"] = ""
    if store == "postgres":
        # Generated once per state dir (like the tokens); the service sets it on every start.
        password = state.generated_secret("postgres_password")
        env["EMULATOR_POSTGRES_PASSWORD"] = password
        env["EMULATOR_POSTGRES_URL"] = f"postgresql://emulator:{password}@postgres:5432"
    for role in settings.ROLES:
        env[settings.TOKEN_ENV[role]] = cfg[f"{role}_token"]
        env[settings.PORT_ENV[role]] = str(settings.port_for(role))
    env[s3_store.PORT_ENV] = str(s3_store.configured_port())
    env[settings.DATABRICKS_USER_ENV] = cfg["databricks_user"]
    for key, name in settings.AZUREML_ENV.items():
        env[name] = cfg[key]
    return env


def public_urls(env: dict[str, str]) -> dict[str, str]:
    host = env.get(PUBLIC_HOST_ENV) or settings.DEFAULT_HOST
    return {role: f"http://{host}:{env[settings.PORT_ENV[role]]}" for role in settings.ROLES}


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise ComposeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr).strip()[-3000:]}")
    return proc.stdout


class Deployment:
    """One Compose project running both workspaces."""

    def __init__(self, compose_file: Path, project: str, command: list[str] | None = None,
                 store: str = "sqlite", overrides: list[Path] | tuple[Path, ...] = ()):
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}; expected one of {', '.join(STORES)}")
        self.compose_file = Path(compose_file)
        self.project = project
        self.command = command or compose_command()
        self.store = store
        # Compose files applied over the main one, in order (e.g. docker/notebook-jobs/compose.yml).
        self.overrides = [Path(p) for p in overrides]

    @classmethod
    def recorded(cls, state: StateDir) -> Deployment | None:
        dep = state.deployment()
        if dep.get("mode") != "docker":
            return None
        return cls(Path(dep["compose_file"]), dep["project"], store=dep.get("store", "sqlite"),
                   overrides=dep.get("overrides", ()))

    def compose(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        profiles = ["--profile", "postgres"] if self.store == "postgres" else []
        files = [arg for path in (self.compose_file, *self.overrides) for arg in ("-f", str(path))]
        return _run([*self.command, *files, "-p", self.project, *profiles, *args], env=env, timeout=timeout)

    def require_engine(self, env: dict[str, str]) -> None:
        """The engine answers, and has the PostgreSQL image if it is wanted (Compose may build the
        emulator's own image online; that one has no build section and no registry here)."""
        try:
            engine.client()
            image = env.get(POSTGRES_IMAGE_ENV) or postgres_image.IMAGE
            if self.store == "postgres" and engine.image_id(image) is None:
                raise ComposeError(f"the Docker engine has no image {image}; build it: "
                                   "`emulator images build --offline --postgres`")
        except engine.EngineError as exc:
            raise ComposeError(str(exc)) from None

    def require_free_ports(self, env: dict[str, str]) -> None:
        """Every port the deployment publishes is free, unless this project already runs (an `up` of a
        running deployment is a no-op for Compose). Else Compose would create some containers, fail
        to start the others with the engine's "address already in use", and leave them behind."""
        try:
            if any(c.status == "running" for c in engine.containers(self.project)):
                return
        except engine.EngineError as exc:
            raise ComposeError(str(exc)) from None
        host = env.get(BIND_ADDRESS_ENV) or settings.DEFAULT_HOST
        for name, default in PUBLISHED_PORT_DEFAULTS.items():
            port = int(env.get(name) or default)
            if launcher.port_in_use(host, port):
                raise ComposeError(f"cannot start the Docker deployment: {host}:{port} ({name}) is already in use "
                                   f"(`emulator status` shows an emulator's ports). Stop what holds it, or pick "
                                   f"another port with {name}=<port>.")

    def up(self, state: StateDir, timeout: float = 180.0, spark_workers: int = 0) -> dict[str, str]:
        """Start both workspaces; with spark_workers > 0 also the Spark master and that many workers."""
        env = compose_env(state, self.store)
        self.require_engine(env)
        for role in settings.ROLES:
            if launcher.running(state, role):
                raise ComposeError(f"the {role} workspace already runs as a local process for this state "
                                   "dir; `emulator down` it first")
        self.require_free_ports(env)
        spark_args = (["--profile", spark_cluster.PROFILE], ["--scale", f"spark-worker={spark_workers}"]) \
            if spark_workers else ([], [])
        try:
            self.compose(*spark_args[0], "up", "-d", *spark_args[1], env=env)
        except ComposeError as exc:
            if not any(word in str(exc).lower() for word in _IMAGE_TROUBLE):
                raise
            images = "`emulator images build --offline" + (" --spark`" if spark_workers else "`")
            raise ComposeError(f"{exc}\nNo registry here? Build the images first: {images}.") from None
        urls = public_urls(env)
        host = env.get(PUBLIC_HOST_ENV) or settings.DEFAULT_HOST
        extra = settings.azureml_extra_ports()  # the published HTTPS and CONNECT-proxy ports
        state.record_deployment("docker", urls=urls, project=self.project,
                                 compose_file=str(self.compose_file), store=self.store,
                                 overrides=[str(p) for p in self.overrides],
                                 azureml_tls_url=f"https://{host}:{extra['tls']}",
                                 azureml_proxy_url=f"http://{host}:{extra['proxy']}",
                                 s3_url=f"http://{host}:{env[s3_store.PORT_ENV]}",
                                 **({"spark": {**spark_cluster.urls(env), "workers": spark_workers}}
                                    if spark_workers else {}))
        self.wait_healthy(urls, timeout, state)
        if spark_workers:
            try:
                spark_cluster.wait_ready(spark_cluster.urls(env)["ui_url"], spark_workers, timeout)
            except spark_cluster.ClusterNotReady as exc:
                raise ComposeError(f"{exc}; last logs:\n{self.logs('spark-master', 20)}"
                                   f"\n{self.logs('spark-worker', 20)}") from None
        return urls

    def wait_healthy(self, urls: dict[str, str], timeout: float = 180.0, state: StateDir | None = None) -> None:
        """Both workspaces answer /health; with ``state``, also the `s3` service (Unity Catalog model
        files) at the address `emulator status` reports for it."""
        deadline = time.monotonic() + timeout
        pending = {role: (lambda url=url: launcher.healthy(url)) for role, url in urls.items()}
        if state is not None:
            pending["s3"] = lambda: s3_store.serving(state)
        while pending:
            for name, answers in list(pending.items()):
                if answers():
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > deadline:
                logs = self.logs(tail=30)
                raise ComposeError(f"timed out after {timeout:.0f}s waiting for {', '.join(pending)} "
                                   f"to answer its health check; last container logs:\n{logs}")
            time.sleep(0.5)

    def logs(self, service: str | None = None, tail: int = 50) -> str:
        try:
            return engine.logs(self.project, service, tail=tail)
        except engine.EngineError as exc:
            return str(exc)

    def down(self, state: StateDir, volumes: bool = False) -> None:
        # With the profile named, `down` also stops the Spark services if they run (and is a no-op if not).
        self.compose("--profile", spark_cluster.PROFILE, "down", *(["-v"] if volumes else []),
                     env=compose_env(state, self.store))
        state.record_deployment("local")
