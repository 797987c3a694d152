"""azure-identity's ClientSecretCredential (the real one, in the client venv) against the emulated
Entra ID, then MLflow REST with its token: through the CONNECT proxy by the real login host (A)
and, loopback, at the cloud metadata's loginEndpoint (B)."""

from __future__ import annotations

import textwrap

import pytest

from tests.test_azureml_real_clients import client_python, run_client  # noqa: F401

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

SP_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import requests
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    tenant, client_id, secret, api, authority = sys.argv[1:6]
    kw = {"authority": authority, "disable_instance_discovery": True} if authority != "-" else {}
    token = ClientSecretCredential(tenant, client_id, secret, **kw).get_token("https://ml.azure.com/.default")
    answer = requests.post(f"{api}/api/2.0/mlflow/experiments/search", json={"max_results": 5},
                           headers={"Authorization": f"Bearer {token.token}"}, timeout=60)
    try:
        ClientSecretCredential(tenant, client_id, "wrong-secret", **kw).get_token("https://ml.azure.com/.default")
        wrong = "accepted"
    except ClientAuthenticationError as exc:
        wrong = str(exc)
    print("RESULT " + json.dumps({"status": answer.status_code, "expires_on": token.expires_on, "wrong": wrong}))
''')


@pytest.mark.parametrize("arrangement", ["proxy", "loopback"])
def test_client_secret_credential_opens_the_workspace(emulator, client_python, tmp_path, arrangement):
    info = emulator.status()["azureml"]
    sp = info["service_principal"]
    scope = (f"subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}/providers/"
             f"Microsoft.MachineLearningServices/workspaces/{info['workspace_name']}")
    if arrangement == "proxy":
        env, authority = info["client_env_proxy"], "-"
        api = f"https://westeurope.api.azureml.ms/mlflow/v2.0/{scope}"
    else:
        env, authority = info["client_env"], info["tls_url"]
        api = f"{info['tls_url']}/mlflow/v2.0/{scope}"
    env = {k: v for k, v in env.items() if k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
                                                     "MSI_SECRET")}  # a service principal, not a compute instance
    result = run_client(client_python, SP_SCRIPT, env, tmp_path, sp["tenant_id"], sp["client_id"],
                        sp["client_secret"], api, authority, timeout=300)
    assert result["status"] == 200
    assert "AADSTS7000215" in result["wrong"] and "Invalid client secret" in result["wrong"]
