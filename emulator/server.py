"""One workspace server process: MLflow's own tracking server app plus the role's behaviour.

Run as ``emulator serve --role databricks|azureml`` (the launcher and the Docker image both do).
Each process holds exactly one workspace: MLflow keeps its stores in module globals. It may answer
on several listeners (addresses, HTTP or HTTPS), all served by the same app (``http_server``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from emulator import http_server
from emulator.http_server import Listener
from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)


def _configure_mlflow_env(config: ServerConfig) -> None:
    """Point MLflow's server module at this workspace's stores before it is imported."""
    from emulator.stores import store_uri

    state = Path(config.state_dir)
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
    # The server never uses real cloud credentials: MLflow's server-side artifact code would
    # read them (env vars, ~/.databrickscfg) for a dbfs:/ location it does not find locally.
    for name in [k for k in os.environ if k.startswith("DATABRICKS_")]:
        del os.environ[name]
    os.environ["DATABRICKS_CONFIG_FILE"] = str(state / "no-databrickscfg")  # never created
    # Host-header checks would reject Compose service names; the token is the gate here.
    os.environ.setdefault("MLFLOW_SERVER_ALLOWED_HOSTS", "*")
    # No background job runner or huey consumers: one small process per workspace.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


def build_app(config: ServerConfig):
    _configure_mlflow_env(config)
    from mlflow.server import app  # noqa: E402  (must follow the env set-up above)

    from emulator import body_limits, common_routes, errors

    if config.role == "databricks":
        from emulator.databricks import install
    else:
        from emulator.azureml import install
    common_routes.install(app, config)  # the token check: the first before_request hook
    body_limits.install(app)  # size caps, before any hook reads a body
    errors.install_disk_full(app)
    install(app, config)
    _open_stores()
    return app


def _open_stores() -> None:
    """Create/migrate the stores now, not on the first API call: that took ~10 s on a loaded
    machine, so the first client call could time out although /health already answered."""
    from mlflow.server.handlers import _get_model_registry_store, _get_tracking_store

    _get_tracking_store()
    _get_model_registry_store()


def serve(config: ServerConfig, threads: int = 8, listeners: list[Listener] | None = None) -> None:
    """Serve the workspace on ``listeners`` (default: plain HTTP on config.host:config.port), all
    with the same app, until SIGTERM."""
    os.umask(0o077)  # stores, artifacts and logs are readable by the owner only
    app = build_app(config)
    listeners = listeners or [Listener(config.host, config.port)]
    servers = http_server.Servers(app, listeners, threads, name=f"emulator-{config.role}")
    for lst in listeners:
        _logger.info("%s workspace: Serving on %s://%s:%s", config.role, lst.scheme, lst.host, lst.port)
    http_server.run_until_signalled(servers)
