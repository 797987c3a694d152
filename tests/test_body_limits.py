"""Request bodies: no body is read before the token check; per-route caps answer 413 in shape.

Both workspaces run with a private TMPDIR (to see that nothing is spooled there) and a small
upload cap (EMULATOR_MAX_UPLOAD_BYTES) so the upload cap can be crossed cheaply.
"""

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from harness.workspaces import Emulator

UPLOAD_CAP = 8 * 1024**2
JSON_CAP = 16 * 1024**2
EIGHT_GIB = 8 * 1024**3


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """Overrides conftest's: the same real servers, with a private temp dir and a small upload cap."""
    tmp = tmp_path_factory.mktemp("server-tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setenv("EMULATOR_MAX_UPLOAD_BYTES", str(UPLOAD_CAP))
        emu = Emulator(tmp_path_factory.mktemp("emulator-state")).up()
    emu.server_tmp = tmp
    yield emu
    emu.down()


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _paths(emu, role):
    """(base URL, path prefix, token) for raw requests to a workspace's MLflow API."""
    if role == "databricks":
        ws = emu.databricks
        return ws.url, "", ws.token
    ws = emu.azureml
    prefix = urlparse(ws.tracking_uri).path
    return ws.url, prefix, ws.token


def _raw_exchange(url: str, head: bytes, body_bytes: bytes, timeout: float = 60.0) -> tuple[bytes, float]:
    """Send ``head`` and some body bytes, then read until the server closes: (all bytes, seconds)."""
    parsed = urlparse(url)
    started = time.monotonic()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        sock.sendall(head + body_bytes)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - started


@pytest.mark.parametrize("role,method,route", [
    ("databricks", "PUT", "/api/2.0/fs/files/Volumes/cat/schema/vol/big.bin"),
    ("databricks", "POST", "/dbfs/big.bin"),
    ("databricks", "POST", "/api/2.0/mlflow/runs/log-batch"),
    ("azureml", "PUT", "/api/2.0/mlflow-artifacts/artifacts/big.bin"),
    ("azureml", "POST", "/api/2.0/mlflow/runs/log-batch"),
])
def test_unauthenticated_8gib_body_gets_401_before_any_of_it_is_read(emulator, role, method, route):
    url, prefix, _ = _paths(emulator, role)
    tmp_before = _du(emulator.server_tmp)
    # The "body" starts with a complete request: if the server kept reading the connection after
    # its answer it would parse this as a second request (and answer it).
    smuggled = f"GET {prefix}/health HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    head = (f"{method} {prefix}{route} HTTP/1.1\r\nHost: {urlparse(url).netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {EIGHT_GIB}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()
    received, took = _raw_exchange(url, head, smuggled + b"x" * 256 * 1024)
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 401"), received[:300]
    assert received.count(b"HTTP/1.1 ") == 1, received  # one answer, then the connection closed
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error_code"] == "UNAUTHENTICATED"
    assert took < 30, took  # promptly: not after waiting for 8 GiB
    assert _du(emulator.server_tmp) <= tmp_before  # nothing spooled to the temp dir


def test_server_still_answers_after_refusing_big_bodies(emulator):
    ws = emulator.databricks
    assert requests.get(f"{ws.url}/health", timeout=30).status_code == 200


@pytest.mark.parametrize("role", ["databricks", "azureml"])
def test_authenticated_json_over_16_mib_is_413_in_mlflow_shape(emulator, role):
    url, prefix, token = _paths(emulator, role)
    name = f"/Shared/too-big-{role}"
    body = json.dumps({"name": name, "pad": "x" * (JSON_CAP + 1024**2)})
    answer = requests.post(f"{url}{prefix}/api/2.0/mlflow/experiments/create", data=body, timeout=120,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "limit" in answer.json()["message"]
    found = requests.get(f"{url}{prefix}/api/2.0/mlflow/experiments/get-by-name", timeout=30,
                         params={"experiment_name": name}, headers={"Authorization": f"Bearer {token}"})
    assert found.status_code == 404  # nothing was created


@pytest.mark.parametrize("role", ["databricks", "azureml"])
def test_chunked_json_over_16_mib_is_413(emulator, role):
    url, prefix, token = _paths(emulator, role)

    def chunks():  # no Content-Length: requests sends Transfer-Encoding: chunked
        yield b'{"name": "/Shared/chunked-too-big", "pad": "'
        for _ in range(17):
            yield b"x" * 1024**2
        yield b'"}'

    answer = requests.post(f"{url}{prefix}/api/2.0/mlflow/experiments/create", data=chunks(), timeout=120,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def _volume_file(emulator, name):
    return Path(emulator.state.root) / "databricks" / "volumes" / "cat" / "schema" / "vol" / name


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_over_the_cap_is_413_and_leaves_nothing(emulator, chunked):
    ws = emulator.databricks
    url = f"{ws.url}/api/2.0/fs/files/Volumes/cat/schema/vol/over-{chunked}.bin"
    payload = b"y" * (UPLOAD_CAP + 1)
    data = (payload[i:i + 1024**2] for i in range(0, len(payload), 1024**2)) if chunked else payload
    answer = requests.put(url, data=data, timeout=120, headers={"Authorization": f"Bearer {ws.token}"})
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    folder = _volume_file(emulator, "x").parent
    assert not folder.exists() or not [p.name for p in folder.iterdir() if "over" in p.name or ".upload-" in p.name]


def test_upload_at_the_cap_is_stored(emulator):
    ws = emulator.databricks
    payload = os.urandom(UPLOAD_CAP)
    url = f"{ws.url}/api/2.0/fs/files/Volumes/cat/schema/vol/at-cap.bin"
    answer = requests.put(url, data=payload, timeout=120, headers={"Authorization": f"Bearer {ws.token}"})
    assert answer.status_code == 204, answer.text[:300]
    back = requests.get(url, timeout=120, headers={"Authorization": f"Bearer {ws.token}"})
    assert back.content == payload


def test_azureml_artifact_upload_over_the_cap_is_413(emulator):
    url, prefix, token = _paths(emulator, "azureml")
    answer = requests.put(f"{url}{prefix}/api/2.0/mlflow-artifacts/artifacts/over/cap.bin",
                          data=b"z" * (UPLOAD_CAP + 1), timeout=120, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 413, answer.text[:300]
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert not (Path(emulator.state.root) / "azureml" / "artifacts" / "over").exists()
