"""Tracing parity: ``POST /v1/traces`` (OTLP) on both workspaces, so traces keep their span data
(``/ajax-api/3.0/mlflow/traces/get``) as on a stock MLflow 3.17 server, and ``mlflow.search_traces``
on ``databricks`` (V4 search -> ENDPOINT_NOT_FOUND -> V3). Real mlflow 3.17.2 client in a fresh
interpreter; raw requests for bad input."""

import gzip
import json
import subprocess
import sys
import textwrap

import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

CLIENT = textwrap.dedent(
    """
    import json, sys, mlflow
    mlflow.set_tracking_uri(sys.argv[1])
    exp = mlflow.set_experiment(sys.argv[2])

    @mlflow.trace
    def double(x):
        return x * 2

    with mlflow.start_span("outer") as span:
        span.set_inputs({"x": 3})
        double(3)
    trace_id = mlflow.get_last_active_trace_id()
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(trace_id)
    found = mlflow.search_traces(experiment_ids=[exp.experiment_id], return_type="list")
    def ids(where):
        return [t.info.trace_id for t in mlflow.search_traces(experiment_ids=[exp.experiment_id], filter_string=where,
                                                              return_type="list")]
    print("RESULT " + json.dumps({"trace_id": trace_id, "experiment_id": exp.experiment_id,
                                  "spans": sorted(s.name for s in trace.data.spans),
                                  "found": [t.info.trace_id for t in found],
                                  "by_span_name": ids("span.name = 'double'"),
                                  "by_text": ids("trace.text LIKE '%double%'"),
                                  "by_other_name": ids("span.name = 'missing'")}))
    """
)


def run_client(env, tracking_uri, experiment):
    proc = subprocess.run([sys.executable, "-c", CLIENT, tracking_uri, experiment], capture_output=True,
                          text=True, env=env, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def ajax_trace(base, token, trace_id):
    return requests.get(f"{base}/ajax-api/3.0/mlflow/traces/get", params={"trace_id": trace_id},
                        headers={"Authorization": f"Bearer {token}"}, timeout=60)


def clean_env(**extra):
    import os

    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "MLFLOW_TRACKING_"))}
    return {**keep, **extra}


def assert_span_data(answer, trace_id):
    # On the original server: 500 "Trace data not stored in tracking store" (spans went to an artifact).
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()["trace"]
    assert body["trace_info"]["trace_id"] == trace_id
    names = sorted(s["name"] for s in body["spans"])
    assert names == ["double", "outer"], names


def test_tracing_against_azureml_keeps_span_data(emulator):
    aml = emulator.azureml
    result = run_client(clean_env(MLFLOW_TRACKING_TOKEN=aml.token), aml.tracking_uri, "traces")
    assert result["spans"] == ["double", "outer"] and result["found"] == [result["trace_id"]]
    assert_span_data(ajax_trace(aml.tracking_uri, aml.token, result["trace_id"]), result["trace_id"])


def test_tracing_against_databricks(emulator, sdk):
    dbx = emulator.databricks
    env = clean_env(DATABRICKS_HOST=dbx.url, DATABRICKS_TOKEN=dbx.token)
    # Tracking URI "databricks": traces/search (V4 -> 404 -> V3) finds the trace.
    result = run_client(env, "databricks", f"/Users/{dbx.user}/traces")
    assert result["spans"] == ["double", "outer"] and result["found"] == [result["trace_id"]]
    # The client stores the spans as a Files API file (traces.json); search and the UI read them too.
    assert result["by_span_name"] == result["by_text"] == [result["trace_id"]], result
    assert result["by_other_name"] == []
    assert_span_data(ajax_trace(dbx.url, dbx.token, result["trace_id"]), result["trace_id"])
    # A span file that is not span data is still stored as the artifact it is: 204, never a 5xx.
    url = (f"{dbx.url}/api/2.0/fs/files/WorkspaceInternal/Mlflow/Artifacts/{result['experiment_id']}/Runs/traces/"
           f"{result['trace_id']}/artifacts/traces.json")
    auth = {"Authorization": f"Bearer {dbx.token}"}
    assert requests.put(url, data=b"{not spans", headers=auth, timeout=60).status_code == 204
    assert requests.get(url, headers=auth, timeout=60).content == b"{not spans"
    # A plain MLflow client at the workspace's URL sends spans over OTLP, as to a stock server.
    plain = run_client(clean_env(MLFLOW_TRACKING_TOKEN=dbx.token), dbx.url, f"/Users/{dbx.user}/otlp")
    assert_span_data(ajax_trace(dbx.url, dbx.token, plain["trace_id"]), plain["trace_id"])


def otlp_json(trace_hex="5b8aa5a2d2c872e8321cf37308d69df2", span_hex="051581bf3cb55c13"):
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [{
        "traceId": trace_hex, "spanId": span_hex, "name": "external", "kind": 1,
        "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001000000000",
        "attributes": [], "status": {"code": 1}}]}]}]}


@pytest.mark.parametrize("role", ["databricks", "azureml"])
def test_otlp_endpoint_bad_input_is_a_clear_4xx(emulator, sdk, role):
    ws = getattr(emulator, role)
    base = ws.url if role == "databricks" else ws.tracking_uri
    auth = {"Authorization": f"Bearer {ws.token}"}
    if role == "databricks":
        exp_id = requests.post(f"{base}/api/2.0/mlflow/experiments/create", headers=auth, timeout=60,
                               json={"name": f"/Users/{ws.user}/otlp-raw"}).json()["experiment_id"]
    else:
        exp_id = requests.post(f"{base}/api/2.0/mlflow/experiments/create", headers=auth, timeout=60,
                               json={"name": "otlp-raw"}).json()["experiment_id"]
    url = f"{base}/v1/traces"
    good = {"Content-Type": "application/json", "x-mlflow-experiment-id": exp_id}

    def post(data, headers, with_auth=True):
        return requests.post(url, data=data, headers={**(auth if with_auth else {}), **headers}, timeout=60)

    assert post(json.dumps(otlp_json()), good, with_auth=False).status_code == 401
    assert post(json.dumps(otlp_json()), {"Content-Type": "application/json"}).status_code == 422
    assert post(json.dumps(otlp_json()), {**good, "Content-Type": "text/plain"}).status_code == 400
    assert post(b"\xff\x00garbage", {**good, "Content-Type": "application/x-protobuf"}).status_code == 400
    assert post(b"{not json", good).status_code == 400
    assert post(json.dumps({"resourceSpans": []}), good).status_code == 400
    missing = post(json.dumps(otlp_json()), {**good, "x-mlflow-experiment-id": "987654321"})
    assert missing.status_code == 404, missing.text
    bomb = gzip.compress(b" " * (80 * 1024**2))  # 80 MiB of spaces in ~80 KB
    assert post(bomb, {**good, "Content-Encoding": "gzip"}).status_code == 413
    # A well-formed external OTLP export (JSON, gzip) is stored with its span data.
    ok = post(gzip.compress(json.dumps(otlp_json()).encode()), {**good, "Content-Encoding": "gzip"})
    assert ok.status_code == 200, ok.text
    answer = ajax_trace(base, ws.token, "tr-5b8aa5a2d2c872e8321cf37308d69df2")
    assert answer.status_code == 200 and [s["name"] for s in answer.json()["trace"]["spans"]] == ["external"]
