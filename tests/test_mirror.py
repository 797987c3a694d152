"""Linked workspaces: what the real MLflow client tracks in Databricks lands in Azure ML too.

Real servers, real clients: the Databricks side is driven with tracking URI ``databricks``
(DATABRICKS_HOST / DATABRICKS_TOKEN), the Azure ML side read with its scoped tracking URI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from harness.workspaces import Emulator

MIRROR_TAGS = {"emulator.source_run_id", "emulator.source_workspace"}


def cli(emu: Emulator, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args, "--state-dir", str(emu.state.root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 3), proc.stderr
    return proc


def admin(emu: Emulator, path: str) -> requests.Response:
    db = emu.databricks
    return requests.get(f"{db.url}{path}", headers={"Authorization": f"Bearer {db.token}"}, timeout=60)


def mirror_state(emu: Emulator) -> dict:
    return admin(emu, "/__emulator/mirror").json()


def wait_drained(emu: Emulator, timeout: float = 60.0) -> float:
    """Seconds until the mirror's backlog is empty."""
    started = time.monotonic()
    while True:
        state = mirror_state(emu)
        if state["backlog"] == 0:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"mirror did not catch up: {state}"
        time.sleep(0.05)


@contextmanager
def tracking(emu: Emulator, uri: str):
    """The notebook's set-up: credentials in the environment, then set_tracking_uri."""
    env = {**emu.databricks.env, "MLFLOW_TRACKING_TOKEN": emu.azureml.token}
    with mock.patch.dict(os.environ, env):
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            if mlflow.active_run():
                mlflow.end_run()
            mlflow.set_tracking_uri(None)


@contextmanager
def clients(emu: Emulator):
    with tracking(emu, "databricks"):
        yield MlflowClient("databricks", "databricks"), MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)


def linked_emulator(tmp_path_factory) -> Emulator:
    emu = Emulator(tmp_path_factory.mktemp("mirror-state")).up()
    out = json.loads(cli(emu, "link").stdout)
    assert out["linked"] is True
    return emu


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    emu = linked_emulator(tmp_path_factory)
    yield emu
    emu.down()


def exp_name(emu: Emulator, label: str) -> str:
    # /Users/<user>/ always exists in the workspace tree; the name keeps Databricks' path rules.
    return f"/Users/{emu.databricks.user}/mirror-{label}-{uuid.uuid4().hex[:6]}"


def mirror_of(emu: Emulator, run_id: str) -> dict:
    resp = admin(emu, f"/__emulator/mirror/runs/{run_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple]:
    # NaN != NaN: compare its text form.
    return sorted((m.step, m.timestamp, repr(m.value)) for m in client.get_metric_history(run_id, key))


def all_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    files = []
    for info in client.list_artifacts(run_id, path):
        files.extend(all_files(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(files)


def read_artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> bytes:
    return Path(client.download_artifacts(run_id, path, str(dst))).read_bytes()


# -- parity ---------------------------------------------------------------------------------


def test_linked_run_is_mirrored_with_full_parity(linked, tmp_path):
    import pandas as pd

    name = exp_name(linked, "parity")
    blob = os.urandom(300_000)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "a.txt").write_text("a")
    (tmp_path / "tree" / "sub" / "b.bin").write_bytes(blob)
    with tracking(linked, "databricks"):
        mlflow.set_experiment(name)
        with mlflow.start_run(run_name="parity-run") as run:
            mlflow.log_params({"alpha": 0.5, "l1_ratio": "0.1", "solver": "saga"})
            for step in range(40):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            mlflow.log_metrics({"rmse": 0.7, "r2": 0.3}, step=1)
            mlflow.log_metric("rmse", 0.6, step=2)
            mlflow.log_metric("odd", float("nan"))
            mlflow.set_tags({"team": "ml", "stage": "dev"})
            mlflow.set_tag("stage", "prod")  # later value wins on both sides
            mlflow.log_text("hello", "notes/hello.txt")
            mlflow.log_dict({"k": [1, 2]}, "config.json")
            mlflow.log_artifacts(str(tmp_path / "tree"), "tree")
            frame = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]})
            mlflow.log_input(mlflow.data.from_pandas(frame, name="training"), context="training")
        run_id = run.info.run_id
    wait_drained(linked)

    with clients(linked) as (db, aml):
        src = db.get_run(run_id)
        ids = mirror_of(linked, run_id)
        dst = aml.get_run(ids["azureml_run_id"])
        assert aml.get_experiment(ids["azureml_experiment_id"]).name == name
        # The mapping is also findable by tag, as the harness looks it up.
        found = aml.search_runs([ids["azureml_experiment_id"]], f"tags.`emulator.source_run_id` = '{run_id}'")
        assert [r.info.run_id for r in found] == [ids["azureml_run_id"]]
        assert dst.data.tags["emulator.source_workspace"] == linked.databricks.url

        for attr in ("run_name", "status", "start_time", "end_time", "user_id"):
            assert getattr(dst.info, attr) == getattr(src.info, attr), attr
        assert dst.info.status == "FINISHED"
        assert dst.data.params == src.data.params
        assert {k: v for k, v in dst.data.tags.items() if k not in MIRROR_TAGS} == src.data.tags
        assert src.data.tags["stage"] == "prod"
        assert set(dst.data.metrics) == set(src.data.metrics) == {"loss", "rmse", "r2", "odd"}
        for key in src.data.metrics:
            assert history(aml, dst.info.run_id, key) == history(db, run_id, key), key
        assert len(history(aml, dst.info.run_id, "loss")) == 40

        def inputs(run):
            return sorted((d.dataset.name, d.dataset.digest, d.dataset.source_type,
                           tuple(sorted((t.key, t.value) for t in d.tags))) for d in run.inputs.dataset_inputs)

        assert inputs(dst) == inputs(src) and len(inputs(src)) == 1

        files = all_files(db, run_id)
        assert files == ["config.json", "notes/hello.txt", "tree/a.txt", "tree/sub/b.bin"]
        assert all_files(aml, dst.info.run_id) == files
        for i, path in enumerate(files):
            want = read_artifact(db, run_id, path, tmp_path / f"db{i}")
            assert read_artifact(aml, dst.info.run_id, path, tmp_path / f"aml{i}") == want, path
        assert read_artifact(aml, dst.info.run_id, "tree/sub/b.bin", tmp_path / "again") == blob


