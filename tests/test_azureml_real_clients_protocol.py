"""The HTTPS side of the Azure ML workspace, byte by byte: what the real Azure clients send, and abuse.

requests / raw sockets against real servers on loopback (the full client stack runs in
test_azureml_real_clients.py). Covers the TLS listener and its CA, the CONNECT proxy, cloud
metadata and /subscriptions, both managed-identity variants, run history, the blob plane and its
SAS checks, and which clients see ``azureml://`` artifact URIs.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from emulator.services.azureml import blob_sas

PLUGIN_UA = "mlflow-python-client/3.15.0 azureml-mlflow/1.62.0.post6"


@pytest.fixture(scope="module")
def aml(emulator):
    info = emulator.status()["azureml"]
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment wins over .verify
    session.verify = info["ca_bundle"]
    token = requests.get(info["identity_endpoint"], timeout=30,
                         params={"resource": "https://management.azure.com/", "api-version": "2019-08-01"},
                         headers={"X-IDENTITY-HEADER": info["identity_header"]}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    scope = (f"subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}/providers/"
             f"Microsoft.MachineLearningServices/workspaces/{info['workspace_name']}")
    return {**info, "session": session, "scope": scope, "msi_token": token}


def tls(aml, path: str) -> str:
    return f"{aml['tls_url']}{path}"


def new_run(aml, ua: str = "python-requests") -> dict:
    base = tls(aml, f"/mlflow/v2.0/{aml['scope']}/api/2.0/mlflow")
    name = f"proto-{uuid.uuid4().hex[:8]}"
    exp = aml["session"].post(f"{base}/experiments/create", json={"name": name}, timeout=30).json()
    run = aml["session"].post(f"{base}/runs/create", json={"experiment_id": exp["experiment_id"]},
                              headers={"User-Agent": ua}, timeout=30)
    assert run.status_code == 200, run.text
    return run.json()["run"]["info"]


def history(aml, info: dict, suffix: str = "", exp: str | None = None) -> str:
    return tls(aml, f"/history/v1.0/{aml['scope']}/experiments/{exp or info['experiment_id']}/runs/"
                    f"{info['run_id']}/artifacts{suffix}")


def write_urls(aml, info: dict, *paths: str) -> requests.Response:
    return aml["session"].post(history(aml, info, "/batch/metadata"), timeout=30,
                               json={"paths": [{"path": p} for p in paths]})


def put_blob(url: str, data: bytes, verify: str) -> requests.Response:
    return requests.put(url, data=data, headers={"x-ms-blob-type": "BlockBlob"}, verify=verify, timeout=30)


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- TLS, CA, proxy ------------------------------------------------------------------------------

def test_https_listener_uses_the_state_dirs_ca_which_is_retrievable(aml, emulator):
    assert requests.get(tls(aml, "/health"), verify=aml["ca_file"], timeout=30).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls(aml, "/health"), timeout=30)  # not trusted without the emulator's CA
    served = requests.get(f"{emulator.azureml.url}/__emulator/ca.pem", timeout=30)
    assert served.status_code == 200 and served.content == open(aml["ca_file"], "rb").read()
    bundle = open(aml["ca_bundle"], "rb").read()
    assert served.content.strip() in bundle and bundle.count(b"BEGIN CERTIFICATE") > 10  # + system CAs


def _handshake_through_proxy(aml, host: str) -> bytes:
    proxy = urlsplit(aml["proxy_url"])
    with socket.create_connection((proxy.hostname, proxy.port), timeout=30) as sock:
        sock.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        answer = sock.recv(4096)
        if not answer.startswith(b"HTTP/1.1 200"):
            return answer
        context = ssl.create_default_context(cafile=aml["ca_file"])
        with context.wrap_socket(sock, server_hostname=host) as tls_sock:
            tls_sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return tls_sock.recv(4096)


def test_connect_proxy_tunnels_only_the_emulated_azure_hosts(aml):
    for host in ("management.azure.com", "westeurope.api.azureml.ms", "login.microsoftonline.com"):
        assert _handshake_through_proxy(aml, host).startswith(b"HTTP/1.1 200"), host  # cert valid for it
    # The blob host is the blob plane: no SAS, no entry (but the TLS handshake for its name worked).
    blob = _handshake_through_proxy(aml, "emulatorwsstorage.blob.core.windows.net")
    assert blob.startswith(b"HTTP/1.1 403") and b"x-ms-error-code: AuthenticationFailed" in blob
    assert _handshake_through_proxy(aml, "example.com").startswith(b"HTTP/1.1 403")
    plain = requests.get(f"{aml['proxy_url']}/health", timeout=30)
    assert plain.status_code == 405


# -- ARM: cloud metadata, subscriptions, workspace addresses -------------------------------------

def test_cloud_metadata_is_anonymous_and_names_the_https_listener(aml):
    answer = requests.get(tls(aml, "/metadata/endpoints"), params={"api-version": "2022-09-01"},
                          verify=aml["ca_file"], timeout=30)
    assert answer.status_code == 200
    clouds = {c["name"]: c for c in answer.json()}
    assert set(clouds) == {"AzureCloud", "AzureMLEmulator"}
    assert clouds["AzureMLEmulator"]["resourceManager"] == tls(aml, "/")
    assert clouds["AzureCloud"]["suffixes"]["storage"] == "core.windows.net"
    old = requests.get(tls(aml, "/metadata/endpoints"), params={"api-version": "2019-05-01"},
                       verify=aml["ca_file"], timeout=30).json()
    assert old["name"] == "AzureCloud"  # one object before 2022-09-01


def test_subscriptions_need_a_token(aml):
    url = tls(aml, "/subscriptions")
    anonymous = requests.get(url, params={"api-version": "2022-12-01"}, verify=aml["ca_file"], timeout=30)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    listed = aml["session"].get(url, params={"api-version": "2022-12-01"}, timeout=30)
    assert listed.status_code == 200
    assert [s["subscriptionId"] for s in listed.json()["value"]] == [aml["subscription_id"]]
    one = aml["session"].get(f"{url}/{aml['subscription_id']}", params={"api-version": "2022-12-01"}, timeout=30)
    assert one.status_code == 200 and one.json()["state"] == "Enabled"
    other = aml["session"].get(f"{url}/not-mine", params={"api-version": "2022-12-01"}, timeout=30)
    assert other.status_code == 404 and other.json()["error"]["code"] == "SubscriptionNotFound"


def test_workspace_addresses_follow_how_the_client_came(aml, emulator):
    path = f"/{aml['scope']}"
    over_tls = aml["session"].get(tls(aml, path), params={"api-version": "2023-10-01"}, timeout=30).json()
    netloc = urlsplit(aml["tls_url"]).netloc
    assert over_tls["properties"]["mlFlowTrackingUri"] == f"azureml://{netloc}/mlflow/v2.0/{aml['scope']}"
    assert over_tls["properties"]["discoveryUrl"] == f"https://{netloc}/discovery"
    discovery = aml["session"].get(tls(aml, "/discovery"), timeout=30).json()
    assert discovery["history"] == f"https://{netloc}"
    # A forged Host is not echoed back: the client gets the configured address.
    forged = aml["session"].get(tls(aml, path), params={"api-version": "2023-10-01"}, timeout=30,
                                headers={"Host": "attacker.example:443"}).json()
    assert forged["properties"]["discoveryUrl"] == f"https://{netloc}/discovery"
    # Plain HTTP keeps the plain address (vanilla clients and harness.azureml).
    plain = requests.get(f"{emulator.azureml.url}{path}", params={"api-version": "2023-10-01"}, timeout=30,
                         headers={"Authorization": f"Bearer {aml['msi_token']}"}).json()
    plain_netloc = urlsplit(emulator.azureml.url).netloc
    assert plain["properties"]["mlFlowTrackingUri"] == f"azureml://{plain_netloc}/mlflow/v2.0/{aml['scope']}"


# -- managed identity -----------------------------------------------------------------------------

def test_azureml_core_msi_variant_and_audiences(aml):
    # azureml-core: MSI_ENDPOINT + "/", header "secret", api-version 2017-09-01, management.core.windows.net.
    url = aml["identity_endpoint"] + "/"
    params = {"resource": "https://management.core.windows.net/", "api-version": "2017-09-01"}
    answer = requests.get(url, params=params, headers={"secret": aml["identity_header"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    core_token = answer.json()["access_token"]
    for headers in ({}, {"secret": "wrong"}, {"X-IDENTITY-HEADER": ""}):
        refused = requests.get(url, params=params, headers=headers, timeout=30)
        assert refused.status_code == 401 and "access_token" not in refused.text
    arm = tls(aml, "/subscriptions")
    ok = requests.get(arm, params={"api-version": "2022-12-01"}, verify=aml["ca_file"], timeout=30,
                      headers={"Authorization": f"Bearer {core_token}"})
    assert ok.status_code == 200
    # Arrangement B: the resource manager is the HTTPS listener, so tokens carry it as audience.
    own = requests.get(aml["identity_endpoint"], timeout=30, headers={"X-IDENTITY-HEADER": aml["identity_header"]},
                       params={"resource": tls(aml, "/"), "api-version": "2019-08-01"}).json()["access_token"]
    assert requests.get(arm, params={"api-version": "2022-12-01"}, verify=aml["ca_file"], timeout=30,
                        headers={"Authorization": f"Bearer {own}"}).status_code == 200
    foreign = requests.get(aml["identity_endpoint"], timeout=30, headers={"X-IDENTITY-HEADER": aml["identity_header"]},
                           params={"resource": "https://vault.azure.net", "api-version": "2019-08-01"}).json()
    refused = requests.get(arm, params={"api-version": "2022-12-01"}, verify=aml["ca_file"], timeout=30,
                           headers={"Authorization": f"Bearer {foreign['access_token']}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"


# -- run history + blob plane ---------------------------------------------------------------------

def test_history_upload_list_and_read_back_through_blob_sas(aml):
    info = new_run(aml)
    answer = write_urls(aml, info, "a.txt", "dir/b.txt")
    assert answer.status_code == 200 and answer.json()["errors"] == {}
    content = answer.json()["artifactContentInformation"]
    for path, data in (("a.txt", b"alpha"), ("dir/b.txt", b"beta")):
        uri = content[path]["contentUri"]
        assert ".blob.core.windows.net/" in uri  # the plugin downloads nothing else
        created = put_blob(uri, data, aml["ca_bundle"])
        assert created.status_code == 201 and created.headers["ETag"] and created.headers["Last-Modified"]
    listed = aml["session"].get(history(aml, info), timeout=30).json()
    assert [a["path"] for a in listed["value"]] == ["a.txt", "dir/b.txt"] and listed["nextLink"] is None
    read = aml["session"].get(history(aml, info, "/contentinfo"), params={"path": "dir/b.txt"}, timeout=30)
    assert read.status_code == 200
    got = requests.get(read.json()["contentUri"], verify=aml["ca_bundle"], timeout=30,
                       headers={"x-ms-range": "bytes=1-2"})
    assert got.status_code == 206 and got.content == b"et"
    assert got.headers["Content-Range"] == "bytes 1-2/4" and got.headers["x-ms-blob-type"] == "BlockBlob"
    etag = got.headers["ETag"]
    assert requests.get(read.json()["contentUri"], verify=aml["ca_bundle"], timeout=30,
                        headers={"If-Match": etag}).content == b"beta"
    stale = requests.get(read.json()["contentUri"], verify=aml["ca_bundle"], timeout=30,
                         headers={"If-Match": '"0x1"'})
    assert stale.status_code == 412 and stale.headers["x-ms-error-code"] == "ConditionNotMet"
    beyond = requests.get(read.json()["contentUri"], verify=aml["ca_bundle"], timeout=30,
                          headers={"x-ms-range": "bytes=10-20"})
    assert beyond.status_code == 416 and beyond.headers["x-ms-error-code"] == "InvalidRange"
    # The vanilla view of the same run reads the same bytes.
    mlflow_url = tls(aml, f"/mlflow/v2.0/{aml['scope']}/api/2.0/mlflow-artifacts/artifacts/"
                          f"{info['experiment_id']}/{info['run_id']}/artifacts/dir/b.txt")
    assert aml["session"].get(mlflow_url, timeout=30).content == b"beta"


def test_history_over_plain_http_hands_out_blob_urls_of_the_plain_listener(emulator):
    """Not https:// on the plain port (no TLS there): the URL works as handed out."""
    ws = emulator.azureml
    headers = {"Authorization": f"Bearer {ws.token}"}
    api = f"{ws.tracking_uri}/api/2.0/mlflow"
    exp = requests.post(f"{api}/experiments/create", json={"name": f"plain-{uuid.uuid4().hex[:8]}"},
                        headers=headers, timeout=30).json()["experiment_id"]
    run = requests.post(f"{api}/runs/create", json={"experiment_id": exp}, headers=headers, timeout=30).json()
    scope = (f"subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/"
             f"Microsoft.MachineLearningServices/workspaces/{ws.workspace_name}")
    history_url = f"{ws.url}/history/v1.0/{scope}/experiments/{exp}/runs/{run['run']['info']['run_id']}/artifacts"
    answer = requests.post(f"{history_url}/batch/metadata", json={"paths": [{"path": "plain.txt"}]},
                           headers=headers, timeout=30)
    uri = answer.json()["artifactContentInformation"]["plain.txt"]["contentUri"]
    assert uri.startswith(f"{ws.url}/") and ".blob.core.windows.net/" in uri, uri
    assert put_blob(uri, b"plain", verify=True).status_code == 201
    read = requests.get(f"{history_url}/contentinfo", params={"path": "plain.txt"}, headers=headers, timeout=30)
    assert requests.get(read.json()["contentUri"], timeout=30).content == b"plain"


