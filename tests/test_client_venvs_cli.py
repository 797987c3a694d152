"""``python -m harness.client_venvs NAME``: builds (or finds) only the named venvs."""

from __future__ import annotations

import subprocess
import sys

from harness import client_venvs


def test_names_only_the_venvs_asked_for(monkeypatch, capsys):
    built = []
    monkeypatch.setattr(client_venvs, "ensure", lambda name: built.append(name) or f"/venvs/{name}/bin/python")
    assert client_venvs.main(["azureml-clients"]) == 0
    assert built == ["azureml-clients"]
    assert capsys.readouterr().out.strip() == "/venvs/azureml-clients/bin/python"


def test_an_unknown_name_builds_nothing_and_says_which_exist():
    # A real subprocess (no venv is built: the name is checked first).
    proc = subprocess.run([sys.executable, "-m", "harness.client_venvs", "azureml-clients", "azure-clients"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown client venv azure-clients" in proc.stderr and "azureml-clients" in proc.stderr
