"""The two workspaces as Compose containers, checked with the real MLflow client (same contract as
local mode), plus what only Docker adds: healthchecks, the service network, the non-root user, and
state in named volumes (kept across `restart`, gone after `down -v`).

Tests run in file order; the lifecycle test is last because it restarts and wipes the deployment.
"""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from harness.azureml import Workspace

pytestmark = pytest.mark.docker


def get(ws, path: str, **kw) -> requests.Response:
    return requests.get(f"{ws.url}{path}", headers={"Authorization": f"Bearer {ws.token}"}, timeout=60, **kw)


@pytest.fixture
def aml_client(docker_workspaces, monkeypatch):
    aml = docker_workspaces.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    return MlflowClient(tracking_uri=aml.tracking_uri)


@pytest.fixture
def databricks_client(docker_workspaces, monkeypatch):
    db = docker_workspaces.databricks
    for key, value in db.env.items():
        monkeypatch.setenv(key, value)
    yield MlflowClient(tracking_uri="databricks")
    mlflow.set_tracking_uri(None)


def test_a_test_sessions_deployment_does_not_come_back_with_the_engine(docker_workspaces):
    """Restart policy "no" for every container a pytest session deploys (the plugin sets
    EMULATOR_RESTART_POLICY): before, each killed session left a deployment that every later
    `dockerd` start brought back, Spark clusters included, loading the machine."""
    from emulator.control.docker import engine

    policies = engine.restart_policies(docker_workspaces.project)
    assert len(policies) == 3 and set(policies.values()) == {"no"}, policies


def test_a_users_deployment_restarts_unless_stopped(tmp_path):
    """Without the variable (`emulator up --docker`, `docker compose up`) every service keeps
    unless-stopped: a deployment that outlives an engine restart, as before."""
    import os
    import subprocess

    import yaml

    from emulator.control.docker import compose

    env = {k: v for k, v in os.environ.items() if k != compose.RESTART_POLICY_ENV}
    out = subprocess.run([*compose.compose_command(), "-f", str(compose.default_compose_file()),
                          "--profile", "spark", "--profile", "postgres", "config"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True).stdout
    services = yaml.safe_load(out)["services"]
    assert {"databricks", "azureml", "s3", "spark-master", "spark-worker", "postgres"} <= set(services)
    assert {name: svc.get("restart") for name, svc in services.items()} == dict.fromkeys(services, "unless-stopped")


def test_health_is_public_and_every_api_call_needs_the_token(docker_workspaces):
    for ws in (docker_workspaces.databricks, docker_workspaces.azureml):
        assert requests.get(f"{ws.url}/health", timeout=60).status_code == 200
        path = f"{ws.url}/api/2.0/mlflow/experiments/search"
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            resp = requests.get(path, params={"max_results": 1}, headers=headers, timeout=60)
            assert resp.status_code == 401, (ws.url, resp.text)
            assert resp.json()  # a JSON error body, not an HTML page
        assert get(ws, "/api/2.0/mlflow/experiments/search", params={"max_results": 1}).status_code == 200


def test_compose_healthchecks_report_healthy(docker_workspaces):
    import time

    deadline = time.monotonic() + 60  # the first probe runs one interval (5 s) after start
    while True:
        states = {s: docker_workspaces.container_health(s) for s in ("databricks", "azureml")}
        if set(states.values()) == {"healthy"} or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == {"databricks": "healthy", "azureml": "healthy"}


def test_discovery_reports_host_visible_urls(docker_workspaces, monkeypatch):
    aml = docker_workspaces.azureml
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("EMULATOR_AZUREML_TOKEN", aml.token)
    ws = Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                       resource_group=aml.resource_group, arm_url=aml.url)
    # --public-url: the container listens on 0.0.0.0:5002 but reports the host's address.
    assert ws.get_mlflow_tracking_uri() == aml.tracking_uri
    info = get(aml, "/__emulator/info").json()
    assert info["url"] == aml.url and info["role"] == "azureml"


