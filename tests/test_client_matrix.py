"""Every MLflow client teams run (2.9 to 3.17) passes the whole seed flow against one linked pair.

Each client runs tests/clients/seed_flow.py unmodified, in its own cached venv, two at a time
(tests.support.client_matrix, ``EMULATOR_MATRIX_PARALLEL``). Before 3.4 the clients move every Databricks run artifact through
``artifacts/credentials-for-write|read`` and the signed blob URLs those return; 3.4+ use the Files
API. ``EMULATOR_MATRIX_VERSIONS=2.9.2,3.17.2`` narrows the run while developing.
"""

import pytest

from harness import links
from harness.faults import clear_journal
from tests.support import client_matrix


@pytest.fixture(scope="module")
def linked(emulator):
    """A linked pair with both request journals on: a journal must never change an answer, so every
    client runs the whole seed flow while its calls are recorded (issue: the journal once broke every
    call without a bearer header: signed URL transfers, the SDK's config discovery)."""
    links.link(emulator.databricks, emulator.azureml)
    for ws in (emulator.databricks, emulator.azureml):
        clear_journal(ws)
        ws.journal(True)
    yield emulator
    for ws in (emulator.databricks, emulator.azureml):
        ws.journal(False)
    links.unlink(emulator.databricks)


def test_every_client_version_passes_every_step(linked, tmp_path, capsys):
    results = client_matrix.run_all(linked.databricks, linked.azureml, tmp_path)
    report = client_matrix.table(results)
    with capsys.disabled():
        print("\n" + report)
    failures = {r.version: {s: r.steps[s][1] for s in r.failed} for r in results if r.failed}
    for r in results:
        if r.failed:
            print(f"--- mlflow {r.version} output (tail) ---\n{r.output[-4000:]}")
    assert not failures, f"\n{report}\n{failures}"
    steps = {tuple(r.steps) for r in results}
    assert len(steps) == 1 and len(next(iter(steps))) >= 20, steps  # every client ran every step
    # The journals saw the flows, credential-less calls included, and no call failed on the server.
    journaled = linked.databricks.requests() + linked.azureml.requests()
    assert {e["auth"] for e in journaled} >= {"bearer", None}, {e["auth"] for e in journaled}
    assert not [e for e in journaled if e["status"] == 500], "500 while journaling"
