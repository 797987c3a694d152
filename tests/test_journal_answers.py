"""A request journal never changes an answer: every route answers the same with it on, and is recorded.

Regression: the journal once read a cookie constant that no longer existed, so with it on every
request without a bearer header (the managed-identity endpoint, the cloud metadata, the UI, the
Databricks config discovery, ``/version`` and every 401) answered 500 and was not journaled.
"""

from __future__ import annotations

import pytest
import requests

from emulator.pipeline.auth import cookie_name, cookie_value
from harness.faults import clear_journal


def _calls(emulator) -> list[tuple[str, object, str, dict]]:
    db, aml = emulator.databricks, emulator.azureml
    ui_cookie = cookie_name("databricks", db.url)
    return [
        ("databricks", db, "/version", {}),
        ("databricks", db, "/.well-known/databricks-config", {}),
        ("databricks", db, "/api/2.0/mlflow/experiments/search?max_results=1", {}),  # 401: no token
        ("databricks", db, "/api/2.0/mlflow/experiments/search?max_results=1",
         {"headers": {"Authorization": "Bearer wrong"}}),  # 401: wrong token
        ("databricks", db, "/", {"cookies": {ui_cookie: cookie_value(db.token, ui_cookie)}}),  # the UI by cookie
        ("databricks", db, "/", {"cookies": {ui_cookie: "forged"}}),
        ("azureml", aml, "/metadata/endpoints?api-version=2019-05-01", {}),
        ("azureml", aml, "/msi/token?resource=https://ml.azure.com", {}),  # no identity header: its 401
        ("azureml", aml, "/version", {}),
    ]


def _answers(emulator) -> list[tuple[int, str]]:
    out = []
    for _, ws, path, kwargs in _calls(emulator):
        r = requests.get(ws.url + path, allow_redirects=False, timeout=60, **kwargs)
        out.append((r.status_code, r.headers.get("Content-Type", "")))
    return out


@pytest.fixture
def journals_off(emulator):
    yield
    for ws in (emulator.databricks, emulator.azureml):
        ws.journal(False)
        clear_journal(ws)


def test_unauthenticated_routes_answer_the_same_with_the_journal_on_and_are_recorded(emulator, journals_off):
    off = _answers(emulator)
    assert all(status < 500 for status, _ in off), off
    for ws in (emulator.databricks, emulator.azureml):
        clear_journal(ws)
        ws.journal(True)
    on = _answers(emulator)
    assert on == off
    recorded = emulator.databricks.requests() + emulator.azureml.requests()
    assert len(recorded) == len(_calls(emulator))
    assert sorted(e["status"] for e in recorded) == sorted(status for status, _ in off)
    kinds = [e["auth"] for e in emulator.databricks.requests()]
    assert kinds.count("cookie") == 2 and kinds.count("bearer") == 1