def test_azureml_tracking_round_trip_with_the_real_client(aml_client, tmp_path):
    exp_id = aml_client.create_experiment("docker-aml")
    run = aml_client.create_run(exp_id)
    run_id = run.info.run_id
    for step, loss in enumerate([0.9, 0.4, 0.1]):
        aml_client.log_metric(run_id, "loss", loss, step=step)
    aml_client.log_param(run_id, "alpha", "0.5")
    (tmp_path / "notes.txt").write_text("from the host, through the container")
    aml_client.log_artifact(run_id, str(tmp_path / "notes.txt"), artifact_path="docs")
    aml_client.set_terminated(run_id)

    got = aml_client.get_run(run_id)
    assert got.data.params == {"alpha": "0.5"}
    assert got.info.status == "FINISHED"
    history = sorted(aml_client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [m.value for m in history] == [0.9, 0.4, 0.1]
    assert [a.path for a in aml_client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    dst = aml_client.download_artifacts(run_id, "docs/notes.txt", str(tmp_path / "dl"))
    assert open(dst).read() == "from the host, through the container"


def test_databricks_tracking_with_the_real_client(databricks_client, docker_workspaces):
    db = docker_workspaces.databricks
    name = f"/Users/{db.user}/docker-db"
    exp_id = databricks_client.create_experiment(name)
    exp = databricks_client.get_experiment(exp_id)
    assert exp.name == name
    assert exp.artifact_location.startswith("dbfs:/databricks/mlflow-tracking/")
    run = databricks_client.create_run(exp_id)
    databricks_client.log_metric(run.info.run_id, "acc", 0.75)
    databricks_client.log_param(run.info.run_id, "max_depth", "3")
    got = databricks_client.get_run(run.info.run_id)
    assert got.data.metrics == {"acc": 0.75}
    assert got.data.params == {"max_depth": "3"}


def test_databricks_reaches_azureml_by_service_name(docker_workspaces):
    # The Databricks container gets the in-network AML address for linking (mirroring runs).
    script = ("import os, urllib.request; url = os.environ['EMULATOR_AZUREML_INTERNAL_URL']; "
              "print(url, urllib.request.urlopen(url + '/health', timeout=60).status)")
    out = docker_workspaces.compose.execute(f'exec -T databricks python -c "{script}"').decode()
    assert out.strip().splitlines()[-1] == "http://azureml:5002 200"


def test_linked_databricks_mirrors_to_azureml_over_the_compose_network(docker_workspaces, databricks_client,
                                                                       aml_client, tmp_path):
    import time

    db, aml = docker_workspaces.databricks, docker_workspaces.azureml
    auth = {"Authorization": f"Bearer {db.token}"}
    # What `emulator link` sends; the container swaps in EMULATOR_AZUREML_INTERNAL_URL.
    linked = requests.post(f"{db.url}/__emulator/link", headers=auth, timeout=60,
                           json={"azureml_url": aml.url, "azureml_token": aml.token})
    assert linked.status_code == 200, linked.text
    assert "http://azureml:5002" in linked.text
    try:
        exp_id = databricks_client.create_experiment(f"/Users/{db.user}/docker-linked")
        run_id = databricks_client.create_run(exp_id).info.run_id
        for step, loss in enumerate([0.3, 0.2, 0.1]):
            databricks_client.log_metric(run_id, "loss", loss, step=step)
        (tmp_path / "model.txt").write_text("mirrored")
        databricks_client.log_artifact(run_id, str(tmp_path / "model.txt"))
        databricks_client.set_terminated(run_id)

        deadline = time.monotonic() + 90
        while (state := get(db, "/__emulator/mirror").json())["backlog"]:
            assert time.monotonic() < deadline, f"mirror did not drain: {state}"
            time.sleep(0.2)
        ids = get(db, f"/__emulator/mirror/runs/{run_id}").json()
        history = sorted(aml_client.get_metric_history(ids["azureml_run_id"], "loss"), key=lambda m: m.step)
        assert [m.value for m in history] == [0.3, 0.2, 0.1]
        dst = aml_client.download_artifacts(ids["azureml_run_id"], "model.txt", str(tmp_path / "aml"))
        assert open(dst).read() == "mirrored"
        src = databricks_client.download_artifacts(run_id, "model.txt", str(tmp_path / "db"))
        assert open(src).read() == "mirrored"
    finally:
        requests.post(f"{db.url}/__emulator/unlink", headers=auth, timeout=60)


def test_containers_run_as_non_root_with_private_state(docker_workspaces):
    for service in ("databricks", "azureml"):
        out = docker_workspaces.compose.execute(
            f"exec -T {service} sh -c 'id -u; stat -c %a /data; stat -c %a /data/{service}'"
        ).decode().split()
        assert out[-3:] == ["10001", "700", "700"], (service, out)


SCALING_MODEL = """
import mlflow
import pandas as pd


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame) -> pd.Series:
        return model_input["x"] * 2.0 + 1.0


mlflow.models.set_model(Doubler())
"""


def test_online_endpoint_scoring_runs_inside_the_azureml_container(docker_workspaces, monkeypatch, tmp_path):
    """A deployment's inference server is a child process of the Azure ML container (the image has
    no scikit-learn, so the model is pure pyfunc code); scoring goes host -> workspace -> child."""
    from harness.online_endpoints import OnlineEndpointsClient

    aml = docker_workspaces.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    (tmp_path / "doubler.py").write_text(SCALING_MODEL)
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_registry_uri(aml.tracking_uri)
    try:
        mlflow.set_experiment("docker-deploy")
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "doubler.py"),
                                    registered_model_name="docker-doubler")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    ml = OnlineEndpointsClient.for_workspace(aml)
    ml.create_endpoint("docker-ep")
    dep = ml.create_deployment("docker-ep", "blue", "azureml:docker-doubler:1")
    assert dep["properties"]["provisioningState"] == "Succeeded", dep
    ml.set_traffic("docker-ep", {"blue": 100})
    resp = ml.score("docker-ep", {"input_data": {"columns": ["x"], "index": [0, 1], "data": [[1.0], [2.5]]}})
    assert resp.status_code == 200, resp.text
    assert resp.headers["azureml-model-deployment"] == "blue"
    assert resp.json() == [{"x": 3.0}, {"x": 6.0}], resp.text  # a named Series answers as records
    # No ps in the image: the container's processes from /proc.
    procs = docker_workspaces.compose.execute(
        "exec -T azureml sh -c 'cat /proc/[0-9]*/cmdline 2>/dev/null; true'").replace(b"\0", b" ").decode()
    assert "emulator.services.azureml.deployment_runner" in procs, procs
    ml.delete_endpoint("docker-ep")