def test_edits_are_mirrored_as_databricks_stored_them(linked):
    with clients(linked) as (db, aml):
        exp_id = db.create_experiment(exp_name(linked, "edits"), tags={"owner": "me"})
        run = db.create_run(exp_id, run_name="before")
        run_id = run.info.run_id
        # Over-long values are refused by Databricks as by Azure ML (not truncated): nothing to mirror.
        with pytest.raises(MlflowException, match="6000"):
            db.log_param(run_id, "long", "p" * 6001)
        with pytest.raises(MlflowException, match="8000"):
            db.set_tag(run_id, "long_tag", "t" * 8001)
        db.log_param(run_id, "long", "p" * 6000)
        db.set_tag(run_id, "long_tag", "t" * 8000)
        db.set_tag(run_id, "gone", "x")
        db.delete_tag(run_id, "gone")
        db.set_tag(run_id, "ünïcode key", "välue ✓")
        db.update_run(run_id, name="after")
        db.set_experiment_tag(exp_id, "note", "set later")
        db.log_batch(run_id, metrics=[mlflow.entities.Metric("b", float(i), 1_700_000_000_000 + i, i) for i in range(250)])
        db.set_terminated(run_id, "FAILED")
        wait_drained(linked)
        src = db.get_run(run_id)
        ids = mirror_of(linked, run_id)
        dst = aml.get_run(ids["azureml_run_id"])
        assert len(src.data.params["long"]) == 6000 and dst.data.params == src.data.params
        assert {k: v for k, v in dst.data.tags.items() if k not in MIRROR_TAGS} == src.data.tags
        assert "gone" not in dst.data.tags and len(dst.data.tags["long_tag"]) == 8000
        assert (dst.info.run_name, dst.info.status, dst.info.end_time) == ("after", "FAILED", src.info.end_time)
        assert history(aml, dst.info.run_id, "b") == history(db, run_id, "b")
        exp_tags = aml.get_experiment(ids["azureml_experiment_id"]).tags
        assert exp_tags["owner"] == "me" and exp_tags["note"] == "set later"
        assert mirror_state(linked)["failed"] == 0


def test_a_write_azureml_refuses_is_set_aside_not_blocking(linked):
    """Someone deleted the mirrored run in Azure ML: writes to it are dead letters, the rest flows."""
    with clients(linked) as (db, aml):
        exp_id = db.create_experiment(exp_name(linked, "refused"))
        doomed, other = db.create_run(exp_id).info.run_id, db.create_run(exp_id).info.run_id
        db.log_metric(doomed, "m", 1.0)
        wait_drained(linked)
        failed_before = mirror_state(linked)["failed"]
        aml.delete_run(mirror_of(linked, doomed)["azureml_run_id"])
        db.log_metric(doomed, "m", 2.0)
        db.log_metric(other, "m", 3.0)
        wait_drained(linked)
        state = mirror_state(linked)
        assert state["failed"] == failed_before + 1
        assert state["recent_failures"][0]["run_id"] == doomed
        assert "Azure ML answered 400" in state["recent_failures"][0]["error"]
        assert [m.value for m in aml.get_metric_history(mirror_of(linked, other)["azureml_run_id"], "m")] == [3.0]
        # Later successful deliveries clear the current error (the dead letter stays counted).
        db.log_metric(other, "m", 4.0)
        wait_drained(linked)
        assert mirror_state(linked)["last_error"] is None


def test_a_mapping_to_an_experiment_azureml_does_not_hold_is_found_again_by_name(linked):
    """A state dir written before Azure ML's experiment ids were GUIDs maps experiments to '1', '2'...;
    Azure ML answers RESOURCE_DOES_NOT_EXIST to every write that uses them (runs/search does not name
    the id, so it looked like a passing fault). The backlog stalled for good; now the mapping is
    forgotten, the experiment found again by name and the runs by their source tag."""
    import sqlite3

    with clients(linked) as (db, aml):
        name = exp_name(linked, "stale-experiment")
        exp_id = db.create_experiment(name)
        first = db.create_run(exp_id).info.run_id
        db.log_param(first, "p", "1")
        wait_drained(linked)
        failed_before = mirror_state(linked)["failed"]
        aml_exp = aml.get_experiment_by_name(name).experiment_id
        with sqlite3.connect(linked.state.root / "databricks" / "outbox.db") as box:  # as the old emulator left it
            box.execute("UPDATE experiment_map SET aml_experiment_id='1' WHERE aml_experiment_id=?", (aml_exp,))
            box.execute("UPDATE run_map SET aml_experiment_id='1' WHERE aml_experiment_id=?", (aml_exp,))
        second = db.create_run(exp_id).info.run_id
        db.log_metric(second, "m", 2.0)
        db.log_param(first, "q", "2")
        wait_drained(linked)
        assert mirror_state(linked)["failed"] == failed_before
        mirrors = {r.data.tags["emulator.source_run_id"]: r for r in aml.search_runs([aml_exp])}
        assert set(mirrors) == {first, second}
        assert mirrors[first].data.params == {"p": "1", "q": "2"}
        assert mirrors[second].data.metrics == {"m": 2.0}
        assert mirror_of(linked, first)["azureml_experiment_id"] == aml_exp


