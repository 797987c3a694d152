"""Fault rules and the request journal from Python and pytest.

    from harness.faults import inject_fault

    with inject_fault(ws, "POST", "/api/2.0/mlflow/model-versions/create", after_commit="status", times=1) as rule:
        client.create_model_version(...)     # the server creates the version, the answer is lost
    assert rule.hits == 1

``ws`` is any workspace handle with ``url`` and ``token`` (the plugin's ``databricks_workspace``
/ ``azureml_workspace``, ``Emulator().databricks``...). Rules a ``with`` block adds are removed
when it ends, whatever happens inside it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import requests


class AdminError(RuntimeError):
    """An admin call was refused (the message is the workspace's)."""


def _call(ws, method: str, path: str, **kwargs) -> dict:
    from harness.admin_http import session

    answer = session().request(method, f"{ws.url}{path}", headers={"Authorization": f"Bearer {ws.token}"},
                               timeout=60, **kwargs)
    if answer.status_code >= 400:
        raise AdminError(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer.json()


@dataclass
class Rule:
    """A rule added to a workspace; ``hits`` / ``matched`` are read live from the workspace."""

    ws: object
    id: int
    spec: dict

    def state(self) -> dict:
        for rule in list_faults(self.ws):
            if rule["id"] == self.id:
                return rule
        raise AdminError(f"fault rule {self.id} is gone (cleared or the workspace was reset)")

    @property
    def hits(self) -> int:
        return self.state()["hits"]

    @property
    def matched(self) -> int:
        return self.state()["matched"]

    def remove(self) -> None:
        with contextlib.suppress(AdminError):
            _call(self.ws, "DELETE", f"/__emulator/faults/{self.id}")


def prefix(text: str) -> dict:
    """A body value that matches what starts with ``text``: ``body={"source": prefix("dbfs:/")}``."""
    return {"prefix": text}


def glob(pattern: str) -> dict:
    """A body value that matches a glob: ``body={"tags[].value": glob("*notebook*")}``."""
    return {"glob": pattern}


def add_fault(ws, method: str = "*", path: str = "*", **effect) -> Rule:
    """Add one rule (fields as in emulator.pipeline.faults: body, skip, times, status, retry_after,
    delay_s, drop, after_commit, hold_pending_s, fail_registration, error_code, message, shape).
    ``body`` keys may name nested fields (JMESPath: ``tags[].key``), values may be prefix()/glob()."""
    spec = {"method": method, "path": path, **effect}
    return Rule(ws, _call(ws, "POST", "/__emulator/faults", json=spec)["rule"]["id"], spec)


def list_faults(ws) -> list[dict]:
    return _call(ws, "GET", "/__emulator/faults")["rules"]


def clear_faults(ws) -> int:
    return _call(ws, "DELETE", "/__emulator/faults")["cleared"]


def clear_faults_after_test(ws) -> None:
    """The fixtures' teardown: remove every rule; a workspace that is gone holds none to leak."""
    with contextlib.suppress(requests.ConnectionError):
        clear_faults(ws)


@contextlib.contextmanager
def inject_fault(ws, method: str = "*", path: str = "*", **effect):
    """The rule is in force inside the block and removed after it."""
    rule = add_fault(ws, method, path, **effect)
    try:
        yield rule
    finally:
        rule.remove()


def journal(ws, enabled: bool = True) -> dict:
    """Turn the workspace's request journal on (or off)."""
    return _call(ws, "POST", "/__emulator/requests", json={"enabled": enabled})


def journal_state(ws) -> dict:
    return {k: v for k, v in _call(ws, "GET", "/__emulator/requests", params={"limit": 1}).items()
            if k not in ("requests", "next_since")}


def clear_journal(ws) -> dict:
    return _call(ws, "DELETE", "/__emulator/requests")


def requests_of(ws, since: int = 0, path: str | None = None) -> list[dict]:
    """The journal's entries (oldest first), after sequence number ``since``, whose path contains
    ``path`` (or matches it as a glob)."""
    params = {"since": since, **({"path": path} if path else {})}
    return _call(ws, "GET", "/__emulator/requests", params=params)["requests"]


class WorkspaceAdmin:
    """Mixed into the workspace handles: ``ws.requests()``, ``ws.inject_fault(...)``, ``ws.clear_faults()``."""

    def requests(self, since: int = 0, path: str | None = None) -> list[dict]:
        return requests_of(self, since, path)

    def inject_fault(self, method: str = "*", path: str = "*", **effect):
        return inject_fault(self, method, path, **effect)

    def add_fault(self, method: str = "*", path: str = "*", **effect) -> Rule:
        return add_fault(self, method, path, **effect)

    def faults(self) -> list[dict]:
        return list_faults(self)

    def clear_faults(self) -> int:
        return clear_faults(self)

    def journal(self, enabled: bool = True) -> dict:
        return journal(self, enabled)


# --- pytest fixtures (registered by harness.pytest_plugin) ----------------------------------------

def fixtures():
    """The plugin's fixtures, made on demand: pytest is not there where this module is imported
    outside a test run (a job task's process in the emulator's image imports harness.workspaces)."""
    import pytest

    @pytest.fixture
    def inject_fault(emulated_workspaces):
        """``inject_fault(ws, method, path, **effect)`` -> Rule; every rule it added is removed after the test."""
        added: list[Rule] = []

        def add(ws, method: str = "*", path: str = "*", **effect) -> Rule:
            rule = add_fault(ws, method, path, **effect)
            added.append(rule)
            return rule

        yield add
        for rule in added:
            rule.remove()

    @pytest.fixture
    def request_journal(emulated_workspaces):
        """Both workspaces journal every request during the test (emptied first); read with ``ws.requests()``."""
        handles = (emulated_workspaces.databricks, emulated_workspaces.azureml)
        for ws in handles:
            clear_journal(ws)
            journal(ws, True)
        yield handles
        for ws in handles:
            journal(ws, False)

    return inject_fault, request_journal

