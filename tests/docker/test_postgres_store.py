"""`emulator up --docker --store postgres`: both workspaces' MLflow stores on the Compose `postgres`
service (Debian's PostgreSQL, a database per workspace), checked with the real MLflow client - the
seed flow on both workspaces, concurrent writers and registrations, reset, and the mirror (whose
outbox stays SQLite in the Databricks volume).

One deployment for the module (the CLI's own Compose path, emulator.control.docker.compose.Deployment),
down with its volumes at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from emulator import settings
from emulator.control.docker import compose, engine, images, postgres_image
from emulator.control.state import StateDir
from harness import mlflow_uris
from harness.checks.registry import check_registry_increments
from harness.compose_fixtures import free_published_ports, require_docker
from harness.scenarios import (
    run_azureml_scenario,
    run_databricks_scenario,
    training_data,
)
from harness.workspaces import AzureMLWorkspace, DatabricksWorkspace

pytestmark = pytest.mark.docker


class PostgresDeployment:
    def __init__(self, deployment: compose.Deployment, state: StateDir, urls: dict[str, str]):
        self.deployment, self.state, self.urls = deployment, state, urls
        cfg = state.config()
        self.databricks = DatabricksWorkspace(urls["databricks"], cfg["databricks_token"], cfg["databricks_user"])
        url = urls["azureml"]
        self.azureml = AzureMLWorkspace(url, cfg["azureml_token"], cfg["subscription_id"], cfg["resource_group"],
                                        cfg["workspace_name"], f"{url}/mlflow/v2.0/{settings.azureml_scope(cfg)}")

    def exec(self, service: str, *cmd: str) -> str:
        [container] = engine.containers(self.deployment.project, service)
        code, out = container.exec_run(list(cmd))
        assert code == 0, (cmd, out.decode(errors="replace"))
        return out.decode().strip()

    def cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", *args, "--state-dir", str(self.state.root)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def sql(self, role: str, query: str) -> str:
        return self.exec("postgres", "psql", "-U", "emulator", "-d", f"emulator_{role}", "-Atc", query)

    def reset(self, ws) -> dict:
        answer = requests.post(f"{ws.url}/__emulator/reset", json={}, timeout=120,
                               headers={"Authorization": f"Bearer {ws.token}"})
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    require_docker()
    image = os.environ.get("EMULATOR_IMAGE") or images.IMAGE
    images.build(offline=True, image=image)
    postgres_image.build()
    with pytest.MonkeyPatch.context() as mp:
        # What compose_env hands Compose: this module's image and free host ports.
        for name, value in {"EMULATOR_IMAGE": image, "EMULATOR_PUBLIC_HOST": "127.0.0.1",
                            **free_published_ports()}.items():
            mp.setenv(name, str(value))
        for name in (*settings.TOKEN_ENV.values(), "EMULATOR_POSTGRES_URL", "EMULATOR_POSTGRES_PASSWORD"):
            mp.delenv(name, raising=False)
        state = StateDir(tmp_path_factory.mktemp("pg") / "state")
        deployment = compose.Deployment(compose.default_compose_file(), f"emupg{os.getpid()}{secrets.token_hex(3)}",
                                        store="postgres")
        started = time.monotonic()
        try:
            urls = deployment.up(state, timeout=300)
            print(f"\n[postgres] both workspaces healthy {time.monotonic() - started:.1f}s after `up`")
            yield PostgresDeployment(deployment, state, urls)
        finally:
            deployment.down(state, volumes=True)


@pytest.fixture
def restore_env(monkeypatch):
    """The scenarios set DATABRICKS_HOST/TOKEN and MLflow's URIs: put them back afterwards."""
    for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "MLFLOW_TRACKING_TOKEN", "AZUREML_EMULATOR_URL"):
        monkeypatch.delenv(key, raising=False)
    with mlflow_uris.using():
        yield monkeypatch


def test_stores_are_databases_on_the_postgres_service(pg):
    names = pg.exec("postgres", "psql", "-U", "emulator", "-d", "postgres", "-Atc",
                    "SELECT datname FROM pg_database WHERE datname LIKE 'emulator_%' ORDER BY 1").split()
    assert {"emulator_databricks", "emulator_azureml"} <= set(names)
    assert any(n.startswith("emulator_databricks_pristine_") for n in names)
    for role in settings.ROLES:  # no SQLite MLflow store in the workspaces' volumes
        assert pg.exec(role, "sh", "-c", f"test ! -e /data/{role}/mlflow.db && echo none") == "none"
    assert engine.health(pg.deployment.project, "postgres") in ("starting", "healthy")
    assert json.loads(pg.cli("status", "--json"))["store"] == "postgres"