def test_history_rejects_paths_that_escape_and_unknown_things(aml):
    info = new_run(aml)
    answer = write_urls(aml, info, "ok.txt", "../escape.txt", "/abs.txt", "a/../../b", "")
    assert answer.status_code == 200
    body = answer.json()
    assert list(body["artifactContentInformation"]) == ["ok.txt"]
    assert set(body["errors"]) == {"../escape.txt", "/abs.txt", "a/../../b", ""}
    assert all(e["error"]["code"] == "ValidationError" for e in body["errors"].values())
    session = aml["session"]
    missing = session.get(history(aml, info, "/contentinfo"), params={"path": "nope.txt"}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    bad = session.get(history(aml, info, "/contentinfo"), params={"path": "../../../etc/passwd"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ValidationError"
    other_exp = session.get(history(aml, info, exp="999999"), timeout=30)
    assert other_exp.status_code == 404
    unknown_run = session.get(history(aml, {**info, "run_id": "0" * 32}), timeout=30)
    assert unknown_run.status_code == 404 and "error" in unknown_run.json()
    too_long = "x" * 300 + ".txt"  # longer than a file name may be
    assert session.get(history(aml, info, "/contentinfo"), params={"path": too_long}, timeout=30).status_code == 404
    long_url = write_urls(aml, info, too_long).json()["artifactContentInformation"][too_long]["contentUri"]
    refused = put_blob(long_url, b"x", aml["ca_bundle"])
    assert refused.status_code == 400 and refused.headers["x-ms-error-code"] == "InvalidResourceName"
    assert requests.get(long_url, verify=aml["ca_bundle"], timeout=30).status_code == 404
    not_json = session.post(history(aml, info, "/batch/metadata"), data="[1, 2", timeout=30,
                            headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "ValidationError"
    anonymous = requests.get(history(aml, info), verify=aml["ca_file"], timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"


def test_blob_sas_is_checked(aml):
    info = new_run(aml)
    url = write_urls(aml, info, "target.txt").json()["artifactContentInformation"]["target.txt"]["contentUri"]
    assert put_blob(url, b"original", aml["ca_bundle"]).status_code == 201
    bundle = aml["ca_bundle"]
    forged_sig = put_blob(with_query(url, sig=base64.b64encode(b"x" * 32).decode()), b"evil", bundle)
    assert forged_sig.status_code == 403 and forged_sig.headers["x-ms-error-code"] == "AuthenticationFailed"
    other_blob = put_blob(url.replace("/target.txt?", "/other.txt?"), b"evil", bundle)
    assert other_blob.status_code == 403
    escaped = put_blob(url.replace("/target.txt?", "/..%2F..%2F..%2Fescape.txt?"), b"evil", bundle)
    assert escaped.status_code in (400, 403)
    no_sas = put_blob(url.split("?")[0], b"evil", bundle)
    assert no_sas.status_code == 403
    read_url = aml["session"].get(history(aml, info, "/contentinfo"), params={"path": "target.txt"},
                                  timeout=30).json()["contentUri"]
    read_only = put_blob(read_url, b"evil", bundle)
    assert read_only.status_code == 403 and read_only.headers["x-ms-error-code"] == "AuthorizationPermissionMismatch"
    parts = urlsplit(url)
    container, blob = parts.path.split("/", 3)[2:]  # /<account>.blob.core.windows.net/<container>/<blob>
    expired = blob_sas.sign(aml["token"], parts.path.split("/")[1].split(".")[0], container, blob, "rcw", ttl=-60)
    assert put_blob(f"{url.split('?')[0]}?{expired}", b"evil", bundle).status_code == 403
    assert requests.get(read_url, verify=bundle, timeout=30).content == b"original"  # nothing was overwritten


def test_block_upload_and_bad_block_lists_keep_the_old_bytes(aml):
    info = new_run(aml)
    url = write_urls(aml, info, "blocks.bin").json()["artifactContentInformation"]["blocks.bin"]["contentUri"]
    bundle = aml["ca_bundle"]
    assert put_blob(url, b"before", bundle).status_code == 201
    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(3)]
    for block_id, data in zip(ids, (b"one-", b"two-", b"three")):
        staged = requests.put(with_query(url, comp="block", blockid=block_id), data=data, verify=bundle, timeout=30)
        assert staged.status_code == 201
    bad_list = "<?xml version='1.0' encoding='utf-8'?><BlockList><Latest>bm90LXN0YWdlZA==</Latest></BlockList>"
    refused = requests.put(with_query(url, comp="blocklist"), data=bad_list, verify=bundle, timeout=30)
    assert refused.status_code == 400 and refused.headers["x-ms-error-code"] == "InvalidBlockList"
    garbage = requests.put(with_query(url, comp="blocklist"), data="<BlockList", verify=bundle, timeout=30)
    assert garbage.status_code == 400
    read_url = aml["session"].get(history(aml, info, "/contentinfo"), params={"path": "blocks.bin"},
                                  timeout=30).json()["contentUri"]
    assert requests.get(read_url, verify=bundle, timeout=30).content == b"before"
    good = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
        f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    assert requests.put(with_query(url, comp="blocklist"), data=good, verify=bundle, timeout=30).status_code == 201
    assert requests.get(read_url, verify=bundle, timeout=30).content == b"one-two-three"


def test_history_listing_is_paged(aml):
    info = new_run(aml)
    paths = [f"many/f{i:03d}.txt" for i in range(105)]
    content = write_urls(aml, info, *paths).json()["artifactContentInformation"]
    for path in paths:
        assert put_blob(content[path]["contentUri"], path.encode(), aml["ca_bundle"]).status_code == 201
    first = aml["session"].get(history(aml, info), timeout=30).json()
    assert len(first["value"]) == 100 and first["nextLink"]
    second = aml["session"].get(first["nextLink"], timeout=30).json()
    assert [a["path"] for a in first["value"] + second["value"]] == paths and second["nextLink"] is None


# -- which clients see azureml:// artifact URIs ---------------------------------------------------

def test_plugin_sees_azureml_uris_and_vanilla_clients_mlflow_artifacts(aml, emulator):
    base = f"/mlflow/v2.0/{aml['scope']}/api/2.0/mlflow/runs/get"
    info = new_run(aml, ua=PLUGIN_UA)
    # the experiment's name (new_run's proto-<hex>), as the service writes it
    assert re.fullmatch(rf"azureml://experiments/proto-[0-9a-f]{{8}}/runs/{info['run_id']}/artifacts",
                        info["artifact_uri"]), info["artifact_uri"]
    params = {"run_id": info["run_id"]}
    vanilla_tls = aml["session"].get(tls(aml, base), params=params, timeout=30).json()["run"]["info"]
    assert vanilla_tls["artifact_uri"].startswith("mlflow-artifacts:/")
    plugin_plain = requests.get(f"{emulator.azureml.url}{base}", params=params, timeout=30,
                                headers={"Authorization": f"Bearer {aml['msi_token']}", "User-Agent": PLUGIN_UA})
    assert plugin_plain.json()["run"]["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
    # What the plugin sends back (e.g. a model version's source) is stored in MLflow's own form.
    registry = tls(aml, f"/mlflow/v2.0/{aml['scope']}/api/2.0/mlflow")
    name = f"proto-model-{uuid.uuid4().hex[:6]}"
    aml["session"].post(f"{registry}/registered-models/create", json={"name": name}, timeout=30)
    created = aml["session"].post(f"{registry}/model-versions/create", timeout=30, headers={"User-Agent": PLUGIN_UA},
                                  json={"name": name, "source": f"{info['artifact_uri']}/model",
                                        "run_id": info["run_id"]})
    assert created.status_code == 200, created.text
    assert created.json()["model_version"]["source"] == f"{info['artifact_uri']}/model"
    stored = aml["session"].get(f"{registry}/model-versions/get", params={"name": name, "version": "1"},
                                timeout=30).json()["model_version"]["source"]
    assert stored == f"mlflow-artifacts:/{info['experiment_id']}/{info['run_id']}/artifacts/model"


# -- the CA and what `emulator status --json` hands to clients -------------------------------------

NAMES = ["127.0.0.1", "localhost", "westeurope.api.azureml.ms"]


def test_ca_is_kept_and_the_server_certificate_follows_the_names(tmp_path):
    from cryptography import x509

    from emulator.services.azureml import tls as tls_files

    first = tls_files.ensure(tmp_path, NAMES)
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    again = tls_files.ensure(tmp_path, NAMES)
    assert again.ca.read_bytes() == ca and again.cert.read_bytes() == cert  # a restart changes nothing
    moved = tls_files.ensure(tmp_path, ["127.0.0.1", "localhost", "northeurope.api.azureml.ms"])
    # New names, new CA: it may vouch for the new names only.
    assert moved.ca.read_bytes() != ca and moved.cert.read_bytes() != cert
    sans = x509.load_pem_x509_certificate(moved.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "northeurope.api.azureml.ms" in sans.get_values_for_type(x509.DNSName)
    assert oct(moved.ca_key.stat().st_mode & 0o777) == "0o600" and oct(moved.key.stat().st_mode & 0o777) == "0o600"


def _handshake(ca_file, cert_file, key_file, host: str) -> None:
    """A real OpenSSL handshake (what requests/urllib3 do) over a socket pair; raises SSLError if refused."""
    import threading

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    left, right = socket.socketpair()
    left.settimeout(30)
    right.settimeout(30)

    def serve():
        try:
            with server_ctx.wrap_socket(right, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    server = threading.Thread(target=serve)
    server.start()
    try:
        with client_ctx.wrap_socket(left, server_hostname=host):
            pass
    finally:
        left.close()
        server.join(timeout=30)


def test_the_ca_vouches_only_for_the_workspaces_names_and_lives_a_week(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from emulator.services.azureml import tls as tls_files

    files = tls_files.ensure(tmp_path, NAMES)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= datetime.timedelta(days=8)
    for host in ("westeurope.api.azureml.ms", "localhost", "127.0.0.1"):
        _handshake(files.ca, files.cert, files.key, host)  # the real names verify

    # Anything else the CA key signs (e.g. stolen from the state dir) is refused by OpenSSL.
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    for host, san in [("login.microsoftonline.com", x509.DNSName("login.microsoftonline.com")),
                      ("pypi.org", x509.DNSName("pypi.org")),
                      ("10.0.0.1", x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1")))]:
        key = ec.generate_private_key(ec.SECP256R1())
        rogue = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                 .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(ca.not_valid_before_utc).not_valid_after(ca.not_valid_after_utc)
                 .add_extension(x509.SubjectAlternativeName([san]), critical=False)
                 .sign(ca_key, hashes.SHA256()))
        cert_file, key_file = tmp_path / f"{host}.pem", tmp_path / f"{host}-key.pem"
        cert_file.write_bytes(rogue.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(files.ca, cert_file, key_file, host)


def test_a_start_a_day_later_renews_the_ca(tmp_path, monkeypatch):
    import datetime

    from emulator.services.azureml import tls as tls_files

    first = tls_files.ensure(tmp_path, NAMES)
    ca = first.ca.read_bytes()
    later = tls_files._now() + datetime.timedelta(days=1, minutes=1)
    monkeypatch.setattr(tls_files, "_now", lambda: later)  # the clock, not the code under test
    renewed = tls_files.ensure(tmp_path, NAMES)
    assert renewed.ca.read_bytes() != ca and renewed.ca.read_bytes().strip() in renewed.bundle.read_bytes()


def test_status_json_gives_both_client_environments(emulator, aml):
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "emulator.control.cli", "status", "--json", "--state-dir",
                           str(emulator.state.root)], capture_output=True, text=True, timeout=120)
    info = json.loads(proc.stdout)["azureml"]
    loopback, proxied = info["client_env"], info["client_env_proxy"]
    assert loopback["ARM_CLOUD_METADATA_URL"].startswith(f"{aml['tls_url']}/metadata/endpoints?")
    assert loopback["AZUREML_CURRENT_CLOUD"] == "AzureMLEmulator" and "HTTPS_PROXY" not in loopback
    assert proxied["HTTPS_PROXY"] == aml["proxy_url"] and proxied["AZUREML_CURRENT_CLOUD"] == "AzureCloud"
    assert "ARM_CLOUD_METADATA_URL" not in proxied and proxied["NO_PROXY"] == "127.0.0.1,localhost"
    for env in (loopback, proxied):
        assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == info["ca_bundle"]
        assert env["IDENTITY_HEADER"] == env["MSI_SECRET"] == info["identity_header"]
        assert env["APPSETTING_WEBSITE_SITE_NAME"] and all(isinstance(v, str) for v in env.values())


def test_default_https_ports_taken_fall_back_but_explicit_ones_fail_clearly(tmp_path):
    """Another emulator on 5003/5004 must not stop `emulator up`; an explicit taken port is an error."""
    import json
    import os
    import subprocess
    import sys

    from emulator.control import launcher

    holders = []
    for port in (5003, 5004):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            holders.append(sock)
        except OSError:
            sock.close()  # already taken by something else: just as good for this test
    env = {k: v for k, v in os.environ.items() if k not in ("EMULATOR_AZUREML_TLS_PORT", "EMULATOR_AZUREML_PROXY_PORT")}
    env.update(EMULATOR_DATABRICKS_PORT=str(launcher.free_port()), EMULATOR_AZUREML_PORT=str(launcher.free_port()))
    cli = [sys.executable, "-m", "emulator.control.cli"]
    state = ["--state-dir", str(tmp_path / "state")]
    try:
        up = subprocess.run([*cli, "up", *state], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        info = json.loads(subprocess.run([*cli, "status", "--json", *state], env=env, capture_output=True,
                                         text=True, timeout=120).stdout)["azureml"]
        assert urlsplit(info["tls_url"]).port not in (5003, 5004)
        assert requests.get(f"{info['tls_url']}/health", verify=info["ca_file"], timeout=30).text == "OK"
        subprocess.run([*cli, "down", *state], env=env, capture_output=True, timeout=120)
        explicit = subprocess.run([*cli, "up", *state], env={**env, "EMULATOR_AZUREML_TLS_PORT": "5003"},
                                  capture_output=True, text=True, timeout=300)
        assert explicit.returncode == 1
        assert "5003 is already in use" in explicit.stderr and "EMULATOR_AZUREML_TLS_PORT" in explicit.stderr
    finally:
        subprocess.run([*cli, "down", *state], env=env, capture_output=True, timeout=120)
        for sock in holders:
            sock.close()
