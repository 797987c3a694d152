"""Azure ML experiment identity (issue 30 item 6): experiment and run ids are GUIDs, a stale integer id
from a local store fails loudly, the plugin's artifact URIs name the experiment. Real clients: MLflow 3.17.2 here,
azureml-mlflow (+ MLflow 3.15) in its own venv."""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from harness import mlflow_uris
from tests.test_azureml_real_clients import (  # noqa: F401
    client_python,
    run_client,
    seed_identity_emulator,
)

RUN_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _is_guid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
    except ValueError:
        return False


@pytest.fixture
def aml(emulator, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", emulator.azureml.token)
    return emulator.azureml


def test_experiment_and_run_ids_seen_by_mlflow_are_guids(aml, tmp_path):
    client = MlflowClient(aml.tracking_uri)
    exp_id = client.create_experiment("identity-guids")
    assert _is_guid(exp_id), exp_id
    assert _is_guid(client.get_experiment_by_name("Default").experiment_id)
    assert client.get_experiment(exp_id).artifact_location == f"mlflow-artifacts:/{exp_id}"

    run = client.create_run(exp_id)
    assert run.info.experiment_id == exp_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run.info.run_id}/artifacts"
    (tmp_path / "a.txt").write_text("through the GUID")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"), "docs")
    client.log_metric(run.info.run_id, "m", 1.0)
    client.set_terminated(run.info.run_id)

    found = client.search_runs([exp_id])
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert client.get_run(run.info.run_id).info.experiment_id == exp_id
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="docs/a.txt",
                                                tracking_uri=aml.tracking_uri, dst_path=str(tmp_path / "dl"))
    assert Path(local).read_text() == "through the GUID"
    assert [e.experiment_id for e in client.search_experiments(filter_string="name = 'identity-guids'")] == [exp_id]


def test_stale_local_experiment_id_fails_loudly(aml, tmp_path):
    """The seed's cell order: set_experiment on the local default store, then set_tracking_uri(Azure ML).
    Azure ML holds an experiment that the store numbers 1 too: the run must not land there."""
    aml_client = MlflowClient(aml.tracking_uri)
    unrelated = aml_client.create_experiment("identity-unrelated")
    runs_before = aml_client.search_runs([unrelated])

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'local.db'}")
    local = mlflow.set_experiment("identity-local")
    assert local.experiment_id == "1"
    mlflow.set_tracking_uri(aml.tracking_uri)
    with pytest.raises(MlflowException) as refused:
        mlflow.start_run()
    assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "id=1" in refused.value.message
    assert aml_client.search_runs([unrelated]) == runs_before
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        aml_client.get_experiment("1")


def test_unknown_ids_are_refused_after_the_token_check(aml):
    base = aml.tracking_uri + "/api/2.0/mlflow"
    made_up = str(uuid.uuid4())
    anonymous = requests.get(f"{base}/experiments/get", params={"experiment_id": made_up}, timeout=60)
    assert anonymous.status_code == 401
    auth = {"Authorization": f"Bearer {aml.token}"}
    for bad in (made_up, "1", "00"):
        resp = requests.post(f"{base}/runs/create", json={"experiment_id": bad}, headers=auth, timeout=60)
        assert resp.status_code == 404, resp.text
        assert resp.json() == {"error_code": "RESOURCE_DOES_NOT_EXIST",
                               "message": f"No Experiment with id={bad} exists"}
    # "0": what MLflow sends for start_run() with no experiment set -> the Default experiment
    made = requests.post(f"{base}/runs/create", json={"experiment_id": "0"}, headers=auth, timeout=60)
    default = requests.get(f"{base}/experiments/get-by-name", params={"experiment_name": "Default"},
                           headers=auth, timeout=60).json()["experiment"]["experiment_id"]
    assert made.status_code == 200 and made.json()["run"]["info"]["experiment_id"] == default
    # a proxied artifact path under a store integer is not served either
    resp = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/0/x", headers=auth, timeout=60)
    assert resp.status_code == 404 and resp.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_databricks_keeps_integer_ids(emulator, monkeypatch):
    ws = emulator.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient("databricks")
    exp_id = client.create_experiment("/Users/someone@example.com/identity-ints")
    assert exp_id.isdigit()
    run_id = client.create_run(exp_id).info.run_id
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), run_id  # real Databricks: MLflow's 32 hex digits


