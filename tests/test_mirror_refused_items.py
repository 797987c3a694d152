"""A batch Azure ML refuses because of one item: the valid items still arrive, only the refused
one is a dead letter (emulator/services/mirror/relay.py). Real servers, linked, real MLflow clients."""

import contextlib
import os
import subprocess
import sys
import time
import uuid
from unittest import mock

import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from harness.workspaces import Emulator


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("split-state")).up()
    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", "link", "--state-dir", str(emu.state.root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    yield emu
    emu.down()


def _admin(emu, path):
    db = emu.databricks
    answer = requests.get(f"{db.url}{path}", headers={"Authorization": f"Bearer {db.token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_drained(emu, timeout=120.0):
    deadline = time.monotonic() + timeout
    while (state := _admin(emu, "/__emulator/mirror"))["backlog"]:
        assert time.monotonic() < deadline, f"mirror did not catch up: {state}"
        time.sleep(0.1)
    return state


@contextlib.contextmanager
def _mirrored_run(linked, label: str):
    """Both real MLflow clients and a Databricks run already mirrored: (db, aml, run id, its mirror's
    id, the dead letters so far)."""
    env = {**linked.databricks.env, "MLFLOW_TRACKING_TOKEN": linked.azureml.token}
    with mock.patch.dict(os.environ, env):
        db, aml = MlflowClient("databricks"), MlflowClient(linked.azureml.tracking_uri)
        exp = db.create_experiment(f"/Users/{linked.databricks.user}/{label}-{uuid.uuid4().hex[:6]}")
        run_id = db.create_run(exp).info.run_id
        db.log_metric(run_id, "warmup", 1.0)
        failed_before = _wait_drained(linked)["failed"]
        yield db, aml, run_id, _admin(linked, f"/__emulator/mirror/runs/{run_id}")["azureml_run_id"], failed_before


def test_one_refused_item_does_not_dead_letter_the_valid_points(linked):
    with _mirrored_run(linked, "split") as (db, aml, run_id, mirror, failed_before):
        # Someone logged "lr" in the Azure ML mirror directly: MLflow refuses a different value for it,
        # so Azure ML answers the whole mirrored log-batch 400 INVALID_PARAMETER_VALUE.
        aml.log_param(mirror, "lr", "0.5")
        points = [Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(100)]
        db.log_batch(run_id, metrics=points, params=[Param("lr", "0.1"), Param("epochs", "10")])
        state = _wait_drained(linked)
        got = sorted((m.step, m.value) for m in aml.get_metric_history(mirror, "loss"))
        assert got == [(p.step, p.value) for p in points]  # all 100 valid points arrived
        assert aml.get_run(mirror).data.params == {"lr": "0.5", "epochs": "10"}
        assert state["failed"] == failed_before + 1
        error = state["recent_failures"][0]["error"]
        assert "1 of 102 items refused" in error and "param 'lr'" in error, error
        # The relay goes on: later writes are mirrored.
        db.log_metric(run_id, "after", 2.0)
        _wait_drained(linked)
        assert [m.value for m in aml.get_metric_history(mirror, "after")] == [2.0]


@pytest.mark.parametrize("fault", [{"status": 400}, {"status": 404}, {"status": 409},
                                   {"status": 400, "message": "Bad request."}, {"drop": True}])
def test_a_fault_on_azureml_is_retried_never_dead_lettered(linked, fault):
    """A 3-shot fault on Azure ML's log-batch: every point still arrives once the fault is spent.
    Only a 4xx that names the item sent (its run, key, ...) may set a write aside."""
    with _mirrored_run(linked, "fault") as (db, aml, run_id, mirror, failed_before):
        with linked.azureml.inject_fault("POST", "*/runs/log-batch", times=3, **fault) as rule:
            for step in range(5):
                db.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
            state = _wait_drained(linked)
            assert rule.hits == 3
        assert sorted(m.step for m in aml.get_metric_history(mirror, "loss")) == [0, 1, 2, 3, 4]
        assert state["failed"] == failed_before, state["recent_failures"]


def _answering(body: bytes, content_type: str = "application/json"):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    return app


@pytest.mark.parametrize("body, content_type, call", [
    (b"<html>Proxy login</html>", "text/html", ("POST", "runs/log-batch")),
    (b'{"run": {"info": {"run_', "application/json", ("POST", "runs/create")),  # cut off
    (b"[]", "application/json", ("POST", "runs/log-batch")),
    (b"{}", "application/json", ("POST", "runs/create")),  # no run in it
], ids=["html-page", "cut-off-json", "json-list", "no-run"])
def test_a_malformed_200_from_the_mirror_target_is_retried(body, content_type, call):
    """Not Azure ML's verdict on the write (a proxy's page, a cut-off body): a transient error,
    so the relay keeps the event and retries it, never sets it aside (real HTTP, loopback)."""
    from emulator.services.mirror.aml_client import AzureMLClient, AzureMLError
    from emulator.workspace.http_server import Listener, Servers

    servers = Servers(_answering(body, content_type), [Listener("127.0.0.1", 0)], threads=2, name="t").start()
    try:
        (_, port), = servers.bound
        client = AzureMLClient(f"http://127.0.0.1:{port}", "token", timeout=30)
        with pytest.raises(AzureMLError) as raised:
            answer = client.call(*call, {"run_id": "r1", "experiment_id": "1"})
            answer["run"]["info"]["run_id"]  # what the relay reads from runs/create
        assert raised.value.transient, raised.value
    finally:
        servers.stop()
