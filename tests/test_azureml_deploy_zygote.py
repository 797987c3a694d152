"""Online deployments' warm parent (emulator.services.azureml.inference_zygote): the fast path's
inference servers are forked from one process per workspace that imported MLflow and the common
flavours once, instead of two new interpreters per deployment (issue 33 target 5; the figure is
``python -m bench.online_deploy``). Driven through the ARM API with real MLflow-registered models.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from unittest import mock

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from emulator.control import launcher
from harness import mlflow_uris
from harness.online_endpoints import OnlineEndpointsClient
from harness.workspaces import Emulator

X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0]])
RUNNER = b"emulator.services.azureml.deployment_runner"


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("deploy-zygote")).up()
    yield emu
    emu.down()


@pytest.fixture(scope="module")
def ml(emu):
    aml = emu.azureml
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_TOKEN": aml.token}):
        with mlflow_uris.using(aml.tracking_uri, aml.tracking_uri):  # and back, active experiment included
            mlflow.set_experiment("deploy-zygote")
            with mlflow.start_run():
                mlflow.sklearn.log_model(LinearRegression().fit(X, X @ [2.0, -1.0]), name="model",
                                         registered_model_name="zygote-model")
    return OnlineEndpointsClient.for_workspace(aml)


def _ppid(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def _runner_processes() -> dict[int, int]:
    """pid -> parent pid of every deployment_runner process."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and RUNNER in (proc / "cmdline").read_bytes().split(b"\0"):
                found[int(proc.name)] = _ppid(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _listening_pid(ml, endpoint: str) -> int:
    """The inference server's pid: the runner process whose working directory holds this deployment's model."""
    log = ml.logs(endpoint, "blue")
    assert "Listening on" in log, log
    port = log.rsplit("Listening on 127.0.0.1:", 1)[1].split(";")[0]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == int(port) and fields[3] == "0A":  # LISTEN
            inode = fields[9]
    assert inode, f"nothing listens on {port}"
    for pid in _runner_processes():
        try:
            if any(os.readlink(fd) == f"socket:[{inode}]" for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no runner process holds the socket on port {port}")


def _score(ml, endpoint: str) -> list:
    resp = ml.score(endpoint, {"input_data": X.tolist()}, deployment="blue")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_inference_servers_are_forked_from_one_warm_parent(emu, ml):
    workspace = launcher.running(emu.state, "azureml").pid
    for endpoint in ("zy-one", "zy-two"):
        ml.create_endpoint(endpoint)
        ml.create_deployment(endpoint, "blue", "azureml:zygote-model:1")
        assert _score(ml, endpoint) == pytest.approx((X @ [2.0, -1.0]).tolist())
    servers = [_listening_pid(ml, endpoint) for endpoint in ("zy-one", "zy-two")]
    parents = {_ppid(pid) for pid in servers}
    # Before: each server was the workspace's own child, a new interpreter per deployment.
    assert len(parents) == 1 and workspace not in parents, (servers, parents, workspace)
    zygote = parents.pop()
    assert _ppid(zygote) == workspace
    # The parent holds no secret: the model's environment, not the workspace's.
    environ = Path(f"/proc/{zygote}/environ").read_bytes().decode(errors="replace")
    assert emu.azureml.token not in environ and str(emu.state.root.resolve()) not in environ


def test_a_killed_parent_takes_its_servers_along_and_they_come_back(emu, ml):
    if "zy-one" not in {e["name"] for e in ml.call("GET", "/onlineEndpoints").json()["value"]}:
        ml.create_endpoint("zy-one")
        ml.create_deployment("zy-one", "blue", "azureml:zygote-model:1")
    old_server = _listening_pid(ml, "zy-one")
    zygote = _ppid(old_server)
    os.kill(zygote, signal.SIGKILL)
    # Its children notice (they watch their parent) and exit; the supervisor starts them again,
    # through a new warm parent.
    deadline = time.monotonic() + 600
    while True:
        log = ml.logs("zy-one", "blue")
        if log.count("=== starting inference server") >= 2 and log.rstrip().endswith("POST /score") \
                and _runner_processes().get(old_server) is None:
            break
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.5)
    assert _score(ml, "zy-one") == pytest.approx((X @ [2.0, -1.0]).tolist())
    new_server = _listening_pid(ml, "zy-one")
    assert new_server != old_server and _ppid(new_server) != zygote
