"""Service principals and plain REST: Entra ID's client-credentials token endpoints (v1 and v2),
then MLflow REST with the bearer token, as users outside a compute instance do it.

Raw ``requests`` (what a REST example does) against real servers on loopback: at the plain
listener, at the HTTPS listener the cloud metadata names as ``loginEndpoint`` (arrangement B) and
as ``login.microsoftonline.com`` through the CONNECT proxy (arrangement A). Before: 404/401 in
MLflow's shape, and the proxy refused the login host.
"""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)


@pytest.fixture(scope="module")
def aml(emulator):
    info = emulator.status()["azureml"]
    assert {"tenant_id", "client_id", "client_secret"} <= set(info["service_principal"])
    return info


def _sp_form(aml, **changes) -> dict:
    sp = aml["service_principal"]
    return {"grant_type": "client_credentials", "client_id": sp["client_id"],
            "client_secret": sp["client_secret"], **changes}


def _mlflow_search(aml, base: str, token: str, **kw) -> requests.Response:
    return requests.post(f"{base}/mlflow/v2.0/{_scope(aml)}/api/2.0/mlflow/experiments/search",
                         json={"max_results": 5}, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)


def _scope(aml) -> str:
    return (f"subscriptions/{aml['subscription_id']}/resourceGroups/{aml['resource_group']}/providers/"
            f"Microsoft.MachineLearningServices/workspaces/{aml['workspace_name']}")


def test_v1_and_v2_tokens_open_the_workspace(aml):
    tenant = aml["service_principal"]["tenant_id"]
    v2 = requests.post(aml["service_principal"]["token_url"], timeout=30,
                       data=_sp_form(aml, scope="https://ml.azure.com/.default"))
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599 and "resource" not in body
    assert _mlflow_search(aml, aml["url"], body["access_token"]).status_code == 200
    v1 = requests.post(f"{aml['url']}/{tenant}/oauth2/token", timeout=30,
                       data=_sp_form(aml, resource="https://management.azure.com/"))
    assert v1.status_code == 200, v1.text
    assert v1.json()["resource"] == "https://management.azure.com/" and v1.json()["expires_in"] == "3599"
    assert _mlflow_search(aml, aml["url"], v1.json()["access_token"]).status_code == 200
    # A token for another audience does not open it.
    graph = requests.post(aml["service_principal"]["token_url"], timeout=30,
                          data=_sp_form(aml, scope="https://graph.microsoft.com/.default")).json()
    assert _mlflow_search(aml, aml["url"], graph["access_token"]).status_code == 401


def test_wrong_credentials_get_entras_errors(aml):
    url = aml["service_principal"]["token_url"]
    wrong = requests.post(url, data=_sp_form(aml, client_secret="not-it", scope="https://ml.azure.com/.default"),
                          timeout=30)
    assert wrong.status_code == 401
    body = wrong.json()
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)
    other = requests.post(url, data=_sp_form(aml, client_id="00000000-0000-0000-0000-000000000001",
                                             scope="https://ml.azure.com/.default"), timeout=30)
    assert other.status_code == 400 and other.json()["error_codes"] == [700016]
    tenant = aml["service_principal"]["tenant_id"]
    no_tenant = requests.post(url.replace(tenant, "not-a-tenant"), timeout=30,
                              data=_sp_form(aml, scope="https://ml.azure.com/.default"))
    assert no_tenant.status_code == 400 and no_tenant.json()["error_codes"] == [90002]
    no_scope = requests.post(url, data=_sp_form(aml), timeout=30)
    assert no_scope.status_code == 400 and no_scope.json()["error_codes"] == [900144]
    grant = requests.post(url, data=_sp_form(aml, grant_type="password", scope="https://ml.azure.com/.default"),
                          timeout=30)
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_loopback_login_endpoint_from_cloud_metadata(aml):
    session = requests.Session()
    session.trust_env = False
    session.verify = aml["ca_file"]
    clouds = {c["name"]: c for c in session.get(f"{aml['tls_url']}/metadata/endpoints",
                                                params={"api-version": "2022-09-01"}, timeout=30).json()}
    login = clouds["AzureMLEmulator"]["authentication"]["loginEndpoint"]
    assert login == aml["tls_url"]
    assert clouds["AzureCloud"]["authentication"]["loginEndpoint"] == "https://login.microsoftonline.com"
    tenant = aml["service_principal"]["tenant_id"]
    openid = session.get(f"{login}/{tenant}/v2.0/.well-known/openid-configuration", timeout=30).json()
    assert openid["token_endpoint"] == f"{login}/{tenant}/oauth2/v2.0/token"
    token = session.post(openid["token_endpoint"], data=_sp_form(aml, scope="https://management.azure.com/.default"),
                         timeout=30).json()["access_token"]
    assert _mlflow_search(aml, aml["tls_url"], token, verify=aml["ca_file"]).status_code == 200


def test_login_host_through_the_proxy(aml):
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": aml["proxy_url"]}
    session.verify = aml["ca_file"]
    tenant = aml["service_principal"]["tenant_id"]
    openid = session.get(f"https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration",
                         timeout=30)
    assert openid.status_code == 200, openid.text
    assert openid.json()["token_endpoint"] == f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    instance = session.get("https://login.microsoftonline.com/common/discovery/instance",
                           params={"api-version": "1.1"}, timeout=30)
    assert instance.status_code == 200 and instance.json()["metadata"][0]["aliases"] == ["login.microsoftonline.com"]
    token = session.post(openid.json()["token_endpoint"], timeout=30,
                         data=_sp_form(aml, scope="https://ml.azure.com/.default"))
    assert token.status_code == 200, token.text
    api = session.post(f"https://westeurope.api.azureml.ms/mlflow/v2.0/{_scope(aml)}/api/2.0/mlflow/experiments/search",
                       json={"max_results": 5}, headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                       timeout=30)
    assert api.status_code == 200, api.text


def test_the_journal_keeps_no_secret_nor_token(aml):
    admin = {"Authorization": f"Bearer {aml['token']}"}
    journal = f"{aml['url']}/__emulator/requests"
    assert requests.post(journal, json={"enabled": True}, headers=admin, timeout=30).status_code == 200
    try:
        token = requests.post(aml["service_principal"]["token_url"], timeout=30,
                              data=_sp_form(aml, scope="https://ml.azure.com/.default")).json()["access_token"]
        entries = requests.get(journal, headers=admin, timeout=30).json()["requests"]
    finally:
        requests.post(journal, json={"enabled": False}, headers=admin, timeout=30)
    text = str(entries)
    assert "/oauth2/v2.0/token" in text  # the call is recorded ...
    assert aml["service_principal"]["client_secret"] not in text and token not in text  # ... its credentials not