def test_seed_flow_on_both_workspaces(pg, restore_env, tmp_path):
    db, aml = pg.databricks, pg.azureml
    X, _ = training_data(5, seed=3)
    first = run_databricks_scenario(db.url, db.token, db.user, experiment="pg-seed", model_name="pg-seed", epochs=3)
    second = run_databricks_scenario(db.url, db.token, db.user, experiment="pg-seed", model_name="pg-seed", epochs=3)
    assert (first.model_version, second.model_version) == (1, 2)
    with mlflow_uris.using("databricks", "databricks"):
        run = MlflowClient().get_run(second.run_id)
        assert run.data.params["epochs"] == "3"
        assert [m.step for m in MlflowClient().get_metric_history(second.run_id, "epoch_loss")] == [0, 1, 2]
        assert len(mlflow.pyfunc.load_model("models:/pg-seed/2").predict(X)) == 5
    assert pg.sql("databricks", "SELECT string_agg(version::text, ',' ORDER BY version) FROM model_versions"
                                " WHERE name = 'pg-seed'") == "1,2"

    for key, value in aml.env.items():
        restore_env.setenv(key, value)
    runs = [run_azureml_scenario(aml.subscription_id, aml.resource_group, aml.workspace_name,
                                 experiment="pg-seed-aml", model_name="pg-seed-aml", epochs=2) for _ in range(2)]
    assert [r.model_version for r in runs] == [1, 2]
    with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):
        assert len(mlflow.pyfunc.load_model("models:/pg-seed-aml/2").predict(X)) == 5
        assert MlflowClient().get_run(runs[1].run_id).data.params["epochs"] == "2"
    assert pg.sql("azureml", "SELECT count(*) FROM model_versions WHERE name = 'pg-seed-aml'") == "2"


