"""pytest plugin (entry point ``pytest11``): fixtures that start the emulated workspaces."""

from __future__ import annotations

import pytest

from harness.workspaces import Emulator


@pytest.fixture(scope="session")
def emulated_workspaces(tmp_path_factory):
    """Both workspaces as local server processes on free loopback ports, for the session."""
    emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    yield emu
    emu.down()


@pytest.fixture
def databricks_workspace(emulated_workspaces, monkeypatch):
    """The Databricks workspace, with DATABRICKS_HOST/DATABRICKS_TOKEN set for the test."""
    ws = emulated_workspaces.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    return ws


@pytest.fixture
def azureml_workspace(emulated_workspaces, monkeypatch):
    """The Azure ML workspace, with MLFLOW_TRACKING_TOKEN set for the test."""
    ws = emulated_workspaces.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    return ws
