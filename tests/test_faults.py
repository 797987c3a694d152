"""Fault rules, the registration lifecycle and the request journal, with real clients on both workspaces."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from urllib.parse import urlparse

import pytest
import requests
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from emulator.control.cli import main as emulator_cli
from harness.faults import add_fault, inject_fault

CREATE = "/api/2.0/mlflow/model-versions/create"


def _auth(ws) -> dict:
    return {"Authorization": f"Bearer {ws.token}"}


@pytest.fixture(autouse=True)
def no_leftover_faults(emulator):
    """Faults never leak from one test into the next."""
    yield
    for ws in (emulator.databricks, emulator.azureml):
        ws.clear_faults()
        ws.journal(False)


@pytest.fixture
def aml(emulator, monkeypatch):
    ws = emulator.azureml
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    return ws


def _search_url(ws) -> str:
    base = ws.tracking_uri if hasattr(ws, "tracking_uri") else ws.url
    return f"{base}/api/2.0/mlflow/experiments/search?max_results=1"


def _registrable(client: MlflowClient, exp_name: str) -> tuple[str, str]:
    exp = client.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(exp_name)
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "model files", "model/MLmodel")
    return f"{run.info.artifact_uri}/model", run.info.run_id


# --- the admin routes ---------------------------------------------------------------------------


def test_fault_routes_need_the_token_and_json(emulator):
    for ws in (emulator.databricks, emulator.azureml):
        url = f"{ws.url}/__emulator/faults"
        assert requests.get(url, timeout=30).status_code == 401
        assert requests.post(url, json={"path": "*", "status": 503}, timeout=30).status_code == 401
        assert requests.post(url, json={"path": "*", "status": 503}, timeout=30,
                             headers={**_auth(ws), "Authorization": "Bearer wrong"}).status_code == 401
        form = requests.post(url, data="path=*&status=503", timeout=30,
                             headers={**_auth(ws), "Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        assert requests.get(url, headers=_auth(ws), timeout=30).json() == {"rules": []}
        # The UI's ?token= and cookie log a browser in, but not into these routes: bearer only.
        for admin in (url, f"{ws.url}/__emulator/requests"):
            assert requests.get(admin, params={"token": ws.token}, timeout=30).status_code == 401
            assert requests.get(admin, cookies={"emulator_token": ws.token}, timeout=30).status_code == 401


@pytest.mark.parametrize("rule, problem", [
    ({"status": 503}, "needs 'path'"),
    ({"path": "*"}, "needs an effect"),
    ({"path": "*", "status": 503, "drop": True}, "one effect"),
    ({"path": "*", "status": 200}, "'status'"),
    ({"path": "*", "status": 503, "colour": "red"}, "Unknown fault rule fields: colour"),
    ({"path": "*", "retry_after": 3, "delay_s": 1}, "'retry_after' goes with 'status'"),
    ({"path": "*", "after_commit": "maybe"}, "'after_commit'"),
    ({"path": "*", "delay_s": -1}, "'delay_s'"),
    ({"path": "*", "status": 503, "times": 0}, "'times'"),
    ({"path": "*", "status": 503, "shape": "aws"}, "'shape' must be one of databricks, uc, azureml"),
    ({"path": "*", "delay_s": 1, "shape": "uc"}, "'shape' goes with 'status'"),
    ({"path": "*", "status": 503, "body": {"source": {"regex": "x"}}}, "body field 'source'"),
    ({"path": "*", "status": 503, "body": {"tags": ["a"]}}, "body field 'tags'"),
])
def test_bad_rules_are_400_in_mlflow_shape(emulator, rule, problem):
    answer = requests.post(f"{emulator.databricks.url}/__emulator/faults", json=rule,
                           headers=_auth(emulator.databricks), timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert problem in answer.json()["message"]
    assert emulator.databricks.faults() == []


def test_status_fault_in_each_backends_shape_with_retry_after(emulator):
    db, aml = emulator.databricks, emulator.azureml
    with inject_fault(db, "GET", "/api/2.0/mlflow/experiments/search", status=429, retry_after=7):
        answer = requests.get(_search_url(db), headers=_auth(db), timeout=30)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
    assert answer.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    # One rule path matches Azure ML's scoped paths too; the body carries Azure's error object as well.
    with inject_fault(aml, "GET", "/api/2.0/mlflow/experiments/search", status=503):
        answer = requests.get(_search_url(aml), headers=_auth(aml), timeout=30)
    assert answer.status_code == 503
    assert answer.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert answer.json()["error"]["code"] == "ServiceUnavailable"
    arm = (f"/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}/providers/"
           f"Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")
    with inject_fault(aml, "GET", "/subscriptions/*", status=500):
        answer = requests.get(f"{aml.url}{arm}?api-version=2023-10-01", headers=_auth(aml), timeout=30)
    assert answer.status_code == 500 and answer.json() == {
        "error": {"code": "InternalServerError", "message": answer.json()["error"]["message"], "details": []}}
    # Without the rule the calls succeed again.
    assert requests.get(_search_url(aml), headers=_auth(aml), timeout=30).status_code == 200


def test_skip_and_times_count_every_hit(emulator):
    db = emulator.databricks
    rule = add_fault(db, "GET", "*/experiments/search", status=503, skip=1, times=2)
    codes = [requests.get(_search_url(db), headers=_auth(db), timeout=30).status_code for _ in range(4)]
    assert codes == [200, 503, 503, 200]
    assert (rule.matched, rule.hits) == (4, 2)
    listed = db.faults()[0]
    assert (listed["id"], listed["skip"], listed["times"]) == (rule.id, 1, 2)


def test_body_match_narrows_to_one_model(databricks_ws):
    client = MlflowClient("databricks", "databricks")
    client.create_registered_model("fault-body-a")
    client.create_registered_model("fault-body-b")
    source, run_id = _registrable(client, f"/Users/{databricks_ws.user}/fault-body")
    with inject_fault(databricks_ws, "POST", CREATE, body={"name": "fault-body-a"}, status=403) as rule:
        with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
            client.create_model_version("fault-body-a", source, run_id=run_id)
        assert client.create_model_version("fault-body-b", source, run_id=run_id).version == "1"
        assert rule.hits == 1
    assert client.create_model_version("fault-body-a", source, run_id=run_id).version == "1"


def test_body_match_on_nested_fields_a_tag_key_and_a_source_prefix(databricks_ws):
    """What bug reports name: "runs tagged X fail", "versions from that run's folder fail"."""
    client = MlflowClient("databricks", "databricks")
    exp = client.create_experiment(f"/Users/{databricks_ws.user}/fault-nested")
    with inject_fault(databricks_ws, "POST", "*/runs/create", body={"tags[].key": "repro.bug"}, status=403) as rule:
        with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
            client.create_run(exp, tags={"repro.bug": "1", "team": "a"})
        client.create_run(exp, tags={"team": "repro.bug"})  # the value is not the key
        assert (rule.matched, rule.hits) == (1, 1)
    # A JMESPath filter: the tag's key and its value together.
    filtered = {"tags[?key=='team'].value": "b"}
    with inject_fault(databricks_ws, "POST", "*/runs/create", body=filtered, status=403) as rule:
        client.create_run(exp, tags={"team": "a", "other": "b"})
        with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
            client.create_run(exp, tags={"team": "b"})
    client.create_registered_model("fault-nested")
    source_a, run_a = _registrable(client, f"/Users/{databricks_ws.user}/fault-nested")
    source_b, run_b = _registrable(client, f"/Users/{databricks_ws.user}/fault-nested")
    prefix = source_a[:source_a.index(run_a) + len(run_a)]
    with inject_fault(databricks_ws, "POST", CREATE, body={"source": {"prefix": prefix}}, status=403):
        with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
            client.create_model_version("fault-nested", source_a, run_id=run_a)
        assert client.create_model_version("fault-nested", source_b, run_id=run_b).version == "1"
    glob = {"source": {"glob": f"*/{run_b}/*"}}
    with (inject_fault(databricks_ws, "POST", CREATE, body=glob, status=403),
          pytest.raises(MlflowException, match="PERMISSION_DENIED")):
        client.create_model_version("fault-nested", source_b, run_id=run_b)
    assert [v.source for v in client.search_model_versions("name = 'fault-nested'")] == [source_b]


def test_a_condition_that_cannot_apply_to_a_body_is_no_match_not_a_500(emulator):
    db = emulator.databricks
    url = f"{db.url}/api/2.0/mlflow/experiments/create"
    with inject_fault(db, "POST", "*/experiments/create", body={"length(name)": 3}, status=403) as rule:
        odd = requests.post(url, json={"name": 5}, headers=_auth(db), timeout=30)  # length() of a number
        assert odd.status_code < 500 and odd.status_code != 403, odd.text
        assert requests.post(url, json={"name": "abc"}, headers=_auth(db), timeout=30).status_code == 403
        assert rule.hits == 1


def test_shape_makes_a_fault_read_like_the_named_service(emulator, sdk):
    db, aml = emulator.databricks, emulator.azureml
    search = "/api/2.0/mlflow/experiments/search"
    with inject_fault(db, "GET", search, status=429, shape="uc", message="slow down"):
        answer = requests.get(_search_url(db), headers=_auth(db), timeout=30)
    assert answer.status_code == 429 and answer.json() == {"error_code": "RESOURCE_EXHAUSTED", "message": "slow down"}
    with inject_fault(db, "GET", search, status=404, shape="azureml", message="gone"):
        answer = requests.get(_search_url(db), headers=_auth(db), timeout=30)
    assert answer.json() == {"error": {"code": "NotFound", "message": "gone", "details": []}}
    # Azure ML's MLflow route in the plain Databricks/MLflow shape: no Azure object beside it.
    with inject_fault(aml, "GET", search, status=503, shape="databricks", message="busy"):
        answer = requests.get(_search_url(aml), headers=_auth(aml), timeout=30)
    assert answer.json() == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}
    # The real databricks-sdk reads a UC-shaped conflict as the typed error UC's code maps to.
    from databricks.sdk.errors import AlreadyExists

    with inject_fault(db, "GET", "/api/2.1/unity-catalog/catalogs/*", status=409, shape="uc", times=1):
        with pytest.raises(AlreadyExists):
            sdk.catalogs.get("main")


def test_unauthenticated_and_admin_calls_are_never_faulted(emulator):
    db = emulator.databricks
    with inject_fault(db, "*", "*", status=503) as rule:
        assert requests.get(_search_url(db), timeout=30).status_code == 401  # the real answer: no token
        assert requests.get(f"{db.url}/__emulator/faults", headers=_auth(db), timeout=30).status_code == 200
        assert requests.get(_search_url(db), headers=_auth(db), timeout=30).status_code == 503
        assert rule.hits == 1


def test_drop_closes_the_connection_without_an_answer(emulator):
    for ws in (emulator.databricks, emulator.azureml):
        with inject_fault(ws, "GET", "*/experiments/search", drop=True, times=1) as rule:
            target = urlparse(_search_url(ws))
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            conn.request("GET", f"{target.path}?{target.query}", headers=_auth(ws))
            with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
                conn.getresponse()
            conn.close()
            assert rule.hits == 1
        assert requests.get(_search_url(ws), headers=_auth(ws), timeout=30).status_code == 200


def test_delay_adds_latency(emulator):
    db = emulator.databricks
    with inject_fault(db, "GET", "*/experiments/search", delay_s=1.5, times=1):
        started = time.monotonic()
        assert requests.get(_search_url(db), headers=_auth(db), timeout=60).status_code == 200
        assert time.monotonic() - started >= 1.5


def test_a_delay_ends_when_its_client_has_gone(emulator):
    """A long delay holds a worker thread only while its client waits: more clients than the
    workspace has threads give up on a 600 s delay, and the workspace still answers."""
    db = emulator.databricks
    target = urlparse(_search_url(db))
    request = (f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
               f"Authorization: Bearer {db.token}\r\n\r\n").encode()
    with inject_fault(db, "GET", "*/experiments/search", delay_s=600) as rule:
        for _ in range(12):  # sent, then given up on: each is still read and delayed, before /health
            with socket.create_connection((target.hostname, target.port), timeout=30) as sock:
                sock.sendall(request)
        assert requests.get(f"{db.url}/health", timeout=30).status_code == 200
        deadline = time.monotonic() + 60
        while rule.hits < 12:  # every one of them did meet the delay
            assert time.monotonic() < deadline, rule.state()
            time.sleep(0.1)
    assert requests.get(_search_url(db), headers=_auth(db), timeout=30).status_code == 200


def test_after_commit_drop_the_client_retry_duplicates_the_version(aml):
    client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
    client.create_registered_model("fault-after-drop")
    source, run_id = _registrable(client, "fault-after-drop")
    with inject_fault(aml, "POST", CREATE, after_commit="drop", times=1) as rule:
        mv = client.create_model_version("fault-after-drop", source, run_id=run_id, description="once")
        assert rule.hits == 1
    versions = client.search_model_versions("name = 'fault-after-drop'")
    assert mv.version == "2" and sorted(v.version for v in versions) == ["1", "2"]


def test_reset_clears_rules_and_journal(emulator):
    ws = emulator.azureml
    ws.add_fault("GET", "/nothing", status=503)
    ws.journal(True)
    requests.get(_search_url(ws), headers=_auth(ws), timeout=30)
    assert ws.requests()
    assert requests.post(f"{ws.url}/__emulator/reset", json={}, headers=_auth(ws), timeout=120).status_code == 200
    assert ws.faults() == [] and ws.requests() == []


# --- registration lifecycle (Databricks) --------------------------------------------------------


def test_create_answers_pending_then_ready(databricks_ws):
    client = MlflowClient("databricks", "databricks")
    client.create_registered_model("lifecycle-ready")
    source, run_id = _registrable(client, f"/Users/{databricks_ws.user}/lifecycle")
    raw = requests.post(f"{databricks_ws.url}{CREATE}", json={"name": "lifecycle-ready", "source": source,
                                                              "run_id": run_id}, headers=_auth(databricks_ws), timeout=60)
    assert raw.json()["model_version"]["status"] == "PENDING_REGISTRATION"
    assert client.get_model_version("lifecycle-ready", "1").status == "READY"
    # The real client polls model-versions/get until the version leaves PENDING_REGISTRATION, then
    # returns create's answer (PENDING_REGISTRATION, as on Databricks).
    assert client.create_model_version("lifecycle-ready", source, run_id=run_id).status == "PENDING_REGISTRATION"
    assert client.get_model_version("lifecycle-ready", "2").status == "READY"


def test_failed_registration_reaches_the_client_with_its_message(databricks_ws):
    client = MlflowClient("databricks", "databricks")
    client.create_registered_model("lifecycle-failed")
    source, run_id = _registrable(client, f"/Users/{databricks_ws.user}/lifecycle")
    with inject_fault(databricks_ws, "POST", CREATE, fail_registration="Source files could not be copied."):
        with pytest.raises(MlflowException, match="FAILED_REGISTRATION and message: Source files could not be copied"):
            client.create_model_version("lifecycle-failed", source, run_id=run_id)
    mv = client.get_model_version("lifecycle-failed", "1")
    assert (mv.status, mv.status_message) == ("FAILED_REGISTRATION", "Source files could not be copied.")


def test_held_version_is_pending_then_ready(databricks_ws):
    client = MlflowClient("databricks", "databricks")
    client.create_registered_model("lifecycle-held")
    source, run_id = _registrable(client, f"/Users/{databricks_ws.user}/lifecycle")
    with inject_fault(databricks_ws, "POST", CREATE, hold_pending_s=3, times=1):
        mv = client.create_model_version("lifecycle-held", source, run_id=run_id, await_creation_for=0)
    assert mv.status == "PENDING_REGISTRATION"
    assert client.get_model_version("lifecycle-held", "1").status == "PENDING_REGISTRATION"
    deadline = time.monotonic() + 60
    while client.get_model_version("lifecycle-held", "1").status != "READY":
        assert time.monotonic() < deadline, "the held version never became READY"
        time.sleep(0.5)


def test_source_that_does_not_exist_fails_registration_as_databricks_says(databricks_ws):
    """No fault: a source with nothing at it ends FAILED_REGISTRATION with Databricks' message."""
    client = MlflowClient("databricks", "databricks")
    client.create_registered_model("lifecycle-no-source")
    source, run_id = _registrable(client, f"/Users/{databricks_ws.user}/lifecycle")
    missing = source.rsplit("/", 1)[0] + "/no-model-here"
    with pytest.raises(MlflowException, match="FAILED_REGISTRATION and message: Failed registration. "
                                              "The given source path does not exist."):
        client.create_model_version("lifecycle-no-source", missing, run_id=run_id)
    mv = client.get_model_version("lifecycle-no-source", "1")
    assert (mv.status, mv.status_message) == ("FAILED_REGISTRATION",
                                              "Failed registration. The given source path does not exist.")
    # A hold delays the outcome, it does not turn it into READY.
    with inject_fault(databricks_ws, "POST", CREATE, hold_pending_s=2, times=1):
        client.create_model_version("lifecycle-no-source", missing, run_id=run_id, await_creation_for=0)
    deadline = time.monotonic() + 60
    while (mv := client.get_model_version("lifecycle-no-source", "2")).status == "PENDING_REGISTRATION":
        assert time.monotonic() < deadline, "the held version never left PENDING_REGISTRATION"
        time.sleep(0.5)
    assert mv.status == "FAILED_REGISTRATION"
    # A source with files still registers READY.
    client.create_model_version("lifecycle-no-source", source, run_id=run_id)
    assert client.get_model_version("lifecycle-no-source", "3").status == "READY"