def test_a_run_azureml_lost_is_created_again_with_all_it_holds(tmp_path_factory, tmp_path):
    """The Azure ML workspace was reset alone: the mirrored run, its experiment and its data are gone
    there. The next write to the run must not be a dead letter: the run is created again and gets
    everything Databricks holds for it, params, metric history, status and files."""
    from emulator.control.live_reset import request_reset

    emu = linked_emulator(tmp_path_factory)
    try:
        with clients(emu) as (db, aml):
            exp_id = db.create_experiment(exp_name(emu, "lost-run"))
            run_id = db.create_run(exp_id).info.run_id
            db.log_param(run_id, "p", "1")
            db.log_metric(run_id, "m", 1.0, step=0)
            (tmp_path / "notes.txt").write_text("kept")
            db.log_artifact(run_id, str(tmp_path / "notes.txt"))
            db.log_artifact(run_id, str(tmp_path / "notes.txt"), artifact_path="nested")
            wait_drained(emu)
            lost = mirror_of(emu, run_id)["azureml_run_id"]
            request_reset(emu.azureml.url, emu.azureml.token)
            db.log_metric(run_id, "m", 2.0, step=1)
            db.set_terminated(run_id)
            wait_drained(emu)
            state = mirror_state(emu)
            assert state["failed"] == 0, state
            again = mirror_of(emu, run_id)["azureml_run_id"]
            mirror = aml.get_run(again)
            assert mirror.data.params == {"p": "1"}
            assert history(aml, again, "m") == history(db, run_id, "m") and len(history(db, run_id, "m")) == 2
            assert mirror.info.status == "FINISHED"
            assert all_files(aml, again) == ["nested/notes.txt", "notes.txt"]
            assert read_artifact(aml, again, "notes.txt", tmp_path / "down") == b"kept"
            if again == lost:  # the store may number the new run as the old: then it must be the only one
                assert len(aml.search_runs([mirror.info.experiment_id])) == 1
    finally:
        emu.down()


def test_mirror_lag_is_small(linked):
    """One metric point logged in Databricks is readable in Azure ML shortly after."""
    with tracking(linked, "databricks"):
        mlflow.set_experiment(exp_name(linked, "lag"))
        with mlflow.start_run() as run:
            mlflow.log_metric("warm", 1)
            wait_drained(linked)
            aml = MlflowClient(linked.azureml.tracking_uri)
            aml_run = mirror_of(linked, run.info.run_id)["azureml_run_id"]
            lags = []
            for i in range(10):
                mlflow.log_metric("probe", i, step=i)
                acked = time.perf_counter()
                while len(aml.get_metric_history(aml_run, "probe")) < i + 1:
                    time.sleep(0.005)
                lags.append(time.perf_counter() - acked)
    lags.sort()
    print(f"\nmirror lag (log_metric ack -> readable in Azure ML): median {lags[5]*1000:.0f} ms, "
          f"max {lags[-1]*1000:.0f} ms")
    assert lags[5] < 2.0


