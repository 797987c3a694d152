"""One workspace server process: MLflow's own tracking server app plus the role's behaviour.

Run as ``emulator serve --role databricks|azureml`` (the launcher and the Docker image both do).
Each process holds exactly one workspace: MLflow keeps its stores in module globals. It may answer
on several listeners (addresses, HTTP or HTTPS), all served by the same app (``http_server``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from emulator.settings import ServerConfig
from emulator.stores import templates as store_templates
from emulator.workspace import http_server
from emulator.workspace.http_server import Listener

_logger = logging.getLogger(__name__)


def _database_uri(config: ServerConfig) -> str:
    """The role's SQLite file in its state dir, or its database on EMULATOR_POSTGRES_URL's server."""
    from emulator.stores import postgres as postgres_store

    server = os.environ.get(postgres_store.URL_ENV)
    if server:
        return postgres_store.database_url(server, postgres_store.database_names(config.role)[0])
    return f"sqlite:///{(Path(config.state_dir) / 'mlflow.db').resolve()}"


def _configure_mlflow_env(config: ServerConfig, scrubbed: list[str] | None = None) -> str:
    """Point MLflow's server module at this workspace's stores before it is imported; returns the
    store's database URI. ``scrubbed``: what a pre-forking parent removed from the user's
    environment (emulator.control.prefork); what this call removes then is only what that parent set."""
    from emulator.stores.mlflow_stores import role_uri
    from emulator.workspace import server_env

    state = Path(config.state_dir)
    removed = server_env.scrub(os.environ, state / "home")
    removed = removed if scrubbed is None else scrubbed
    if removed:
        _logger.info("not passed to MLflow (the user's credentials stay outside): %s", ", ".join(removed))
    artifacts = state / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    database = _database_uri(config)
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = role_uri(config.role, database)
    os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = role_uri(config.role, database)
    if config.role == "databricks":
        # Databricks experiments live under dbfs:/databricks/mlflow-tracking/<id>; the Files API
        # routes map those URIs onto the local artifact root.
        os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "dbfs:/databricks/mlflow-tracking"
    else:
        os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = "mlflow-artifacts:/"
        os.environ["_MLFLOW_SERVER_SERVE_ARTIFACTS"] = "true"
        os.environ["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] = artifacts.as_uri()
    # Host-header checks would reject Compose service names; the token is the gate here.
    os.environ.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", "*")
    # MLflow's middleware grants credentialed CORS to every localhost port whatever it is told;
    # emulator.pipeline.same_origin replaces it (no CORS, same security headers).
    os.environ["MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE"] = "true"
    # No background job runner or huey consumers: one small process per workspace.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return database


def preload(config: ServerConfig) -> list[str]:
    """Import what ``build_app`` needs (MLflow's server: ~3-4 s of CPU), the environment set as
    for ``config`` (MLflow reads some of it at import), without opening any store or starting a
    thread: a pre-forking parent (emulator.control.prefork) calls this once for all its workspaces, and
    each forked child then runs ``serve`` for its own. Returns the credentials scrubbed."""
    scrubbed = prepare_environment(config)
    import_server()
    return scrubbed


def prepare_environment(config: ServerConfig) -> list[str]:
    """The first half of ``preload``: the umask and the environment MLflow is imported in (the
    user's credentials scrubbed). Returns the credentials scrubbed."""
    from emulator.workspace import server_env

    os.umask(0o077)
    scrubbed = sorted(name for name in os.environ if server_env.is_credential(name))
    _configure_mlflow_env(config, scrubbed)  # scrubs them, before MLflow is imported
    return scrubbed


def import_server() -> None:
    """The second half of ``preload``: the imports (a warm pre-forking parent,
    emulator.control.prefork_zygote, notes which environment variables they read)."""
    import cryptography.x509  # noqa: F401  (Azure ML's HTTPS listener)
    from mlflow.server import app  # noqa: F401

    import emulator.services.azureml.listeners  # noqa: F401
    import emulator.services.databricks  # noqa: F401
    from emulator import errors, pipeline  # noqa: F401
    from emulator.pipeline import body_limits, common_routes, reset  # noqa: F401
    from emulator.stores import artifact_repositories, postgres  # noqa: F401
    from emulator.workspace import startup  # noqa: F401


def build_app(config: ServerConfig, scrubbed: list[str] | None = None):
    database = _configure_mlflow_env(config, scrubbed)
    state = Path(config.state_dir)
    sqlite = database.startswith("sqlite")
    if sqlite:
        # A new store copied from a template skips MLflow's migrations (seconds of start-up).
        # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
        store_templates.restore(config.role, state / "mlflow.db")
    from mlflow.server import app  # noqa: E402  (must follow the env set-up above)

    from emulator import errors, pipeline
    from emulator.pipeline import body_limits, common_routes, reset
    from emulator.stores import artifact_repositories
    from emulator.workspace import startup

    # Before any route is installed (the mirror reads the store at start-up) and before the
    # server listens: /health answers only once the stores are open.
    # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
    empty_store = startup.open_stores(config.role, database, state / "mlflow.db")
    if sqlite:
        store_templates.remember(config.role, state / "mlflow.db")
    if config.role == "databricks":
        from emulator.services.databricks import install
    else:
        from emulator.services.azureml import install
    common_routes.install(app, config)  # the token check: the first before_request hook
    body_limits.install(app)  # size caps, before any hook reads a body
    errors.install_disk_full(app)
    install(app, config)
    artifact_repositories.install(app.config.get("EMULATOR_DBFS_LOCATE"))
    reset.install(app, config.role, state / "mlflow.db", [state / "artifacts"], empty_store)
    pipeline.install(app, config)  # journal -> faults around everything above (emulator/pipeline)
    return app


def _role_listeners(config: ServerConfig) -> list[Listener]:
    """Azure ML also answers on HTTPS (the real Azure clients speak nothing else)."""
    if config.role != "azureml":
        return []
    from emulator.services.azureml.listeners import tls_listener

    tls = tls_listener(config)
    return [Listener(tls.host, tls.port, tls.ssl_context)] if tls else []


def serve(config: ServerConfig, threads: int = 8, listeners: list[Listener] | None = None,
          scrubbed: list[str] | None = None, still_wanted=lambda: True) -> None:
    """Serve the workspace on ``listeners`` (default: plain HTTP on config.host:config.port), all
    with the same app, until SIGTERM. ``still_wanted()`` is asked once the app is built, before
    any port is bound: False (the workspace was stopped meanwhile) ends the process quietly."""
    os.umask(0o077)  # stores, artifacts and logs are readable by the owner only
    app = build_app(config, scrubbed)
    if not still_wanted():
        _logger.info("%s workspace: stopped during start-up, not listening", config.role)
        return
    listeners = listeners or [Listener(config.host, config.port), *_role_listeners(config)]
    servers = http_server.Servers(app, listeners, threads, name=f"emulator-{config.role}")
    if config.role == "azureml":
        # arrangement A: real Azure host names tunnelled to the HTTPS listener (emulator.services.azureml.listeners)
        from emulator.services.azureml.listeners import start_proxy

        start_proxy(config)
    for lst in listeners:
        _logger.info("%s workspace: Serving on %s://%s:%s", config.role, lst.scheme, lst.host, lst.port)
    http_server.run_until_signalled(servers)