# --- the journal --------------------------------------------------------------------------------


def test_journal_is_off_by_default_then_records_in_order(emulator, aml):
    ws = emulator.databricks
    requests.get(_search_url(ws), headers=_auth(ws), timeout=30)
    assert ws.requests() == []
    ws.journal(True)
    client = MlflowClient(aml.tracking_uri, aml.tracking_uri)  # and Azure ML stays off
    client.search_experiments()
    assert aml.requests() == []
    body = {"name": "/Users/someone@example.com/journal-exp"}
    created = requests.post(f"{ws.url}/api/2.0/mlflow/experiments/create", json=body, headers=_auth(ws), timeout=30)
    with inject_fault(ws, "GET", "*/experiments/get", status=503, times=1):
        requests.get(f"{ws.url}/api/2.0/mlflow/experiments/get", params={"experiment_id": "0"},
                     headers=_auth(ws), timeout=30)
    requests.get(f"{ws.url}/?token={ws.token}", timeout=30)  # the UI login link, redirected to "/" with its cookie
    entries = ws.requests()
    assert [e["path"] for e in entries] == ["/api/2.0/mlflow/experiments/create", "/api/2.0/mlflow/experiments/get",
                                            "/", "/"]
    first = entries[0]
    assert first["seq"] < entries[-1]["seq"] and first["status"] == 200 and first["latency_ms"] >= 0
    assert first["auth"] == "bearer"
    create = next(e for e in entries if e["path"].endswith("/experiments/create"))
    assert json.loads(create["request"]["body"]) == body
    assert json.loads(create["response"]["body"]) == created.json()
    assert len(create["response"]["sha256"]) == 64 and create["response"]["size"] == len(created.content)
    faulted = next(e for e in entries if e["path"].endswith("/experiments/get"))
    assert faulted["status"] == 503 and faulted["fault"]["status"] == 503
    login, page = entries[-2:]
    assert login["query"] == "token=REDACTED" and login["auth"] == "query-token"
    assert page["auth"] == "cookie" and page["status"] == 200  # was a 500 while the journal was on
    assert ws.token not in json.dumps(entries)  # no token, header or cookie value is ever kept
    # Filters
    assert [e["seq"] for e in ws.requests(path="/experiments/create")] == [create["seq"]]
    assert all(e["seq"] > create["seq"] for e in ws.requests(since=create["seq"]))
    assert [e["seq"] for e in ws.requests(path="*/experiments/get")] == [faulted["seq"]]


