"""A workspace started from a shell holding the user's REAL credentials never uses them, and never
calls out to the network (docs/pages/security.md).

The emulator here is started with DATABRICKS_HOST / DATABRICKS_TOKEN, an Azure secret, a
~/.databrickscfg and HTTP(S)_PROXY all pointing at a loopback listener this test runs: any
outbound call the server makes lands there. The listener answers every request with a 403 at
once, so the original code fails these tests quickly instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from emulator.control import launcher
from harness.workspaces import Emulator

REAL_TOKEN = "dapi-the-users-real-token"


class Listener:
    """A loopback TCP server recording every connection (what a real Databricks host would get)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytes] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                self.received.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                conn.close()

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def listener():
    lst = Listener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, listener):
    """Both workspaces, started with the user's credentials and a proxy all aimed at `listener`."""
    home = tmp_path_factory.mktemp("home")
    (home / ".databrickscfg").write_text(f"[DEFAULT]\nhost = {listener.url}\ntoken = dapi-from-the-cfg-file\n")
    env = {
        "DATABRICKS_HOST": listener.url, "DATABRICKS_TOKEN": REAL_TOKEN,
        "AZURE_CLIENT_ID": "real-client", "AZURE_CLIENT_SECRET": "real-secret", "AZURE_TENANT_ID": "real-tenant",
        "MLFLOW_TRACKING_URI": listener.url, "MLFLOW_TRACKING_TOKEN": "real-mlflow-token",
        "MLFLOW_DEPLOYMENTS_TARGET": listener.url,
        "HTTP_PROXY": listener.url, "HTTPS_PROXY": listener.url, "http_proxy": listener.url,
        "https_proxy": listener.url,
        # Loopback goes direct (the launcher's health probe); the listener is on loopback too.
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        "HOME": str(home), "EMULATOR_ACCESS_LOG": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        emu = Emulator(tmp_path_factory.mktemp("hostile-state"))
        procs = [emu.start_process(role) for role in ("databricks", "azureml")]  # they inherit `env`
    try:
        launcher.wait_healthy(emu.state, procs)
        yield emu
    finally:
        emu.down()


@pytest.fixture(scope="module")
def db_client(hostile):
    ws = hostile.databricks
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ws.env.items():
            mp.setenv(key, value)
        mlflow.set_tracking_uri("databricks")
        yield MlflowClient("databricks")
        mlflow.set_tracking_uri(None)


def ui_session(ws) -> requests.Session:
    """A browser-like session logged into the UI (cookie), sending the UI's own Origin."""
    session = requests.Session()
    assert session.get(f"{ws.url}/?token={ws.token}", timeout=30).status_code == 200
    session.headers.update({"Origin": ws.url, "Sec-Fetch-Site": "same-origin"})
    return session


@pytest.fixture(scope="module")
def run(db_client, hostile):
    exp = db_client.create_experiment(f"/Users/{hostile.databricks.user}/credentials")
    return db_client.create_run(exp)


def test_ui_upload_writes_local_storage_and_sends_nothing(hostile, listener, db_client, run, tmp_path):
    ui = ui_session(hostile.databricks)
    answer = ui.post(f"{hostile.databricks.url}/ajax-api/2.0/mlflow/upload-artifact", data=b"uploaded in the UI",
                     params={"run_uuid": run.info.run_id, "path": "ui/notes.txt"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert listener.received == []
    # Stored where the workspace keeps the run's files: the real client reads it back.
    local = db_client.download_artifacts(run.info.run_id, "ui/notes.txt", str(tmp_path))
    assert open(local, "rb").read() == b"uploaded in the UI"


def test_graphql_artifact_listing_reads_local_storage(hostile, listener, db_client, run, tmp_path):
    (tmp_path / "listed.txt").write_text("listed")
    db_client.log_artifact(run.info.run_id, str(tmp_path / "listed.txt"), "gql")
    query = ('query { mlflowListArtifacts(input: {runId: "%s", path: "gql"}) '
             "{ rootUri files { path isDir fileSize } apiError { code message } } }" % run.info.run_id)
    answer = ui_session(hostile.databricks).post(f"{hostile.databricks.url}/graphql", json={"query": query},
                                                 timeout=30)
    assert answer.status_code == 200, answer.text
    listing = answer.json()["data"]["mlflowListArtifacts"]
    assert listing["apiError"] is None, listing
    assert listing["files"] == [{"path": "gql/listed.txt", "isDir": False, "fileSize": "6"}]
    assert listener.received == []


def test_trace_artifact_is_read_from_local_storage(hostile, listener, db_client):
    mlflow.set_experiment(f"/Users/{hostile.databricks.user}/credentials")
    with mlflow.start_span("root") as span:
        span.set_inputs({"question": "where do my traces live?"})
        span.set_outputs({"answer": "in the workspace"})
    trace_id = mlflow.get_last_active_trace_id()
    ui = ui_session(hostile.databricks)
    deadline = time.monotonic() + 60
    while True:  # the client may export the trace data in the background
        answer = ui.get(f"{hostile.databricks.url}/ajax-api/2.0/mlflow/get-trace-artifact",
                        params={"request_id": trace_id}, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert "where do my traces live?" in answer.text
    assert listener.received == []


def test_gateway_model_catalog_answers_fast_without_the_network(hostile, listener):
    ws = hostile.databricks
    headers = {"Authorization": f"Bearer {ws.token}"}
    started = time.monotonic()
    answer = requests.get(f"{ws.url}/ajax-api/3.0/mlflow/gateway/supported-models", headers=headers, timeout=20)
    assert answer.status_code < 500 and time.monotonic() - started < 20
    assert listener.received == []

    # Several at once must not starve the server: /health keeps answering.
    def catalog(_):
        return requests.get(f"{ws.url}/ajax-api/3.0/mlflow/gateway/supported-models", headers=headers,
                            timeout=20).status_code

    with ThreadPoolExecutor(8) as pool:
        pending = [pool.submit(catalog, i) for i in range(8)]
        health = requests.get(f"{ws.url}/health", timeout=60)
        assert health.status_code == 200
        assert all(p.result() < 500 for p in pending)
    assert listener.received == []


def test_azureml_refuses_dbfs_and_remote_artifact_locations_without_calling_out(hostile, listener, monkeypatch):
    aml = hostile.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    client = MlflowClient(aml.tracking_uri)
    ui = ui_session(aml)
    from mlflow.exceptions import RestException

    for location in ("dbfs:/databricks/mlflow-tracking/elsewhere", "s3://a-bucket/path"):
        # Refused where it is given (emulator.stores.artifact_locations), so no upload can ever go there.
        with pytest.raises(RestException) as refused:
            client.create_experiment(f"remote-{len(location)}", artifact_location=location)
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE", refused.value
    run_id = client.create_run(client.create_experiment("local-root")).info.run_id
    answer = ui.post(f"{aml.url}/ajax-api/2.0/mlflow/upload-artifact", data=b"x", timeout=30,
                     params={"run_uuid": run_id, "path": "x.txt"})
    assert answer.status_code < 500, (answer.status_code, answer.text)
    assert listener.received == []


def test_access_log_redacts_the_login_token_and_escapes_control_characters(hostile):
    ws = hostile.databricks
    requests.get(f"{ws.url}/?token={ws.token}", timeout=60, allow_redirects=False)
    requests.get(f"{ws.url}/api/2.0/x%0a2026-01-01 FORGED -> 200", timeout=60)
    deadline = time.monotonic() + 10
    log = ""
    while "FORGED" not in log and time.monotonic() < deadline:
        log = launcher.log_path(hostile.state, "databricks").read_text()
        time.sleep(0.2)
    assert "FORGED" in log  # the request was logged ...
    assert not any(line.startswith("2026-01-01 FORGED") for line in log.splitlines())  # ... on one line
    assert ws.token not in log and "token=REDACTED" in log


def test_scrub_keeps_the_emulators_own_settings(tmp_path):
    from emulator.workspace import server_env

    environ = {"DATABRICKS_TOKEN": "t", "AZURE_CLIENT_SECRET": "s", "GITHUB_TOKEN": "g", "IDENTITY_HEADER": "h",
               "MLFLOW_TRACKING_TOKEN": "m", "AWS_SECRET_ACCESS_KEY": "a", "EMULATOR_DATABRICKS_TOKEN": "own",
               "PATH": "/usr/bin"}
    removed = server_env.scrub(environ, tmp_path / "home")
    assert set(removed) == {"DATABRICKS_TOKEN", "AZURE_CLIENT_SECRET", "GITHUB_TOKEN", "IDENTITY_HEADER",
                            "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY"}
    assert environ["EMULATOR_DATABRICKS_TOKEN"] == "own" and environ["PATH"] == "/usr/bin"
    assert environ["HOME"] == str(tmp_path / "home") and environ["MLFLOW_MODEL_CATALOG_URI"] == ""


def test_loopback_never_goes_through_the_users_proxy(tmp_path):
    from emulator.workspace import server_env

    environ = {"HTTPS_PROXY": "http://user:pw@proxy:3128", "NO_PROXY": ".corp"}
    server_env.scrub(environ, tmp_path / "home")
    assert environ["NO_PROXY"].split(",")[0] == ".corp" and "127.0.0.1" in environ["NO_PROXY"].split(",")
    assert "localhost" in environ["no_proxy"].split(",")