NEEDS_INFLECTION = """
import mlflow


class Titles(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import inflection  # not in the image: the deployment's environment must bring it

        self.titleize = inflection.titleize

    def predict(self, context, model_input):
        return [self.titleize(v) for v in model_input["text"]]


mlflow.models.set_model(Titles())
"""


def test_model_environment_is_built_with_pip_inside_the_container(docker_workspaces, monkeypatch, tmp_path):
    """The image has no uv: the model's missing requirement is installed with pip, from PyPI, into an
    environment under the container's state dir."""
    from harness.online_endpoints import EndpointError, OnlineEndpointsClient

    aml = docker_workspaces.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    (tmp_path / "titles.py").write_text(NEEDS_INFLECTION)
    mlflow.set_tracking_uri(aml.tracking_uri)
    mlflow.set_registry_uri(aml.tracking_uri)
    try:
        mlflow.set_experiment("docker-model-env")
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=str(tmp_path / "titles.py"),
                                    extra_pip_requirements=["inflection==0.5.1"],
                                    registered_model_name="docker-titles")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    # Whether pip inside the container can fetch from PyPI (a TLS-intercepting proxy whose CA only the
    # host trusts makes it fail): the deployment's outcome must match.
    probe = ("import urllib.request as u\ntry:\n u.urlopen('https://pypi.org/simple/inflection/', timeout=60)\n"
             " print('PYPI', 'yes')\nexcept Exception as e:\n print('PYPI', 'no', type(e).__name__)")
    reach = docker_workspaces.compose.execute(f'exec -T azureml python -c "{probe}"').decode()
    reachable = "PYPI yes" in reach
    ml = OnlineEndpointsClient.for_workspace(aml)
    ml.create_endpoint("docker-env-ep")
    try:
        dep, error = ml.create_deployment("docker-env-ep", "blue", "azureml:docker-titles:1"), None
    except EndpointError as exc:
        dep, error = ml.get_deployment("docker-env-ep", "blue"), exc
    logs = ml.logs("docker-env-ep", "blue")
    assert "installing inflection==0.5.1 with pip" in logs, logs  # the image has no uv
    if reachable:
        assert error is None and dep["properties"]["provisioningState"] == "Succeeded", logs
        assert "Successfully installed inflection-0.5.1" in logs, logs
        resp = ml.score("docker-env-ep", {"input_data": {"columns": ["text"], "index": [0],
                                                         "data": [["hello_world"]]}}, deployment="blue")
        assert resp.status_code == 200 and resp.json() == ["Hello World"], resp.text
    else:  # no PyPI from the container: served in the server's own Python, which lacks the import
        print("PyPI is not reachable from the container:", reach.strip().splitlines()[-1:])
        assert "no package index could be reached" in logs and "without inflection==0.5.1" in logs, logs
        assert dep["properties"]["provisioningState"] == "Failed", logs
        assert error.code == "DeploymentFailed" and "No module named 'inflection'" in logs, logs
    ml.delete_endpoint("docker-env-ep")


def test_state_survives_restart_and_is_gone_after_down_v(docker_workspaces, aml_client, databricks_client,
                                                         tmp_path):
    exp_id = aml_client.create_experiment("survivor")
    run_id = aml_client.create_run(exp_id).info.run_id
    aml_client.log_metric(run_id, "loss", 0.25)
    (tmp_path / "kept.txt").write_text("kept")
    aml_client.log_artifact(run_id, str(tmp_path / "kept.txt"))
    db_exp = databricks_client.create_experiment(f"/Users/{docker_workspaces.databricks.user}/survivor")

    docker_workspaces.compose.execute("restart")
    docker_workspaces.wait_healthy()
    assert aml_client.get_run(run_id).data.metrics == {"loss": 0.25}
    dst = aml_client.download_artifacts(run_id, "kept.txt", str(tmp_path / "dl"))
    assert open(dst).read() == "kept"
    assert databricks_client.get_experiment(db_exp).name.endswith("/survivor")

    docker_workspaces.compose.execute("down -v")
    docker_workspaces.compose.execute("up -d")
    docker_workspaces.wait_healthy()
    names = {e.name for e in aml_client.search_experiments()}
    assert "survivor" not in names and "docker-aml" not in names
    assert aml_client.get_experiment_by_name("survivor") is None
    assert databricks_client.get_experiment_by_name(
        f"/Users/{docker_workspaces.databricks.user}/survivor") is None