def test_journal_keeps_no_credential_the_workspaces_hand_out(emulator, aml, monkeypatch, tmp_path):
    """UC temporary credentials and the SAS URLs of both workspaces, in answers and in the calls that
    use them, are blanked; what replay needs (paths, names, other fields) is kept."""
    ws = emulator.databricks
    for key, value in ws.env.items():
        monkeypatch.setenv(key, value)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello")
    for handle in (ws, aml):
        handle.journal(True)
    try:
        since = {h.url: (h.requests() or [{"seq": 0}])[-1]["seq"] for h in (ws, aml)}
        uc = f"{ws.url}/api/2.0/mlflow/unity-catalog"
        requests.post(f"{uc}/registered-models/create", json={"name": "main.default.journal_creds"},
                      headers=_auth(ws), timeout=60)
        version = requests.post(f"{uc}/model-versions/create", json={"name": "main.default.journal_creds",
                                                                      "source": "x"}, headers=_auth(ws), timeout=60)
        issued = requests.post(f"{uc}/model-versions/generate-temporary-credentials",
                               json={"name": "main.default.journal_creds", "operation": "MODEL_VERSION_OPERATION_READ",
                                     "version": version.json()["model_version"]["version"]},
                               headers=_auth(ws), timeout=60)
        aws = issued.json()["credentials"]["aws_temp_credentials"]
        # Databricks: the client moves run artifacts through SAS URLs of credentials-for-write.
        monkeypatch.setenv("MLFLOW_DISABLE_DATABRICKS_SDK_FOR_RUN_ARTIFACTS", "true")
        client = MlflowClient("databricks", "databricks")
        exp = client.create_experiment(f"/Users/someone@example.com/journal-creds-{time.time_ns()}")
        client.log_artifact(client.create_run(exp).info.run_id, str(artifact))
        # Azure ML: run history answers SAS content URIs for the files the plugin is about to write.
        client = MlflowClient(aml.tracking_uri, aml.tracking_uri)
        run = client.create_run(client.create_experiment(f"journal-creds-{time.time_ns()}")).info
        scope = (f"subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}/providers/"
                 f"Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")
        written = requests.post(f"{aml.url}/history/v1.0/{scope}/experiments/{run.experiment_id}/runs/{run.run_id}"
                                "/artifacts/batch/metadata", json={"paths": [{"path": "notes.txt"}]},
                                headers=_auth(aml), timeout=60)
        assert "sig=" in written.json()["artifactContentInformation"]["notes.txt"]["contentUri"]
        entries = ws.requests(since=since[ws.url]) + aml.requests(since=since[aml.url])
    finally:
        for handle in (ws, aml):
            handle.journal(False)
    recorded = json.dumps(entries)
    assert aws["secret_access_key"] not in recorded and aws["session_token"] not in recorded
    issued_entry = next(e for e in entries if e["path"].endswith("/generate-temporary-credentials"))
    kept = json.loads(issued_entry["response"]["body"])["credentials"]["aws_temp_credentials"]
    assert kept["secret_access_key"] == kept["session_token"] == "REDACTED"
    assert kept["access_key_id"] == aws["access_key_id"]
    assert issued_entry["response"]["size"] == len(issued.content)  # size and hash are the original's
    # Both workspaces hand out SAS URLs (Databricks credentials-for-write, Azure ML run history) and
    # the client then calls them: no signature is kept, in an answer's body or in a call's query.
    assert re.findall(r"[?&](?:sig|se|skoid)=(?!REDACTED)", recorded) == []
    for path in ("/artifacts/credentials-for-write", "/artifacts/batch/metadata"):
        answer = next(e for e in entries if e["path"].endswith(path))["response"]["body"]
        assert "sig=REDACTED" in answer and "se=REDACTED" in answer, answer
    assert any("sig=REDACTED" in e["query"] for e in entries)  # the blob PUT the client made with it


