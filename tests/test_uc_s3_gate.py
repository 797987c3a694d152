"""The S3 store of Unity Catalog model files on its own (no workspace): boto3 against moto behind the
gate, with credentials made as the workspace makes them. Fast: one small process."""

import io
import os
import time

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator.control import launcher, s3_store
from emulator.control.state import StateDir
from emulator.services.s3 import credentials
from emulator.services.s3.app import BUCKET

PREFIX = "models/m1/versions/v1"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    state = StateDir(tmp_path_factory.mktemp("s3-state"))
    port = launcher.free_port()
    url = s3_store.start(state, port=port)
    yield state, url, port
    s3_store.stop(state)


def _master(state):
    return credentials.master_key(state.config()["databricks_token"])


def _client(url, creds, secret=None):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=creds["access_key_id"],
                        aws_secret_access_key=secret or creds["secret_access_key"],
                        aws_session_token=creds["session_token"], region_name="us-east-1",
                        config=Config(signature_version="s3v4"))


def _code(fn):
    with pytest.raises(ClientError) as err:
        fn()
    return err.value.response["Error"]["Code"]


def test_multipart_objects_survive_a_restart(store):
    state, url, port = store
    s3 = _client(url, credentials.issue(_master(state), BUCKET, PREFIX, write=True, ttl=600))
    big = bytes(range(256)) * (40 * 1024)  # 10 MiB: boto3 sends it as a multipart upload
    s3.upload_fileobj(io.BytesIO(big), BUCKET, f"{PREFIX}/big.bin",
                      Config=boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024,
                                                               multipart_chunksize=5 * 1024 * 1024))
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/small.txt", Body=b"small")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/gone.txt", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/gone.txt")
    s3_store.stop(state)
    assert s3_store.start(state, port=port) == url  # moto starts empty; the gate restores from disk
    s3 = _client(url, credentials.issue(_master(state), BUCKET, PREFIX, write=False, ttl=600))
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/big.bin")["Body"].read() == big
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/small.txt")["Body"].read() == b"small"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")["Contents"]]
    assert keys == [f"{PREFIX}/big.bin", f"{PREFIX}/small.txt"]


def test_a_key_too_long_to_keep_is_s3s_key_too_long_and_leaves_nothing(store):
    state, url, port = store
    s3 = _client(url, credentials.issue(_master(state), BUCKET, PREFIX, write=True, ttl=600))
    too_long = f"{PREFIX}/" + "k" * 230  # 253 bytes, 259 once its "/" are percent-encoded
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key=too_long, Body=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err.value.response["Error"]["Code"] == "KeyTooLongError"
    assert _code(lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=too_long)) == "KeyTooLongError"
    assert _code(lambda: s3.head_object(Bucket=BUCKET, Key=too_long)) == "404"  # nothing was stored
    objects = state.root / "s3" / "objects"
    assert not [p for p in objects.rglob("*") if p.name.startswith(".part-")]
    # Fits (212 bytes encoded): kept, and back after a restart under the same (UTF-8) key.
    fits = f"{PREFIX}/" + "é" * 30 + ".txt"
    s3.put_object(Bucket=BUCKET, Key=fits, Body=b"kept")
    s3_store.stop(state)
    assert s3_store.start(state, port=port) == url
    s3 = _client(url, credentials.issue(_master(state), BUCKET, PREFIX, write=False, ttl=600))
    assert s3.get_object(Bucket=BUCKET, Key=fits)["Body"].read() == b"kept"


def test_signatures_tokens_and_presigned_urls_are_checked(store):
    state, url, _ = store
    master = _master(state)
    creds = credentials.issue(master, BUCKET, PREFIX, write=True, ttl=600)
    s3 = _client(url, creds)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/a.txt", Body=b"a")
    signed = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": f"{PREFIX}/a.txt"})
    assert requests.get(signed, timeout=60).content == b"a"
    tampered = requests.get(signed.replace("a.txt", "small.txt"), timeout=60)
    assert tampered.status_code == 403 and b"SignatureDoesNotMatch" in tampered.content
    short = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": f"{PREFIX}/a.txt"}, ExpiresIn=1)
    time.sleep(2.1)
    expired = requests.get(short, timeout=60)
    assert expired.status_code == 403 and b"Request has expired" in expired.content

    assert _code(lambda: _client(url, creds, secret="y" * 40).get_object(Bucket=BUCKET, Key=f"{PREFIX}/a.txt")) \
        == "SignatureDoesNotMatch"
    forged = dict(creds, session_token=creds["session_token"][:-4] + "0000")
    assert _code(lambda: _client(url, forged).get_object(Bucket=BUCKET, Key=f"{PREFIX}/a.txt")) == "InvalidToken"
    other_workspace = credentials.issue(credentials.master_key("dapi-another-workspace"), BUCKET, PREFIX, True, 600)
    assert _code(lambda: _client(url, other_workspace).get_object(Bucket=BUCKET, Key=f"{PREFIX}/a.txt")) == "InvalidToken"
    no_session = boto3.client("s3", endpoint_url=url, aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x" * 40,
                              region_name="us-east-1", config=Config(signature_version="s3v4"))
    assert _code(lambda: no_session.get_object(Bucket=BUCKET, Key=f"{PREFIX}/a.txt")) == "InvalidAccessKeyId"
    assert _code(lambda: s3.create_bucket(Bucket="another")) == "AccessDenied"
    assert _code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="models/")) == "AccessDenied"
    assert _code(lambda: s3.copy_object(Bucket=BUCKET, Key=f"{PREFIX}/copy", CopySource=f"{BUCKET}/{PREFIX}/a.txt")) \
        == "AccessDenied"


