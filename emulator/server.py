"""One workspace server process: MLflow's own tracking server app plus the role's behaviour.

Run as ``emulator serve --role databricks|azureml`` (the launcher and the Docker image both do).
Each process holds exactly one workspace: MLflow keeps its stores in module globals.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)


def _configure_mlflow_env(config: ServerConfig) -> None:
    """Point MLflow's server module at this workspace's stores before it is imported."""
    from emulator import server_env
    from emulator.stores import store_uri

    state = Path(config.state_dir)
    removed = server_env.scrub(os.environ, state / "home")
    if removed:
        _logger.info("not passed to MLflow (the user's credentials stay outside): %s", ", ".join(removed))
    artifacts = state / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = store_uri(config.role, state / "mlflow.db")
    os.environ["_MLFLOW_SERVER_REGISTRY_STORE"] = store_uri(config.role, state / "mlflow.db")
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
    # emulator.same_origin replaces it (no CORS, same security headers).
    os.environ["MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE"] = "true"
    # No background job runner or huey consumers: one small process per workspace.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


def build_app(config: ServerConfig):
    _configure_mlflow_env(config)
    from mlflow.server import app  # noqa: E402  (must follow the env set-up above)

    from emulator import artifact_repositories, common_routes, pipeline, reset, startup

    # Before any route is installed (the mirror reads the store at start-up) and before the
    # server listens: /health answers only once the stores are open.
    # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
    startup.open_stores()
    if config.role == "databricks":
        from emulator.databricks import install
    else:
        from emulator.azureml import install
    common_routes.install(app, config)
    install(app, config)
    artifact_repositories.install(app.config.get("EMULATOR_DBFS_LOCATE"))
    state = Path(config.state_dir)
    reset.install(app, config.role, state / "mlflow.db", [state / "artifacts"])
    pipeline.install(app, config)  # journal -> faults around everything above (emulator/pipeline)
    return app


def serve(config: ServerConfig, threads: int = 8) -> None:
    from waitress import serve as waitress_serve

    os.umask(0o077)  # stores, artifacts and logs are readable by the owner only
    app = build_app(config)
    if config.role == "azureml":
        # Azure ML's HTTPS listener and CONNECT proxy (emulator.azureml.listeners), in threads
        # beside the plain listener until serve() runs a list of listeners itself.
        from emulator.azureml.listeners import start_background

        start_background(app, config, threads=threads)
    _logger.info("%s workspace listening on %s:%s", config.role, config.host, config.port)
    waitress_serve(
        app,
        host=config.host,
        port=config.port,
        threads=threads,
        # Model artifacts can be large; allow big request bodies (the default is 1 GiB).
        max_request_body_size=8 * 1024**3,
        ident=f"emulator-{config.role}",
    )