def test_registry_is_not_mirrored(linked):
    from sklearn.linear_model import LinearRegression

    model_name = f"mirror-model-{uuid.uuid4().hex[:6]}"
    with tracking(linked, "databricks"):
        mlflow.set_registry_uri("databricks")  # the seed's workspace registry
        try:
            mlflow.set_experiment(exp_name(linked, "registry"))
            with mlflow.start_run() as run:
                mlflow.log_param("kind", "linear")
                model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
                mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name)
        finally:
            mlflow.set_registry_uri(None)
        wait_drained(linked)
        db = MlflowClient("databricks", "databricks")
        aml = MlflowClient(linked.azureml.tracking_uri, linked.azureml.tracking_uri)
        assert [v.version for v in db.search_model_versions(f"name='{model_name}'")] == ["1"]
        # The run itself is mirrored...
        assert aml.get_run(mirror_of(linked, run.info.run_id)["azureml_run_id"]).data.params == {"kind": "linear"}
        # ...its registered model is not.
        assert aml.search_registered_models(f"name='{model_name}'") == []
        with pytest.raises(mlflow.exceptions.MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
            aml.get_registered_model(model_name)


def test_artifacts_uploaded_through_signed_urls_are_mirrored(linked, tmp_path):
    """MLflow 2.x-3.3 clients write through credentials-for-write blob URLs, not the Files API."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    env = {"MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS": "true",  # as a 2.x client moves them
           "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(1024 * 1024)}  # Put Block x4 + Put Block List
    with tracking(linked, "databricks"), mock.patch.dict(os.environ, env):
        mlflow.set_experiment(exp_name(linked, "signed"))
        with mlflow.start_run() as run:
            mlflow.log_text("hello", "notes/hello.txt")  # one Put Blob
            mlflow.log_artifacts(str(tmp_path / "tree"), "tree")
            info = mlflow.sklearn.log_model(LinearRegression().fit(np.eye(2), [1.0, 2.0]), name="model")
        # MLflow 3.0-3.3 upload logged-model files through credentials-for-upload URLs: sent as they send them.
        ws = linked.databricks
        [cred] = requests.post(f"{ws.url}/api/2.0/mlflow/logged-models/{info.model_id}/artifacts/credentials-for-upload",
                               json={"paths": ["extra/signed.txt"]}, headers={"Authorization": f"Bearer {ws.token}"},
                               timeout=60).json()["credentials"]
        put = requests.put(cred["credential_info"]["signed_uri"], data=b"signed", timeout=60,
                           headers={"x-ms-blob-type": "BlockBlob"})
        assert put.status_code == 201, put.text
        wait_drained(linked)
        db, aml = MlflowClient("databricks", "databricks"), MlflowClient(linked.azureml.tracking_uri)
        aml_run = mirror_of(linked, run.info.run_id)["azureml_run_id"]
        files = all_files(db, run.info.run_id)
        assert {"notes/hello.txt", "tree/sub/b.bin"} <= set(files)
        assert all_files(aml, aml_run) == files
        for i, path in enumerate(files):
            want = read_artifact(db, run.info.run_id, path, tmp_path / f"db{i}")
            assert read_artifact(aml, aml_run, path, tmp_path / f"aml{i}") == want, path
        src = db.get_logged_model(info.model_id)
        a = Path(mlflow.artifacts.download_artifacts(artifact_uri=src.artifact_location, tracking_uri="databricks",
                                                     dst_path=str(tmp_path / "a")))
        [dst] = aml.search_logged_models(
            experiment_ids=[aml.get_run(aml_run).info.experiment_id],
            filter_string=f"tags.`emulator.source_model_id` = '{info.model_id}'")
        b = Path(mlflow.artifacts.download_artifacts(artifact_uri=dst.artifact_location,
                                                     tracking_uri=linked.azureml.tracking_uri,
                                                     dst_path=str(tmp_path / "b")))
        tree_a = {str(f.relative_to(a)): f.read_bytes() for f in a.rglob("*") if f.is_file()}
        tree_b = {str(f.relative_to(b)): f.read_bytes() for f in b.rglob("*") if f.is_file()}
        assert "MLmodel" in tree_a and tree_a["extra/signed.txt"] == b"signed" and tree_b == tree_a


def test_traces_logged_on_databricks_are_mirrored_with_their_spans(linked):
    """On tracking URI ``databricks`` the client uploads a trace's spans as a Files API file."""
    name = exp_name(linked, "traces")
    failed_before = mirror_state(linked)["failed"]
    with tracking(linked, "databricks"):
        mlflow.set_experiment(name)
        with mlflow.start_span("outer") as span:
            span.set_inputs({"x": 3})
            with mlflow.start_span("inner"):
                pass
        trace_id = mlflow.get_last_active_trace_id()
        mlflow.flush_trace_async_logging()
        wait_drained(linked)
        assert mirror_state(linked)["failed"] == failed_before
        aml_uri = linked.azureml.tracking_uri
        aml_exp = MlflowClient(aml_uri).get_experiment_by_name(name)
        assert aml_exp is not None
        mlflow.set_tracking_uri(aml_uri)
        [trace] = mlflow.search_traces(locations=[aml_exp.experiment_id], return_type="list")
        assert trace.info.trace_id == trace_id
        assert sorted(s.name for s in trace.data.spans) == ["inner", "outer"]
        assert [t.info.trace_id for t in mlflow.search_traces(
            locations=[aml_exp.experiment_id], filter_string="span.name = 'inner'", return_type="list")] == [trace_id]


def test_logged_model_is_mirrored_and_loads_from_azureml(linked, tmp_path):
    import numpy as np
    from sklearn.linear_model import LinearRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    model = LinearRegression().fit(X, [1.0, 2.0, 4.0])
    with tracking(linked, "databricks"):
        mlflow.set_experiment(exp_name(linked, "model"))
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(model, name="model", input_example=X[:1], params={"fit": "ols"})
            mlflow.log_metric("score", 0.9, model_id=info.model_id)
        wait_drained(linked)
        db = MlflowClient("databricks", "databricks")
        aml = MlflowClient(linked.azureml.tracking_uri, linked.azureml.tracking_uri)
        aml_run = mirror_of(linked, run.info.run_id)["azureml_run_id"]
        src = db.get_logged_model(info.model_id)
        [dst] = aml.search_logged_models(
            experiment_ids=[aml.get_run(aml_run).info.experiment_id],
            filter_string=f"tags.`emulator.source_model_id` = '{info.model_id}'")
        assert (dst.name, dst.status, dst.model_type, dst.source_run_id) == (src.name, src.status, src.model_type, aml_run)
        assert dst.params == src.params == {"fit": "ols"}
        assert {k: v for k, v in dst.tags.items() if k != "emulator.source_model_id"} == src.tags
        assert [(m.key, m.value, m.step) for m in dst.metrics] == [(m.key, m.value, m.step) for m in src.metrics]
        assert [o.model_id for o in aml.get_run(aml_run).outputs.model_outputs] == [dst.model_id]
        # Every file of the model, byte for byte.
        a = Path(mlflow.artifacts.download_artifacts(artifact_uri=src.artifact_location, tracking_uri="databricks",
                                                     dst_path=str(tmp_path / "a")))
        b = Path(mlflow.artifacts.download_artifacts(artifact_uri=dst.artifact_location,
                                                     tracking_uri=linked.azureml.tracking_uri,
                                                     dst_path=str(tmp_path / "b")))
        tree_a = {str(f.relative_to(a)): f.read_bytes() for f in a.rglob("*") if f.is_file()}
        tree_b = {str(f.relative_to(b)): f.read_bytes() for f in b.rglob("*") if f.is_file()}
        assert "MLmodel" in tree_a and tree_b == tree_a
        mlflow.set_tracking_uri(linked.azureml.tracking_uri)
        loaded = mlflow.pyfunc.load_model(f"runs:/{aml_run}/model")
        assert list(loaded.predict(X)) == list(model.predict(X))


def test_tracking_only_in_azureml_writes_nothing_to_databricks(linked):
    before = mirror_state(linked)
    name = f"aml-only-{uuid.uuid4().hex[:6]}"
    with tracking(linked, linked.azureml.tracking_uri):
        mlflow.set_experiment(name)
        with mlflow.start_run() as run:
            mlflow.log_param("p", 1)
            mlflow.log_metric("m", 2.0)
    after = mirror_state(linked)
    assert after["delivered"] == before["delivered"] and after["backlog"] == 0
    assert after["mirrored_runs"] == before["mirrored_runs"]
    with clients(linked) as (db, aml):
        assert aml.get_run(run.info.run_id).data.params == {"p": "1"}
        assert db.get_experiment_by_name(name) is None
        assert db.search_experiments(filter_string=f"name LIKE '%{name}%'") == []


def test_unlink_stops_mirroring_and_link_resumes(linked):
    name = exp_name(linked, "unlink")
    assert json.loads(cli(linked, "unlink").stdout)["linked"] is False
    try:
        assert json.loads(cli(linked, "status", "--json").stdout)["linked"] is False
        with tracking(linked, "databricks"):
            mlflow.set_experiment(name)
            with mlflow.start_run() as unlinked_run:
                mlflow.log_metric("m", 1.0)
    finally:
        assert json.loads(cli(linked, "link").stdout)["linked"] is True
    status = json.loads(cli(linked, "status", "--json").stdout)
    assert status["linked"] is True and status["mirror"]["linked"] is True
    resp = admin(linked, f"/__emulator/mirror/runs/{unlinked_run.info.run_id}")
    assert resp.status_code == 404 and "not created while the workspace was linked" in resp.json()["message"]
    # A run created before linking is not copied, even if it is written to after linking.
    with tracking(linked, "databricks"):
        MlflowClient().log_metric(unlinked_run.info.run_id, "late", 1.0)
        mlflow.set_experiment(name)
        with mlflow.start_run() as linked_run:
            mlflow.log_metric("m", 2.0)
    wait_drained(linked)
    aml = MlflowClient(linked.azureml.tracking_uri)
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": linked.azureml.token}):
        runs = aml.search_runs([aml.get_experiment_by_name(name).experiment_id])
    assert [r.data.tags["emulator.source_run_id"] for r in runs] == [linked_run.info.run_id]


def test_admin_routes_need_the_token(linked):
    url = linked.databricks.url
    assert requests.get(f"{url}/__emulator/mirror", timeout=60).status_code == 401
    assert requests.post(f"{url}/__emulator/unlink", timeout=60,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    resp = requests.post(f"{url}/__emulator/link", json={"azureml_url": "ftp://x", "azureml_token": "t"}, timeout=60,
                         headers={"Authorization": f"Bearer {linked.databricks.token}"})
    assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert mirror_state(linked)["linked"] is True  # a refused link leaves the link as it was


def test_concurrent_link_and_unlink_agree_with_link_json(linked):
    """16 link/unlink calls at one instant: no 5xx, and what the server says is what link.json says,
    before and after a restart (the link must not flip silently)."""
    db, aml = linked.databricks, linked.azureml
    db_dir = linked.state.role_dir("databricks")

    def call(i, barrier):
        barrier.wait()
        path = "/__emulator/link" if i % 2 == 0 else "/__emulator/unlink"
        return requests.post(f"{db.url}{path}", json={"azureml_url": aml.url, "azureml_token": aml.token},
                             headers={"Authorization": f"Bearer {db.token}"}, timeout=60)

    try:
        for _ in range(3):
            barrier = threading.Barrier(16)
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda i: call(i, barrier), range(16)))
            assert [a.status_code for a in answers if a.status_code >= 500] == [], answers[0].text
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
            on_disk = (db_dir / "link.json").exists()
            assert mirror_state(linked)["linked"] is on_disk
            assert not list(db_dir.glob("*.tmp")) and not list(db_dir.glob(".link-*"))
        linked.stop("databricks")
        start(linked, "databricks")
        assert mirror_state(linked)["linked"] is on_disk is (db_dir / "link.json").exists()
    finally:
        assert json.loads(cli(linked, "link").stdout)["linked"] is True


