"""Who may call the Azure ML stand-in: workspace token, MSI tokens, and scope isolation."""

import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from emulator.control import launcher
from emulator.services.azureml import tokens
from harness.azureml import MsiAuthentication, Workspace


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("MLFLOW_TRACKING_TOKEN", "EMULATOR_AZUREML_TOKEN", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(key, raising=False)
    yield
    mlflow.set_tracking_uri(None)


def msi_token(info, resource="https://management.azure.com/", header=None):
    return requests.get(info["identity_endpoint"], timeout=60,
                        params={"resource": resource, "api-version": "2019-08-01"},
                        headers={"X-IDENTITY-HEADER": header or info["identity_header"]})


def test_mlflow_client_without_or_with_wrong_token_gets_401(emulator, monkeypatch):
    uri = emulator.azureml.tracking_uri
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    assert err.value.error_code == "UNAUTHENTICATED"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "aml-wrong")
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    assert err.value.error_code == "UNAUTHENTICATED"
    raw = requests.get(f"{uri}/api/2.0/mlflow/experiments/search", timeout=60,
                       headers={"Authorization": "Bearer aml-wrong"})
    assert raw.status_code == 401
    assert raw.json() == {"error_code": "UNAUTHENTICATED", "message": "The access token is invalid."}
    assert 'error="invalid_token"' in raw.headers["WWW-Authenticate"]


def test_msi_endpoint_issues_tokens_the_workspace_accepts(emulator, monkeypatch):
    info = emulator.status()["azureml"]
    answer = msi_token(info)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["resource"] == "https://management.azure.com/"
    assert int(body["expires_on"]) > time.time() + 3600
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", body["access_token"])
    mlflow.set_tracking_uri(emulator.azureml.tracking_uri)
    exp = mlflow.set_experiment("msi-tracked")
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.log_metric("loss", 0.25)
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {"loss": 0.25}


def test_harness_workspace_through_managed_identity(emulator, monkeypatch):
    aml, info = emulator.azureml, emulator.status()["azureml"]
    monkeypatch.setenv("AZUREML_EMULATOR_URL", aml.url)
    monkeypatch.setenv("IDENTITY_ENDPOINT", info["identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", info["identity_header"])
    ws = Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                       resource_group=aml.resource_group)
    assert isinstance(ws._auth, MsiAuthentication)
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())  # exports the MSI token for the client
    mlflow.set_experiment("/Users/someone@example.com/msi/exp")
    mlflow.log_metric("epoch_loss", 0.5)
    mlflow.end_run()


def test_msi_endpoint_rejects_bad_requests(emulator):
    info = emulator.status()["azureml"]
    wrong = msi_token(info, header="not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized_client"
    none = requests.get(info["identity_endpoint"], timeout=60,
                        params={"resource": "https://ml.azure.com", "api-version": "2019-08-01"})
    assert none.status_code == 401 and none.json()["error"] == "invalid_request"
    no_resource = requests.get(info["identity_endpoint"], params={"api-version": "2019-08-01"},
                               headers={"X-IDENTITY-HEADER": info["identity_header"]}, timeout=60)
    assert no_resource.status_code == 400


def test_tokens_for_other_audiences_expired_or_forged_are_refused(emulator):
    aml, info = emulator.azureml, emulator.status()["azureml"]
    url = f"{aml.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=5"

    def call(token):
        return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    storage = msi_token(info, resource="https://storage.azure.com/").json()["access_token"]
    assert "invalid audience" in call(storage).json()["message"]
    expired = tokens.mint(aml.token, "https://ml.azure.com", aml.subscription_id, now=time.time() - 90000)
    assert call(expired["access_token"]).json()["message"] == "The access token has expired."
    forged = tokens.mint("some-other-secret", "https://ml.azure.com", aml.subscription_id)
    assert call(forged["access_token"]).status_code == 401
    good = msi_token(info, resource="https://ml.azure.com").json()["access_token"]
    header, payload, signature = good.split(".")
    assert call(f"{header}.{payload}x.{signature}").status_code == 401
    # The exact bytes that were issued, no other spelling of the same signature: padding, or a
    # character outside base64url that a lenient decoder skips.
    for variant in (f"{good}==", f"{good}=", f"{header}.{payload}.{signature[:5]}!{signature[5:]}"):
        assert call(variant).status_code == 401, variant
    assert call(good).status_code == 200


def test_issued_tokens_survive_a_restart(emulator):
    aml, info = emulator.azureml, emulator.status()["azureml"]
    token = msi_token(info).json()["access_token"]
    emulator.stop("azureml")
    # A stopped server can linger a moment as a zombie leader whose threads still hold the
    # listening socket (launcher.stop treats the zombie as gone); wait for the port itself.
    deadline = time.monotonic() + 30
    while launcher.port_in_use("127.0.0.1", emulator.ports["azureml"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    emulator.start("azureml")
    answer = requests.get(f"{aml.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=5", timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200


@pytest.mark.parametrize("part,wrong,code", [
    ("subscriptions/", "subscriptions/11111111-1111-1111-1111-111111111111", "SubscriptionNotFound"),
    ("resourceGroups/", "resourceGroups/other-rg", "ResourceGroupNotFound"),
    ("workspaces/", "workspaces/other-ws", "ResourceNotFound"),
])
def test_wrong_scope_is_404_never_this_workspace_data(emulator, monkeypatch, part, wrong, code):
    aml = emulator.azureml
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    exp_id = MlflowClient(aml.tracking_uri).create_experiment(f"scoped-{code}")
    good_segment = {"subscriptions/": f"subscriptions/{aml.subscription_id}",
                    "resourceGroups/": f"resourceGroups/{aml.resource_group}",
                    "workspaces/": f"workspaces/{aml.workspace_name}"}[part]
    other = aml.tracking_uri.replace(good_segment, wrong)
    assert other != aml.tracking_uri
    with pytest.raises(MlflowException) as err:
        MlflowClient(other).get_experiment(exp_id)
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    raw = requests.get(f"{other}/api/2.0/mlflow/experiments/search", timeout=60,
                       headers={"Authorization": f"Bearer {aml.token}"})
    assert raw.status_code == 404
    assert raw.json()["error"]["code"] == code
    assert "experiments" not in raw.json()
    # Even artifacts and health under a wrong scope are refused.
    for path in ("api/2.0/mlflow-artifacts/artifacts", "health"):
        assert requests.get(f"{other}/{path}", timeout=60,
                            headers={"Authorization": f"Bearer {aml.token}"}).status_code == 404
    garbage = requests.get(f"{aml.url}/mlflow/v2.0/not-a-scope/api/2.0/mlflow/experiments/search",
                           headers={"Authorization": f"Bearer {aml.token}"}, timeout=60)
    assert garbage.status_code == 404 and garbage.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