def test_journal_is_bounded(emulator):
    ws = emulator.databricks
    ws.clear_faults()
    requests.delete(f"{ws.url}/__emulator/requests", headers=_auth(ws), timeout=30)
    state = requests.post(f"{ws.url}/__emulator/requests", json={"enabled": True, "max_entries": 3},
                          headers=_auth(ws), timeout=30).json()
    assert state["max_entries"] == 3
    for _ in range(5):
        requests.get(_search_url(ws), headers=_auth(ws), timeout=30)
    answer = requests.get(f"{ws.url}/__emulator/requests", headers=_auth(ws), timeout=30).json()
    assert len(answer["requests"]) == 3 and answer["evicted"] == 2
    requests.post(f"{ws.url}/__emulator/requests", json={"max_entries": 10000}, headers=_auth(ws), timeout=30)


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_fault_add_list_clear_and_requests(emulator):
    runner = CliRunner()
    state = ["--state-dir", str(emulator.state.root)]
    added = runner.invoke(emulator_cli, ["fault", "add", *state, "--role", "azureml", "--method", "GET",
                                         "--path", "*/experiments/search", "--status", "503", "--times", "1"])
    assert added.exit_code == 0, added.output
    rule = json.loads(added.output)
    ws = emulator.azureml
    assert requests.get(_search_url(ws), headers=_auth(ws), timeout=30).status_code == 503
    listed = runner.invoke(emulator_cli, ["fault", "list", *state, "--json"])
    assert json.loads(listed.output)["azureml"][0]["hits"] == 1
    assert f"#{rule['id']} GET */experiments/search" in runner.invoke(emulator_cli, ["fault", "list", *state]).output
    bad = runner.invoke(emulator_cli, ["fault", "add", *state, "--path", "*"])
    assert bad.exit_code == 1 and "needs an effect" in bad.output
    as_json = runner.invoke(emulator_cli, ["fault", "add", *state, "--json", '{"path": "/x", "delay_s": 0.1}'])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["delay_s"] == 0.1
    assert runner.invoke(emulator_cli, ["fault", "add", *state, "--json", "{x"]).exit_code == 2
    nested = runner.invoke(emulator_cli, ["fault", "add", *state, "--path", "*/runs/create", "--status", "409",
                                          "--shape", "uc", "--body", "tags[?key=='a'].value=b=c",
                                          "--body", "source^=dbfs:/", "--body", "name~=m-*"])
    assert nested.exit_code == 0, nested.output
    assert json.loads(nested.output)["body"] == {
        "tags[?key=='a'].value": "b=c", "source": {"prefix": "dbfs:/"}, "name": {"glob": "m-*"}}
    assert json.loads(nested.output)["shape"] == "uc"
    no_op = runner.invoke(emulator_cli, ["fault", "add", *state, "--path", "*", "--status", "503", "--body", "x"])
    assert no_op.exit_code == 2 and "FIELD=VALUE" in no_op.output
    cleared = runner.invoke(emulator_cli, ["fault", "clear", *state]).output
    assert "databricks: cleared 2" in cleared and "azureml: cleared 1" in cleared
    assert ws.faults() == []

    on = runner.invoke(emulator_cli, ["requests", *state, "--role", "azureml", "--on"])
    assert on.exit_code == 0 and "journal on" in on.output
    requests.get(_search_url(ws), headers=_auth(ws), timeout=30)
    dumped = runner.invoke(emulator_cli, ["requests", *state, "--role", "azureml", "--json", "--path", "experiments"])
    entries = json.loads(dumped.stdout)["requests"]
    assert entries and entries[-1]["path"].endswith("/api/2.0/mlflow/experiments/search")
    assert "-> 200" in runner.invoke(emulator_cli, ["requests", *state, "--role", "azureml"]).output