# -- redelivery is harmless -------------------------------------------------------------------


def test_redelivery_after_a_crash_creates_no_duplicates(linked, tmp_path):
    """The relay's crash window: Azure ML accepted, but the outbox did not record it yet.
    Delivering the same events again (with the id mapping lost too) must add nothing."""
    from emulator.services.mirror.aml_client import AzureMLClient
    from emulator.services.mirror.outbox import Outbox
    from emulator.services.mirror.relay import Relay

    with clients(linked) as (db, aml):
        exp_id = db.create_experiment(exp_name(linked, "redeliver"))
        run = db.create_run(exp_id, run_name="redeliver")
        run_id = run.info.run_id
        db.log_param(run_id, "p", "1")
        for step in range(5):
            db.log_metric(run_id, "m", step * 1.5, timestamp=1_700_000_000_000 + step, step=step)
        db.set_terminated(run_id)
        source = db.get_run(run_id)

        def fresh_outbox(name):
            box = Outbox(tmp_path / name)
            box.set_meta("target", {"url": linked.azureml.tracking_uri, "token": linked.azureml.token})
            captured = {"info": {"experiment_id": exp_id, "user_id": source.info.user_id,
                                 "start_time": source.info.start_time, "run_name": "redeliver"},
                        "data": {"tags": [{"key": k, "value": v} for k, v in source.data.tags.items()]}}
            box.record("run_create", {"run": captured}, run_id=run_id, new_run_experiment=exp_id)
            box.record("data", {"params": [{"key": "p", "value": "1"}]}, run_id=run_id)
            for m in db.get_metric_history(run_id, "m"):
                box.record("data", {"metrics": [{"key": "m", "value": m.value, "timestamp": m.timestamp,
                                                 "step": m.step}]}, run_id=run_id)
            box.record("run_update", {"status": "FINISHED", "end_time": source.info.end_time}, run_id=run_id)
            return box

        client = AzureMLClient(linked.azureml.tracking_uri, linked.azureml.token)
        for attempt in ("first.db", "second.db"):  # the second has no memory of the first
            box = fresh_outbox(attempt)
            relay = Relay(box, tmp_path / "artifacts", linked.databricks.url, lambda: db)
            relay.deliver(box.pending(), client, linked.azureml.tracking_uri)
            assert box.summary()["backlog"] == 0 and box.summary()["failed"] == 0
        aml_exp = aml.get_experiment_by_name(db.get_experiment(exp_id).name)
        mirrors = aml.search_runs([aml_exp.experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
        assert len(mirrors) == 1
        assert history(aml, mirrors[0].info.run_id, "m") == history(db, run_id, "m")
        assert len(aml.get_metric_history(mirrors[0].info.run_id, "m")) == 5


# -- outage ----------------------------------------------------------------------------------


def start(emu: Emulator, role: str) -> None:
    """Start a workspace again on its port. Right after a stop the kernel can hold the port for a
    moment (launcher.start refuses a taken port instead of waiting), so retry briefly."""
    from emulator.control.launcher import LaunchError

    deadline = time.monotonic() + 10
    while True:
        try:
            return emu.start(role)
        except LaunchError as exc:
            if "already in use" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def outage_emulator(tmp_path_factory):
    emu = linked_emulator(tmp_path_factory)
    yield emu
    emu.down()


def test_azureml_outage_and_restarts_lose_and_duplicate_nothing(outage_emulator, capsys):
    emu = outage_emulator
    name = exp_name(emu, "outage")
    with tracking(emu, "databricks"):
        mlflow.set_experiment(name)
        run = mlflow.start_run(run_name="outage")
        run_id = run.info.run_id
        mlflow.log_metric("loss", -1.0, step=0)
        wait_drained(emu)

        emu.stop("azureml")
        latencies = []

        def log_points(steps):
            for step in steps:
                started = time.perf_counter()
                mlflow.log_metric("loss", math.sin(step) + step / 1000, step=step)
                latencies.append(time.perf_counter() - started)

        log_points(range(1, 601))
        status = json.loads(cli(emu, "status", "--json").stdout)
        assert status["linked"] is True
        assert status["mirror"]["backlog"] >= 600
        assert "unreachable" in status["mirror"]["last_error"]

        # Durability: the Databricks workspace restarts with the backlog still undelivered.
        emu.stop("databricks")
        down = json.loads(cli(emu, "status", "--json").stdout)["mirror"]
        assert down["backlog"] >= 600 and down["source"].startswith("outbox file")
        start(emu, "databricks")
        log_points(range(601, 1001))
        mlflow.log_metrics({"loss": 99.0, "acc": 0.5}, step=1001)  # one log-batch too
        mlflow.end_run()
        backlog = mirror_state(emu)["backlog"]
        assert backlog >= 1002

    # Restart both; Azure ML comes back last.
    emu.stop("databricks")
    start(emu, "databricks")
    start(emu, "azureml")
    catch_up = wait_drained(emu, timeout=120)
    state = mirror_state(emu)
    assert state["failed"] == 0 and state["last_error"] is None

    with clients(emu) as (db, aml):
        dst = mirror_of(emu, run_id)["azureml_run_id"]
        src_points = history(db, run_id, "loss")
        dst_points = history(aml, dst, "loss")
        assert len(src_points) == 1002  # -1.0 at step 0, steps 1..1000, and 99.0 at step 1001
        assert Counter(dst_points) == Counter(src_points)
        assert history(aml, dst, "acc") == history(db, run_id, "acc")
        assert aml.get_run(dst).info.status == "FINISHED"
    latencies.sort()
    with capsys.disabled():
        print(f"\noutage: 1,000 log_metric calls answered by Databricks with Azure ML down: median "
              f"{latencies[len(latencies) // 2] * 1000:.1f} ms, p99 {latencies[int(len(latencies) * .99)] * 1000:.1f} ms; "
              f"backlog of {backlog} events delivered {catch_up:.2f} s after Azure ML was healthy again")
    assert latencies[len(latencies) // 2] < 0.5


# -- crash consistency: a write stored in Databricks whose event was never recorded ----------


def assert_mirror_identical(emu: Emulator, run_id: str) -> None:
    """The Databricks run and its Azure ML mirror hold the same params, tags, status and every metric point."""
    with clients(emu) as (db, aml):
        src = db.get_run(run_id)
        dst = aml.get_run(mirror_of(emu, run_id)["azureml_run_id"])
        assert dst.data.params == src.data.params
        assert {k: v for k, v in dst.data.tags.items() if k not in MIRROR_TAGS} == src.data.tags
        assert (dst.info.status, dst.info.end_time, dst.info.run_name) == (
            src.info.status, src.info.end_time, src.info.run_name)
        assert set(dst.data.metrics) == set(src.data.metrics)
        for key in src.data.metrics:
            assert Counter(history(aml, dst.info.run_id, key)) == Counter(history(db, run_id, key)), key


def kill_databricks(emu: Emulator) -> None:
    """kill -9: no clean shutdown, no chance to finish a request."""
    from emulator.control import launcher

    pid = launcher.running(emu.state, "databricks").pid
    os.kill(pid, 9)
    # Forked by emulator.control.prefork, so not this process's child: wait until it is gone.
    assert launcher.wait_exited(pid, 120), f"pid {pid} still alive 120 s after SIGKILL"


@pytest.fixture(scope="module")
def crash_emulator(tmp_path_factory):
    emu = linked_emulator(tmp_path_factory)
    yield emu
    emu.down()


def test_writes_stored_but_never_recorded_are_mirrored_at_restart(crash_emulator):
    """Exactly what a kill between MLflow's store commit and the outbox commit leaves: rows in the
    Databricks store that no outbox event describes. The next start must queue them."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    emu = crash_emulator
    with clients(emu) as (db, _):
        exp_id = db.create_experiment(exp_name(emu, "unrecorded"))
        run_id = db.create_run(exp_id, run_name="crash", tags={"keep": "1", "doomed": "x", "edit": "old"}).info.run_id
        db.log_param(run_id, "recorded", "yes")
        db.log_metric(run_id, "loss", 1.0, timestamp=1_700_000_000_000, step=0)
        wait_drained(emu)
    emu.stop("databricks")
    # The crash window, reproduced without a crash: the store has the writes, the outbox not.
    store = SqlAlchemyStore(f"sqlite:///{emu.state.role_dir('databricks') / 'mlflow.db'}",
                            str(emu.state.role_dir("databricks") / "artifacts"))
    store.log_batch(run_id, params=[Param("lost_param", "42")], tags=[RunTag("edit", "new"), RunTag("extra", "y")],
                    metrics=[Metric("loss", 0.5 - i / 100, 1_700_000_000_001 + i, i + 1) for i in range(30)]
                    + [Metric("acc", float("nan"), 1_700_000_000_000, 0)])
    store.delete_tag(run_id, "doomed")
    store.update_run_info(run_id, mlflow.entities.RunStatus.FINISHED, 1_700_000_099_000, "renamed")
    # A run whose runs/create was committed but never recorded, with writes of its own.
    lost_run = store.create_run(exp_id, emu.databricks.user, 1_700_000_000_000, [RunTag("born", "in the window")],
                                "lost-create").info.run_id
    store.log_batch(lost_run, metrics=[Metric("m", 1.0, 1_700_000_000_000, 0)], params=[Param("p", "1")], tags=[])
    store.engine.dispose()
    start(emu, "databricks")
    wait_drained(emu)
    assert_mirror_identical(emu, run_id)
    assert_mirror_identical(emu, lost_run)
    with clients(emu) as (db, _):
        assert len(db.get_metric_history(run_id, "loss")) == 31 and db.get_run(run_id).data.params["lost_param"] == "42"
    assert mirror_state(emu)["failed"] == 0
    # A clean restart finds nothing to queue: the ledger now agrees with the store.
    delivered = mirror_state(emu)["delivered"]
    emu.stop("databricks")
    start(emu, "databricks")
    assert mirror_state(emu)["delivered"] == delivered and mirror_state(emu)["backlog"] == 0
    # A run created while unlinked is not adopted later, whatever restarts follow.
    assert json.loads(cli(emu, "unlink").stdout)["linked"] is False
    emu.stop("databricks")
    store = SqlAlchemyStore(f"sqlite:///{emu.state.role_dir('databricks') / 'mlflow.db'}",
                            str(emu.state.role_dir("databricks") / "artifacts"))
    unlinked_run = store.create_run(exp_id, emu.databricks.user, 1_700_000_000_000, [], "unlinked").info.run_id
    store.engine.dispose()
    start(emu, "databricks")
    assert json.loads(cli(emu, "link").stdout)["linked"] is True
    emu.stop("databricks")
    start(emu, "databricks")
    wait_drained(emu)
    resp = admin(emu, f"/__emulator/mirror/runs/{unlinked_run}")
    assert resp.status_code == 404 and "not created while the workspace was linked" in resp.json()["message"]


def test_kill_9_in_a_loop_while_a_client_logs_loses_nothing(crash_emulator):
    """A client that does not retry logs metrics, params and tags with raw HTTP while the Databricks
    server is killed (-9) several times; after the restarts the mirror must equal the source.
    (Whether a kill lands between the store commit and the outbox commit is chance: before the
    start-up reconciliation this lost writes in about a third of the runs; the test above
    reproduces that window every time.)"""
    import random

    emu = crash_emulator
    with clients(emu) as (db, _):
        exp_id = db.create_experiment(exp_name(emu, "kill9"))
        run_id = db.create_run(exp_id, run_name="kill9").info.run_id
    counter = iter(range(10**9))
    lock = threading.Lock()

    def client(stop: threading.Event) -> None:
        ws = emu.databricks
        base = f"{ws.url}/api/2.0/mlflow/runs"
        headers = {"Authorization": f"Bearer {ws.token}"}
        while not stop.is_set():
            with lock:
                i = next(counter)
            calls = [
                ("log-metric", {"run_id": run_id, "key": f"m{i % 3}", "value": i / 7, "step": i,
                                "timestamp": 1_700_000_000_000 + i}),
                # keys cycle below Azure ML's 200 params per run (past it the mirror rightly sets the
                # write aside); re-logging a param with its own value is allowed on both sides
                ("log-parameter", {"run_id": run_id, "key": f"p{i % 150}", "value": str(i % 150)}),
                ("set-tag", {"run_id": run_id, "key": f"t{i % 5}", "value": f"v{i}"}),
            ]
            for path, body in calls:
                try:  # no retry: a write that got no answer is simply not repeated
                    requests.post(f"{base}/{path}", json=body, headers=headers, timeout=60)
                except requests.RequestException:
                    pass

    for _ in range(4):
        stop = threading.Event()
        threads = [threading.Thread(target=client, args=(stop,)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.5, 1.5))
        kill_databricks(emu)
        stop.set()
        for t in threads:
            t.join()
        start(emu, "databricks")
    wait_drained(emu, timeout=120)
    with clients(emu) as (db, _):
        logged = db.get_run(run_id).data
        assert len(logged.params) > 10, "the client barely logged anything: the test proves nothing"
    assert_mirror_identical(emu, run_id)
    assert mirror_state(emu)["failed"] == 0


def test_delivery_marks_skip_the_fsync_records_keep_it(tmp_path):
    """A delivery mark is committed with synchronous=NORMAL (its loss only re-sends an event,
    idempotently); every record is committed with synchronous=FULL, before and after a mark."""
    from emulator.services.mirror.outbox import Outbox

    box = Outbox(tmp_path / "outbox.db")
    statements: list[str] = []
    box._db.set_trace_callback(statements.append)
    box.record("run_create", {"run": {"info": {"status": "RUNNING"}}}, run_id="r", new_run_experiment="1")
    box.record("data", {"metrics": [{"key": "m", "value": 1, "step": 1, "timestamp": 1}]}, run_id="r")
    box.delivered([e["seq"] for e in box.pending()])
    box.record("data", {"metrics": [{"key": "m", "value": 2, "step": 2, "timestamp": 2}]}, run_id="r")
    box._db.set_trace_callback(None)

    mode, modes = "FULL", []  # the synchronous setting in force at each COMMIT, with what it committed
    for sql in statements:
        if sql.startswith("PRAGMA synchronous="):
            mode = sql.split("=", 1)[1]
        elif sql == "COMMIT":
            modes.append(mode)
    normal = statements.index("PRAGMA synchronous=NORMAL")
    deletes = [i for i, sql in enumerate(statements) if sql.startswith("DELETE FROM events")]
    assert deletes and all(normal < i < statements.index("COMMIT", normal) for i in deletes)
    assert modes == ["FULL", "FULL", "NORMAL", "FULL"], statements
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    assert [e["payload"]["metrics"][0]["step"] for e in box.pending()] == [2]


def test_concurrent_records_are_each_committed_before_returning(tmp_path):
    """Group commit: writes arriving together share a commit, yet every record() returns only once
    its event is on disk (read back through another connection), in one order, none lost; a write
    that cannot be stored fails alone."""
    import sqlite3

    from emulator.services.mirror.outbox import Outbox

    box = Outbox(tmp_path / "outbox.db")
    box.record("run_create", {"run": {"info": {"status": "RUNNING"}}}, run_id="r", new_run_experiment="1")
    seen_on_disk, errors = [], []
    barrier = threading.Barrier(32)

    def write(i: int) -> None:
        barrier.wait()
        payload = {"metrics": [{"key": "m", "value": i, "step": i, "timestamp": i}]}
        if i == 7:
            payload = {"bad": {1, 2}}  # not JSON: this write alone must fail
        try:
            assert box.record("data", payload, run_id="r") is True
        except TypeError as exc:
            errors.append((i, exc))
            return
        with sqlite3.connect(tmp_path / "outbox.db") as other:
            rows = other.execute("SELECT payload FROM events WHERE kind='data'").fetchall()
        seen_on_disk.append(any(json.loads(p).get("metrics", [{}])[0].get("step") == i for (p,) in rows))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [i for i, _ in errors] == [7]
    assert len(seen_on_disk) == 31 and all(seen_on_disk)
    events = box.pending()
    steps = sorted(e["payload"]["metrics"][0]["step"] for e in events if e["kind"] == "data")
    assert steps == [i for i in range(32) if i != 7]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    summary = box.summary()
    assert summary["recorded_writes"] == 33 and 2 <= summary["recorded_commits"] <= 33  # + the run_create
    # The ledger counted exactly the points of the events that were kept.
    assert box.recorded("r")["metrics"]["m"][0] == 31


def test_params_past_azure_mls_limit_are_set_aside_not_retried_forever(linked):
    """Azure ML holds at most 200 params per run (Azure/azure-sdk-for-python#35685) and refuses the
    rest with a body that names none of them: the mirror delivers 200 and sets the others aside
    instead of retrying them as a proxy's "Bad request"."""
    with clients(linked) as (db, aml):
        exp_id = db.create_experiment(exp_name(linked, "param-limit"))
        run_id = db.create_run(exp_id).info.run_id
        failed_before = mirror_state(linked)["failed"]
        mlflow.log_params({f"p{i:03d}": str(i) for i in range(210)}, run_id=run_id)
        db.log_metric(run_id, "after", 1.0)  # later writes of the run still flow
        wait_drained(linked)
        state = mirror_state(linked)
        assert state["failed"] > failed_before
        assert "FieldName=Parameters, Limit=200" in state["recent_failures"][0]["error"]
        mirrored = aml.get_run(mirror_of(linked, run_id)["azureml_run_id"])
        assert len(mirrored.data.params) == 200
        assert mirrored.data.metrics["after"] == 1.0
        assert len(db.get_run(run_id).data.params) == 210  # Databricks keeps them all
