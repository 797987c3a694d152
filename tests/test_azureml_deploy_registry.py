"""Registering in Azure ML what was tracked in the linked Databricks workspace (issue 13, item 1).

The real MLflow client: tracking URI ``databricks``, registry URI = the Azure ML tracking URI
(``MLFLOW_TRACKING_TOKEN`` for it). Before the fix the Azure ML server answered
``model-versions/create`` with a 500 (``Logged model with ID 'm-...' not found`` in its log),
retried by the client for minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from unittest import mock

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

from harness.workspaces import Emulator

MIRROR_WAIT_S = 6  # the server's bounded wait for the mirror (EMULATOR_AZUREML_MIRROR_WAIT_S)
X = pd.DataFrame({"a": np.linspace(0, 1, 20), "b": np.linspace(1, 3, 20)})
Y = 2 * X["a"] - X["b"] + 0.5


def _cli(emu: Emulator, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args, "--state-dir", str(emu.state.root)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 3), proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    with mock.patch.dict(os.environ, {"EMULATOR_AZUREML_MIRROR_WAIT_S": str(MIRROR_WAIT_S)}):
        emu = Emulator(tmp_path_factory.mktemp("deploy-registry")).up()
    yield emu
    emu.down()


@pytest.fixture
def dbx_tracking_aml_registry(emu):
    env = {**emu.databricks.env, "MLFLOW_TRACKING_TOKEN": emu.azureml.token}
    with mock.patch.dict(os.environ, env):
        mlflow.set_tracking_uri("databricks")
        mlflow.set_registry_uri(emu.azureml.tracking_uri)
        try:
            yield MlflowClient("databricks", emu.azureml.tracking_uri)
        finally:
            if mlflow.active_run():
                mlflow.end_run()
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def _experiment(emu: Emulator, label: str) -> str:
    return f"/Users/{emu.databricks.user}/deploy-{label}-{uuid.uuid4().hex[:6]}"


def _log(emu: Emulator, label: str, coef: float = 1.0, registered_model_name: str | None = None):
    mlflow.set_experiment(_experiment(emu, label))
    model = LinearRegression().fit(X, Y * coef)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                        registered_model_name=registered_model_name)
    return run.info.run_id, info, model


def _wait_drained(emu: Emulator, timeout: float = 120) -> None:
    db = emu.databricks
    deadline = time.monotonic() + timeout
    while True:
        state = requests.get(f"{db.url}/__emulator/mirror", headers={"Authorization": f"Bearer {db.token}"},
                             timeout=60).json()
        if state["backlog"] == 0:
            return
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def _raw_create(emu: Emulator, body: dict) -> requests.Response:
    aml = emu.azureml
    return requests.post(f"{aml.tracking_uri}/api/2.0/mlflow/model-versions/create", json=body,
                         headers={"Authorization": f"Bearer {aml.token}"}, timeout=60)


def test_not_linked_is_a_clear_404_at_once(emu, dbx_tracking_aml_registry):
    run_id, info, _ = _log(emu, "unlinked")
    started = time.monotonic()
    with pytest.raises(MlflowException) as err:
        mlflow.register_model(f"runs:/{run_id}/model", f"unlinked-{uuid.uuid4().hex[:6]}")
    elapsed = time.monotonic() - started
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert info.model_id in str(err.value) and "no Databricks workspace is linked" in str(err.value)
    assert elapsed < 20, f"{elapsed:.1f} s: the client retried (a 5xx?)"
    # Raw: the same answer, as a 404 in MLflow's shape (never a 5xx).
    resp = _raw_create(emu, {"name": "x", "source": f"models:/{info.model_id}", "model_id": info.model_id})
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", resp.text


@pytest.fixture(scope="module")
def before_link(emu):
    """A model logged in Databricks before the workspaces were linked (never mirrored)."""
    env = {**emu.databricks.env}
    with mock.patch.dict(os.environ, env):
        mlflow.set_tracking_uri("databricks")
        try:
            run_id, info, _ = _log(emu, "before-link")
        finally:
            mlflow.set_tracking_uri(None)
    return run_id, info


@pytest.fixture(scope="module")
def linked(emu, before_link):
    assert _cli(emu, "link")["linked"] is True
    return emu


def test_register_v1_right_after_logging_then_v2_long_after(linked, dbx_tracking_aml_registry):
    emu, client = linked, dbx_tracking_aml_registry
    name = f"dbx-tracked-{uuid.uuid4().hex[:6]}"
    # v1: log_model(..., registered_model_name) registers in Azure ML right after logging (mirror lag).
    run1, info1, model1 = _log(emu, "v1", coef=1.0, registered_model_name=name)
    aml = MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)
    v1 = aml.get_model_version(name, "1")
    assert v1.status == "READY"
    # v2: logged, mirrored completely, registered later through register_model(runs:/...).
    run2, info2, model2 = _log(emu, "v2", coef=3.0)
    _wait_drained(emu)
    time.sleep(1)
    mv2 = mlflow.register_model(f"runs:/{run2}/model", name)
    assert mv2.version == "2"
    # Lineage points at the Azure ML copies: the mirrored run and logged model.
    v2 = aml.get_model_version(name, "2")
    mirrored_run = aml.get_run(v2.run_id)
    assert mirrored_run.data.tags["emulator.source_run_id"] == run2
    # (the SQL registry keeps the logged model in the source, models:/<id>, not in model_id)
    assert v2.source.startswith("models:/m-") and v2.source != f"models:/{info2.model_id}"
    assert aml.get_logged_model(v2.source.split("/")[-1]).tags["emulator.source_model_id"] == info2.model_id
    assert aml.get_run(v1.run_id).data.tags["emulator.source_run_id"] == run1
    # models:/N/v loads from Azure ML (tracking and registry both Azure ML, as a deployment does).
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": emu.azureml.token}):
        mlflow.set_tracking_uri(emu.azureml.tracking_uri)
        try:
            for version, model in (("1", model1), ("2", model2)):
                loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
                np.testing.assert_allclose(np.ravel(loaded.predict(X)), model.predict(X))
        finally:
            mlflow.set_tracking_uri("databricks")


def test_models_id_and_dbfs_sources_resolve_through_the_mirror(linked, dbx_tracking_aml_registry):
    emu, client = linked, dbx_tracking_aml_registry
    name = f"dbx-sources-{uuid.uuid4().hex[:6]}"
    run_id, info, _ = _log(emu, "sources")
    _wait_drained(emu)
    mlflow.register_model(f"models:/{info.model_id}", name)  # MLflow 3's logged-model URI
    dbx_model = MlflowClient("databricks").get_logged_model(info.model_id)
    assert dbx_model.artifact_location.startswith("dbfs:/databricks/mlflow-tracking/")
    # The Databricks artifact location as source (what the workspace registry itself stores).
    mv = client.create_model_version(name, dbx_model.artifact_location, run_id=run_id)
    assert mv.version == "2"
    aml = MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)
    for version in ("1", "2"):
        got = aml.get_model_version(name, version)
        assert aml.get_logged_model(got.source.split("/")[-1]).tags["emulator.source_model_id"] == info.model_id


def test_run_artifact_model_mlflow2_layout_resolves_through_the_mirror(linked, dbx_tracking_aml_registry, tmp_path):
    """A model saved as run artifacts (MLflow 2 layout): the client sends the run's dbfs:/ location."""
    emu = linked
    model = LinearRegression().fit(X, Y * 5)
    mlflow.sklearn.save_model(model, tmp_path / "model", input_example=X.head(2))
    mlflow.set_experiment(_experiment(emu, "mlflow2"))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tmp_path / "model"), "model")
    _wait_drained(emu)
    name = f"mlflow2-{uuid.uuid4().hex[:6]}"
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    assert mv.version == "1"
    aml = MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)
    got = aml.get_model_version(name, "1")
    assert got.source.startswith("mlflow-artifacts:/") and got.source.endswith("/artifacts/model")
    assert aml.get_run(got.run_id).data.tags["emulator.source_run_id"] == run.info.run_id
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": emu.azureml.token}):
        mlflow.set_tracking_uri(emu.azureml.tracking_uri)
        try:
            loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
            np.testing.assert_allclose(np.ravel(loaded.predict(X)), model.predict(X))
        finally:
            mlflow.set_tracking_uri("databricks")