def test_run_ids_are_hyphenated_guids(aml, tmp_path):
    """Azure ML names interactive MLflow runs by hyphenated GUIDs (``Run with id=2bf891a5-...``):
    every call of the run's life takes that form back."""
    with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):
        mlflow.set_experiment("identity-run-guids")
        with mlflow.start_run() as parent, mlflow.start_run(nested=True) as child:
            mlflow.log_metric("loss", 0.5)
            mlflow.log_param("p", "1")
            (tmp_path / "b.txt").write_text("run guid bytes")
            mlflow.log_artifact(str(tmp_path / "b.txt"), "files")
            mlflow.pyfunc.log_model(name="model", python_model=_Echo())
        run_id = child.info.run_id
        assert RUN_GUID.match(run_id) and RUN_GUID.match(parent.info.run_id), (run_id, parent.info.run_id)
        exp_id = child.info.experiment_id
        assert child.info.artifact_uri == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"

        client = MlflowClient()
        got = client.get_run(run_id)
        assert got.info.run_id == run_id and got.data.metrics == {"loss": 0.5} and got.data.params == {"p": "1"}
        assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5]
        for flt in (f"attributes.run_id = '{run_id}'", f"run_id IN ('{run_id}', '{parent.info.run_id}')",
                    f"tags.mlflow.parentRunId = '{parent.info.run_id}'"):
            found = {r.info.run_id for r in client.search_runs([exp_id], filter_string=flt)}
            assert run_id in found and found <= {run_id, parent.info.run_id}, (flt, found)
        # the store's own 32-hex form is still taken (ids kept from before)
        assert client.get_run(uuid.UUID(run_id).hex).info.run_id == run_id

        assert [f.path for f in client.list_artifacts(run_id, "files")] == ["files/b.txt"]
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="files/b.txt",
                                                    dst_path=str(tmp_path / "dl"))
        assert Path(local).read_text() == "run guid bytes"

        version = mlflow.register_model(f"runs:/{run_id}/model", "identity-run-guid-model")
        assert version.run_id == run_id
        assert client.get_model_version("identity-run-guid-model", version.version).run_id == run_id
        found = client.search_model_versions(f"run_id = '{run_id}'")
        assert [(v.name, v.run_id) for v in found] == [("identity-run-guid-model", run_id)]
        loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        assert list(loaded.predict(["x"])) == ["x"]

        # an unknown run is named as it was sent, as the service does (zenml-io/zenml#4207)
        missing = str(uuid.uuid4())
        with pytest.raises(MlflowException) as refused:
            client.get_run(missing)
        assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        assert missing in refused.value.message


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: list[str], params=None) -> list[str]:
        return list(model_input)


PLUGIN_SCRIPT = textwrap.dedent('''
    import json
    import mlflow
    from azureml.core import Workspace

    ws = Workspace.get(name='workspace_name', subscription_id='subscription_id',
                       resource_group='resource_group_name')
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    exp = mlflow.set_experiment("identity-plugin")
    with open("note.txt", "w") as fh:
        fh.write("plugin bytes")
    with mlflow.start_run() as run:
        mlflow.log_artifact("note.txt", artifact_path="notes")
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="notes/note.txt")
    mlflow.set_experiment("/Users/someone@example.com/folder/identity plugin 2")
    with mlflow.start_run() as run2:
        mlflow.log_artifact("note.txt")
    local2 = mlflow.artifacts.download_artifacts(run_id=run2.info.run_id, artifact_path="note.txt")
    try:
        mlflow.start_run(experiment_id="1")
        stale = "accepted"
    except mlflow.exceptions.MlflowException as exc:
        stale = exc.error_code
    print("RESULT " + json.dumps({"experiment_id": exp.experiment_id, "run_id": run.info.run_id,
                                  "run_experiment_id": run.info.experiment_id,
                                  "artifact_uri": run.info.artifact_uri, "content": open(local).read(),
                                  "stale": stale, "artifact_uri2": run2.info.artifact_uri,
                                  "run_id2": run2.info.run_id, "content2": open(local2).read()}))
''')


@pytest.fixture(scope="module")
def seed_emulator(tmp_path_factory):
    yield from seed_identity_emulator(tmp_path_factory, "aml-identity")


def test_plugin_sees_guids_and_its_artifact_uris_round_trip(seed_emulator, client_python, tmp_path):  # noqa: F811
    info = seed_emulator.status()["azureml"]
    result = run_client(client_python, PLUGIN_SCRIPT, info["client_env"], tmp_path)
    exp_id = result["experiment_id"]
    assert _is_guid(exp_id) and result["run_experiment_id"] == exp_id
    assert RUN_GUID.match(result["run_id"]) and RUN_GUID.match(result["run_id2"]), result
    # the service's form names the experiment (mlflow/mlflow#7806); a path-style name by its last segment
    assert result["artifact_uri"] == f"azureml://experiments/identity-plugin/runs/{result['run_id']}/artifacts"
    assert result["artifact_uri2"] == f"azureml://experiments/identity%20plugin%202/runs/{result['run_id2']}/artifacts"
    assert result["content2"] == "plugin bytes"
    assert result["content"] == "plugin bytes"
    assert result["stale"] == "RESOURCE_DOES_NOT_EXIST"


def test_bodies_the_id_view_cannot_read_get_mlflows_4xx(aml):
    """Deeply nested or broken JSON is left to MLflow's own parsing: a 4xx, never a 5xx."""
    base = aml.tracking_uri + "/api/2.0/mlflow"
    auth = {"Authorization": f"Bearer {aml.token}", "Content-Type": "application/json"}
    for body in ("[" * 200_000 + "]" * 200_000, '{"experiment_id": ', '{"experiment_id": {"a": 1}}'):
        resp = requests.post(f"{base}/runs/create", data=body, headers=auth, timeout=60)
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
        assert "error_code" in resp.json()


def test_a_guid_from_before_a_reset_names_nothing_after_it(aml):
    """A reset numbers experiments from 1 again; the old GUID must not reach the new experiment 1."""
    client = MlflowClient(aml.tracking_uri)
    before = client.create_experiment("identity-before-reset")
    answer = requests.post(f"{aml.url}/__emulator/reset", json={},
                           headers={"Authorization": f"Bearer {aml.token}"}, timeout=120)
    assert answer.status_code == 200, answer.text
    after = client.create_experiment("identity-after-reset")
    assert after != before
    with pytest.raises(MlflowException) as refused:
        client.create_run(before)
    assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [r.info.experiment_id for r in client.search_runs([after])] == []