def test_concurrent_metric_writers_and_registrations(pg, restore_env):
    db, aml = pg.databricks, pg.azureml
    for key, value in db.env.items():
        restore_env.setenv(key, value)
    client = MlflowClient("databricks", "databricks")
    requests.post(f"{db.url}/api/2.0/workspace/mkdirs", json={"path": f"/Users/{db.user}/pg"}, timeout=60,
                  headers={"Authorization": f"Bearer {db.token}"}).raise_for_status()
    exp_id = client.create_experiment(f"/Users/{db.user}/pg/concurrency")
    run_id = client.create_run(exp_id).info.run_id

    writers, per_writer = 16, 10
    barrier, errors = threading.Barrier(writers), []

    def write(w: int):
        own = MlflowClient("databricks", "databricks")
        barrier.wait()
        try:
            for i in range(per_writer):
                step = w * per_writer + i
                own.log_metric(run_id, "shared", float(step), step=step)  # one key, every writer
                own.log_metric(run_id, f"writer_{w}", float(i), step=i)
        except Exception as exc:  # noqa: BLE001 - reported below with the writer's number
            errors.append(f"writer {w}: {exc}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    assert not errors, errors
    shared = client.get_metric_history(run_id, "shared")
    assert sorted(m.step for m in shared) == list(range(writers * per_writer))
    for w in range(writers):
        assert [m.value for m in sorted(client.get_metric_history(run_id, f"writer_{w}"), key=lambda m: m.step)] \
            == [float(i) for i in range(per_writer)]
    assert client.get_run(run_id).data.metrics["shared"] == float(writers * per_writer - 1)  # the last step's
    print(f"\n[postgres] {writers * per_writer * 2} metric writes by {writers} writers in {took:.2f}s")

    # 8 registrations of one name at once, on each workspace's registry: versions 1..8, each once.
    client.log_text(run_id, "flavors: {}\n", "model/MLmodel")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    result = check_registry_increments(client, "pg-concurrent", source, run_id=run_id, registrations=8, concurrency=8)
    assert result.passed, str(result)
    restore_env.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    aml_client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    aml_run = aml_client.create_run(aml_client.create_experiment("pg-concurrency"))
    aml_client.log_text(aml_run.info.run_id, "flavors: {}\n", "model/MLmodel")
    result = check_registry_increments(aml_client, "pg-concurrent", f"{aml_run.info.artifact_uri}/model",
                                       run_id=aml_run.info.run_id, registrations=8, concurrency=8)
    assert result.passed, str(result)


def test_metric_points_and_latest_values_match_mlflows_store(pg, restore_env, tmp_path):
    """The bulk insert and latest-value upsert (emulator.stores.metric_writes) on PostgreSQL store what
    MLflow's own store stores for the same batches (through the real client)."""
    from tests.test_metric_writes import BATCHES, stock_outcome, stored

    expected = stock_outcome(tmp_path)
    for ws in (pg.databricks, pg.azureml):
        restore_env.setenv("MLFLOW_TRACKING_TOKEN", ws.token)
        client = MlflowClient(tracking_uri=ws.url)
        name = f"/Users/{ws.user}/pg-metrics" if ws is pg.databricks else "pg-metrics"
        run_id = client.create_run(client.create_experiment(name)).info.run_id
        for batch in BATCHES:
            if len(batch) == 1:
                m = batch[0]
                client.log_metric(run_id, m.key, m.value, m.timestamp, m.step, synchronous=True)
            else:
                client.log_batch(run_id, metrics=batch, synchronous=True)
        got = stored(client.get_metric_history, run_id, client.get_run(run_id).data.metrics)
        assert got == {k: expected[k] for k in ("history", "latest")}, ws.url


def test_nul_in_text_is_a_400_in_the_backends_shape_not_a_500(pg, restore_env):
    """PostgreSQL text cannot hold U+0000 (SQLite can): MLflow's store answered the driver's ValueError
    with a 500, which clients retry for minutes. Nothing already written changes."""
    aml = pg.azureml
    restore_env.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    client = MlflowClient(aml.tracking_uri)
    run_id = client.create_run(client.create_experiment("pg-nul")).info.run_id
    client.log_param(run_id, "kept", "v")
    api = {"azureml": f"{aml.tracking_uri}/api/2.0/mlflow", "databricks": f"{pg.databricks.url}/api/2.0/mlflow"}
    run_writes = (("runs/log-parameter", {"run_id": run_id, "key": "k", "value": "a\x00b"}),
                  ("runs/log-batch", {"run_id": run_id, "tags": [{"key": "t", "value": "\x00"}]}))
    for role, ws in (("azureml", aml), ("databricks", pg.databricks)):
        auth = {"Authorization": f"Bearer {ws.token}"}
        for path, body in (*(run_writes if role == "azureml" else ()),
                           ("registered-models/create", {"name": "pg\x00nul"}),
                           ("experiments/create", {"name": "/Users/x\x00"})):
            resp = requests.post(f"{api[role]}/{path}", json=body, headers=auth, timeout=60)
            assert resp.status_code == 400, (role, path, resp.status_code, resp.text)
            assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "NUL" in resp.json()["message"]
        resp = requests.get(f"{api[role]}/registered-models/get", params={"name": "a\x00"}, headers=auth, timeout=60)
        assert resp.status_code == 400, (role, resp.text)
    run = client.get_run(run_id)
    assert run.data.params == {"kept": "v"} and "t" not in run.data.tags


def test_reset_makes_the_postgres_store_new_again(pg, restore_env):
    aml = pg.azureml
    restore_env.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    pg.reset(aml)
    first_id = client.create_experiment("before-reset")
    run_id = client.create_run(first_id).info.run_id
    client.log_metric(run_id, "m", 1.0)
    client.create_registered_model("reset-me")
    store_id = "SELECT experiment_id FROM experiments WHERE name = '{}'"
    first_store_id = pg.sql("azureml", store_id.format("before-reset"))
    took = pg.reset(aml)["seconds"]
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_registered_models() == []
    # The same store ids a new store hands out (sequences went back with the rows); the GUID the
    # client sees is a new one (Azure ML experiment ids: a GUID from before a reset names nothing).
    assert client.create_experiment("after-reset") != first_id
    assert pg.sql("azureml", store_id.format("after-reset")) == first_store_id
    assert pg.sql("azureml", "SELECT count(*) FROM runs") == "0"
    assert took < 30
    pg.reset(pg.databricks)  # the Databricks store class's template too
    assert pg.sql("databricks", "SELECT count(*) FROM registered_models") == "0"


def test_mirror_outbox_stays_in_the_databricks_volume_across_restarts(pg, restore_env):
    db, aml = pg.databricks, pg.azureml
    auth = {"Authorization": f"Bearer {db.token}"}
    linked = requests.post(f"{db.url}/__emulator/link", headers=auth, timeout=60,
                           json={"azureml_url": aml.url, "azureml_token": aml.token})
    assert linked.status_code == 200, linked.text
    for key, value in db.env.items():
        restore_env.setenv(key, value)
    client = MlflowClient("databricks", "databricks")
    requests.post(f"{db.url}/api/2.0/workspace/mkdirs", json={"path": f"/Users/{db.user}/pg"}, timeout=60,
                  headers=auth).raise_for_status()
    run_id = client.create_run(client.create_experiment(f"/Users/{db.user}/pg/linked")).info.run_id
    for step, loss in enumerate([0.3, 0.2, 0.1]):
        client.log_metric(run_id, "loss", loss, step=step)
    deadline = time.monotonic() + 120
    while (state := requests.get(f"{db.url}/__emulator/mirror", headers=auth, timeout=60).json())["backlog"]:
        assert time.monotonic() < deadline, f"mirror did not drain: {state}"
        time.sleep(0.2)
    assert pg.exec("databricks", "sh", "-c", "test -s /data/databricks/outbox.db && echo kept") == "kept"
    ids = requests.get(f"{db.url}/__emulator/mirror/runs/{run_id}", headers=auth, timeout=60).json()
    restore_env.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    aml_client = MlflowClient(aml.tracking_uri)
    assert [m.value for m in sorted(aml_client.get_metric_history(ids["azureml_run_id"], "loss"),
                                    key=lambda m: m.step)] == [0.3, 0.2, 0.1]

    # Restarted containers find the runs in PostgreSQL and the link and outbox in the volume.
    pg.deployment.compose("restart", env=compose.compose_env(pg.state, "postgres"))
    pg.deployment.wait_healthy(pg.urls, timeout=240)
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.3, 0.2, 0.1]
    assert requests.get(f"{db.url}/__emulator/mirror/runs/{run_id}", headers=auth, timeout=60).json() == ids