def test_not_mirrored_model_is_a_404_after_a_bounded_wait(linked, before_link, dbx_tracking_aml_registry):
    run_id, info = before_link
    started = time.monotonic()
    with pytest.raises(MlflowException) as err:
        mlflow.register_model(f"runs:/{run_id}/model", f"before-link-{uuid.uuid4().hex[:6]}")
    elapsed = time.monotonic() - started
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "not mirrored" in str(err.value) and info.model_id in str(err.value)
    assert MIRROR_WAIT_S - 1 <= elapsed < MIRROR_WAIT_S + 30, elapsed


def test_bad_dbfs_source_is_a_400(linked):
    resp = _raw_create(linked, {"name": "x", "source": "dbfs:/FileStore/somewhere/model"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "dbfs:/FileStore/somewhere/model" in resp.json()["message"]


def test_azureml_tracked_models_register_as_before(linked):
    """The harmless variant (tracking and registry both Azure ML) is untouched."""
    aml = linked.azureml
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        mlflow.set_tracking_uri(aml.tracking_uri)
        mlflow.set_registry_uri(aml.tracking_uri)
        try:
            mlflow.set_experiment(f"aml-only-{uuid.uuid4().hex[:6]}")
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(LinearRegression().fit(X, Y), name="model",
                                                registered_model_name="aml-only-model")
            assert str(info.registered_model_version) == "1"
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def test_unknown_run_is_run_not_found_at_once(linked):
    """A run neither workspace holds, registered with Azure ML tracking (as MLflow's own registry
    tests do): Azure ML's answer for an unknown run, at once, not the Databricks-mirror 404."""
    aml = linked.azureml
    client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    name = f"unknown-run-{uuid.uuid4().hex[:6]}"
    run_id = uuid.uuid4().hex
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        client.create_registered_model(name)
        started = time.monotonic()
        with pytest.raises(MlflowException) as err:
            client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
        elapsed = time.monotonic() - started
        assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert str(err.value) == f"RESOURCE_DOES_NOT_EXIST: Run with id={run_id} not found"
        assert elapsed < MIRROR_WAIT_S - 1, f"{elapsed:.1f} s: it waited for the mirror"
        assert client.search_model_versions(f"name = '{name}'") == []
    resp = _raw_create(linked, {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    assert resp.status_code == 404, resp.text
    assert resp.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run with id={run_id} not found"}


# -- item 2: model assets = registry -----------------------------------------------------------


def _arm(emu: Emulator, path: str, method: str = "GET", api_version: str | None = "2025-12-01", token=True, **kw):
    aml = emu.azureml
    scope = (f"/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}"
             f"/providers/Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")
    params = {"api-version": api_version} if api_version else {}
    headers = {"Authorization": f"Bearer {aml.token}"} if token else {}
    return requests.request(method, f"{aml.url}{scope}{path}", params=params, headers=headers, timeout=30, **kw)


def test_arm_model_assets_are_the_registry(linked, dbx_tracking_aml_registry):
    emu = linked
    name = f"asset-{uuid.uuid4().hex[:6]}"
    _log(emu, "asset1", registered_model_name=name)
    _log(emu, "asset2", coef=2.0, registered_model_name=name)

    listed = _arm(emu, "/models")
    assert listed.status_code == 200, listed.text
    names = {m["name"] for m in listed.json()["value"]}
    assert name in names

    got = _arm(emu, f"/models/{name}").json()
    assert got["type"] == "Microsoft.MachineLearningServices/workspaces/models"
    assert got["id"].endswith(f"/workspaces/{emu.azureml.workspace_name}/models/{name}")
    assert got["properties"]["latestVersion"] == "2" and got["properties"]["nextVersion"] == "3"

    versions = _arm(emu, f"/models/{name}/versions").json()["value"]
    assert [v["name"] for v in versions] == ["1", "2"]
    v2 = _arm(emu, f"/models/{name}/versions/2").json()
    props = v2["properties"]
    assert props["modelType"] == "mlflow_model" and props["provisioningState"] == "Succeeded"
    assert {"python_function", "sklearn"} <= set(props["flavors"]), props["flavors"]
    aml = MlflowClient(emu.azureml.tracking_uri, emu.azureml.tracking_uri)
    assert props["jobName"] == aml.get_model_version(name, "2").run_id

    # What a user gets wrong, in ARM's shape.
    missing = _arm(emu, f"/models/{name}/versions/9")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    assert _arm(emu, "/models/no-such-model").status_code == 404
    assert _arm(emu, f"/models/{name}", api_version=None).json()["error"]["code"] == "MissingApiVersionParameter"
    put = _arm(emu, f"/models/{name}", method="PUT", json={"properties": {}})
    assert put.status_code == 405 and "registered through MLflow" in put.json()["error"]["message"]
    # A version PUT needs a datastore upload's modelUri (tests/test_azureml_datastores.py); without one, 400.
    put = _arm(emu, f"/models/{name}/versions/3", method="PUT", json={"properties": {}})
    assert put.status_code == 400 and "modelUri" in put.json()["error"]["message"]
    assert _arm(emu, "/models", token=False).status_code == 401
