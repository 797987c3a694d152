"""Handles on the two emulated workspaces: start them, find them, and the env vars clients need."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emulator import settings
from emulator.control import launcher, s3_store, status
from emulator.control.state import StateDir
from harness.faults import WorkspaceAdmin


@dataclass(frozen=True)
class DatabricksWorkspace(WorkspaceAdmin):
    url: str
    token: str
    user: str
    s3_url: str = ""  # Unity Catalog model files (MLFLOW_S3_ENDPOINT_URL)
    # Notebooks' Spark tables (harness.spark_tables): the workspace's warehouse and metastore folder,
    # and where the catalog plugin is cached ("": a notebook's `spark` gets no persistent tables).
    tables_dir: str = ""
    catalog_cache: str = ""

    @property
    def env(self) -> dict[str, str]:
        """What a notebook's MLflow client reads for tracking URI ``databricks`` (and registry ``databricks-uc``)."""
        env = {"DATABRICKS_HOST": self.url, "DATABRICKS_TOKEN": self.token}
        if self.s3_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = self.s3_url
        return env


@dataclass(frozen=True)
class AzureMLWorkspace(WorkspaceAdmin):
    url: str
    token: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    tracking_uri: str

    @property
    def env(self) -> dict[str, str]:
        """The vanilla MLflow client sends MLFLOW_TRACKING_TOKEN as its bearer token;
        harness.azureml.Workspace.get() finds ARM at AZUREML_EMULATOR_URL."""
        return {"MLFLOW_TRACKING_TOKEN": self.token, "AZUREML_EMULATOR_URL": self.url}


class Emulator:
    """Both workspaces in local mode under one state dir."""

    # What ``ports`` may name: the two workspaces, Azure ML's HTTPS listener and CONNECT proxy, the S3 store.
    PORT_NAMES = (*settings.ROLES, "tls", "proxy", "s3")

    def __init__(self, state_dir: str | os.PathLike, ports: dict[str, int] | None = None):
        self.state = StateDir(Path(state_dir))
        # Fixed ports (the given ones, else free ones), so a workspace restarted by stop()/start()
        # keeps its address.
        given = {name: port for name, port in (ports or {}).items() if port}
        self.ports = {role: given.get(role) or launcher.free_port() for role in settings.ROLES}
        if "s3" in given:
            self.ports["s3"] = given["s3"]
        self.azureml_extra_ports = {name: given.get(name) or launcher.free_port() for name in ("tls", "proxy")}

    def running(self) -> bool:
        """Both workspaces of this state dir run (started by it, answering as it): reuse them."""
        return self.state.root.is_dir() and all(launcher.owned(self.state, role) for role in settings.ROLES)

    def up(self, timeout: float = 90.0) -> Emulator:
        # The Databricks workspace's configuration names the S3 store: its port is settled first.
        self.ports.setdefault("s3", launcher.free_port())
        s3_store.reserve(self.state, port=self.ports["s3"])
        # One process imports MLflow once and forks both servers (emulator.control.prefork).
        procs = launcher.start_all(self.state, [self._launch(role) for role in settings.ROLES], wait_free=60)
        self.state.record_deployment("local")
        # The S3 store starts alongside the workspaces: start-up is what every test session waits for.
        try:
            launcher.wait_healthy(self.state, procs, timeout=timeout, alongside=lambda: self.start_s3(timeout))
        except BaseException:
            self.down()  # a failed start leaves nothing running (the caller's fixture never reaches its down)
            raise
        return self

    def start_s3(self, timeout: float = 90.0) -> str:
        """The S3 store of Unity Catalog model files, on a fixed port like the workspaces."""
        if "s3" not in self.ports:
            self.ports["s3"] = launcher.free_port()
        return s3_store.start(self.state, port=self.ports["s3"], timeout=timeout)

    def _launch(self, role: str) -> launcher.Launch:
        extra = self.azureml_extra_ports if role == "azureml" else None
        return launcher.Launch(role, port=self.ports.get(role), extra_ports=extra)

    def start_process(self, role: str):
        # Fixed ports (a restart keeps its address): give a just-stopped server's sockets time to go.
        return launcher.start_all(self.state, [self._launch(role)], wait_free=60)[0]

    def start(self, role: str, timeout: float = 90.0) -> None:
        launcher.wait_healthy(self.state, [self.start_process(role)], timeout=timeout)

    def stop(self, role: str) -> None:
        launcher.stop(self.state, role)

    def down(self) -> None:
        for role in settings.ROLES:
            launcher.stop(self.state, role)
        s3_store.stop(self.state)

    def status(self) -> dict:
        return status.collect(self.state)

    # The handles come from the state dir's files only (status.addresses): every test's fixtures
    # ask for them, and `status()`'s health probes cost ~8 requests each time.
    @property
    def databricks(self) -> DatabricksWorkspace:
        info = status.addresses(self.state)["databricks"]
        role_dir = str(self.state.role_dir("databricks"))
        return DatabricksWorkspace(info["url"], info["token"], info["user"], info["s3_url"],
                                   tables_dir=settings.spark_tables_dir(role_dir),
                                   catalog_cache=str(launcher.spark_catalog_cache()))

    @property
    def azureml(self) -> AzureMLWorkspace:
        info = status.addresses(self.state)["azureml"]
        return AzureMLWorkspace(
            info["url"], info["token"], info["subscription_id"], info["resource_group"],
            info["workspace_name"], info["tracking_uri"],
        )