def test_sealing_needs_the_workspaces_admin_token_and_stops_writes(store):
    state, url, _ = store
    master = _master(state)
    prefix = "models/m2/versions/v9"
    s3 = _client(url, credentials.issue(master, BUCKET, prefix, write=True, ttl=600))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/MLmodel", Body=b"1")
    for token in ("", "wrong"):
        resp = requests.post(f"{url}/__emulator/s3/seal", json={"prefix": prefix},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert resp.status_code == 401
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/MLmodel", Body=b"2")  # not sealed yet
    resp = requests.post(f"{url}/__emulator/s3/seal", json={"prefix": prefix},
                         headers={"Authorization": f"Bearer {credentials.admin_token(master)}"}, timeout=60)
    assert resp.status_code == 200
    assert _code(lambda: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/MLmodel", Body=b"3")) == "AccessDenied"
    assert _code(lambda: s3.put_object(Bucket=BUCKET, Key=f"{prefix}/new", Body=b"3")) == "AccessDenied"
    assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}/MLmodel")["Body"].read() == b"2"


def test_emulator_up_runs_the_s3_store_and_down_stops_it(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    state = tmp_path / "state"
    env = {**os.environ, "EMULATOR_DATABRICKS_PORT": str(launcher.free_port()),
           "EMULATOR_AZUREML_PORT": str(launcher.free_port())}
    env.pop("EMULATOR_S3_PORT", None)
    cli = [sys.executable, "-m", "emulator.control.cli"]
    # Hold the default port if it is free: a second emulator must not fail on it.
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", s3_store.DEFAULT_PORT))
        holder.listen()
    except OSError:
        pass
    try:
        subprocess.run([*cli, "up", "--state-dir", str(state)], env=env, check=True, capture_output=True, timeout=300)
        try:
            info = json.loads(subprocess.run([*cli, "status", "--json", "--state-dir", str(state)], env=env,
                                             capture_output=True, text=True, timeout=120).stdout)
            url = info["databricks"]["client_env"]["MLFLOW_S3_ENDPOINT_URL"]
            assert info["s3"]["healthy"] and url != f"http://127.0.0.1:{s3_store.DEFAULT_PORT}"
        finally:
            down = subprocess.run([*cli, "down", "--state-dir", str(state)], env=env, capture_output=True,
                                  text=True, timeout=120)
        assert "stopped s3" in down.stdout
        assert not s3_store.healthy(url) and s3_store.running_url(StateDir(state)) is None
        # Next time it comes back on the same port, so the exported MLFLOW_S3_ENDPOINT_URL stays valid.
        assert s3_store.url(StateDir(state)) == url
    finally:
        holder.close()


def test_a_failed_emulator_up_leaves_no_s3_store_running(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from emulator.control.cli import main as emulator_cli

    for env in ("EMULATOR_DATABRICKS_PORT", "EMULATOR_AZUREML_PORT", "EMULATOR_S3_PORT"):
        monkeypatch.setenv(env, str(launcher.free_port()))
    state = StateDir(tmp_path / "state")
    state.ensure()
    # The workspaces' start-up fails before the fork (emulator.control.prefork); the S3 store starts alongside.
    (state.role_dir("databricks") / "home").write_text("a file where the server's HOME folder goes")
    try:
        result = CliRunner().invoke(emulator_cli, ["up", "--state-dir", str(state.root), "--timeout", "180"])
        assert result.exit_code != 0 and "exited during start-up" in result.output, result.output
        assert s3_store.running_url(state) is None
        assert not s3_store.healthy(f"http://127.0.0.1:{os.environ['EMULATOR_S3_PORT']}")
        assert [r for r in ("databricks", "azureml") if launcher.running(state, r)] == []
    finally:
        for role in ("databricks", "azureml"):
            launcher.stop(state, role)
        s3_store.stop(state)


def test_a_failed_harness_emulator_up_leaves_nothing_running(tmp_path):
    """harness.workspaces.Emulator.up (pytest fixtures, the plugin): a failed start stops what it
    started; a fixture whose set-up raises never reaches its own down (an S3 store was left)."""
    from harness.workspaces import Emulator

    state = StateDir(tmp_path / "state")
    state.ensure()
    (state.role_dir("databricks") / "home").write_text("a file where the server's HOME folder goes")
    emu = Emulator(state.root)
    try:
        with pytest.raises(launcher.LaunchError, match="exited during start-up"):
            emu.up(timeout=180)
        assert s3_store.running_url(state) is None
        assert not s3_store.healthy(f"http://127.0.0.1:{emu.ports['s3']}")
        assert [r for r in ("databricks", "azureml") if launcher.running(state, r)] == []
    finally:
        emu.down()
