"""ARM workspace discovery against the running Azure ML stand-in (real HTTP, harness Workspace)."""

import pytest
import requests

from harness.azureml import Workspace, WorkspaceException

pytestmark = pytest.mark.shared_emulator  # the session's pair, reset (tests/conftest.py)

API = {"api-version": "2023-10-01"}


def arm_url(aml, sub=None, rg=None, ws=None):
    return (f"{aml.url}/subscriptions/{sub or aml.subscription_id}/resourceGroups/{rg or aml.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{ws or aml.workspace_name}")


def get(url, token, **params):
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_workspace_resource_is_shaped_like_arm(emulator):
    aml = emulator.azureml
    answer = get(arm_url(aml), aml.token, **API)
    assert answer.status_code == 200
    assert answer.headers["x-ms-request-id"]
    body = answer.json()
    scope = (f"subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}"
             f"/providers/Microsoft.MachineLearningServices/workspaces/{aml.workspace_name}")
    assert body["id"] == "/" + scope
    assert body["name"] == aml.workspace_name
    assert body["type"] == "Microsoft.MachineLearningServices/workspaces"
    assert body["location"] == "westeurope"
    props = body["properties"]
    host = aml.url.removeprefix("http://")
    assert props["mlFlowTrackingUri"] == f"azureml://{host}/mlflow/v2.0/{scope}"
    assert props["discoveryUrl"] == f"{aml.url}/discovery"
    assert props["provisioningState"] == "Succeeded"
    assert len(props["workspaceId"]) == 36
    # Stable between calls, like a real resource.
    assert get(arm_url(aml), aml.token, **API).json() == body
    # ARM ids are case-insensitive.
    upper = arm_url(aml, rg=aml.resource_group.upper(), ws=aml.workspace_name.upper())
    assert get(upper, aml.token, **API).status_code == 200
    # The discovery document names the service addresses, anonymously as in Azure.
    assert requests.get(props["discoveryUrl"], timeout=60).json()["experimentation"] == aml.url


def test_list_and_resource_group(emulator):
    aml = emulator.azureml
    listing = get(arm_url(aml).rsplit("/", 1)[0], aml.token, **API).json()
    assert [w["name"] for w in listing["value"]] == [aml.workspace_name]
    group = get(f"{aml.url}/subscriptions/{aml.subscription_id}/resourceGroups/{aml.resource_group}",
                aml.token, **API).json()
    assert group["type"] == "Microsoft.Resources/resourceGroups"


@pytest.mark.parametrize("which,code", [
    ("sub", "SubscriptionNotFound"), ("rg", "ResourceGroupNotFound"), ("ws", "ResourceNotFound")])
def test_unknown_ids_are_arm_404s(emulator, which, code):
    aml = emulator.azureml
    answer = get(arm_url(aml, **{which: "11111111-nope"}), aml.token, **API)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == code
    assert "11111111-nope" in answer.json()["error"]["message"]


def test_api_version_and_auth_errors(emulator):
    aml = emulator.azureml
    missing = get(arm_url(aml), aml.token)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"
    assert get(arm_url(aml), aml.token, **{"api-version": "latest"}).json()["error"]["code"] == \
        "InvalidApiVersionParameter"
    anonymous = requests.get(arm_url(aml), params=API, timeout=60)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    wrong = get(arm_url(aml), "not-the-token", **API)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "InvalidAuthenticationToken"
    # An unknown workspace is not revealed to anonymous callers either.
    assert requests.get(arm_url(aml, ws="other"), params=API, timeout=60).status_code == 401
    put = requests.put(arm_url(aml), params=API, json={}, timeout=60,
                       headers={"Authorization": f"Bearer {aml.token}"})
    assert put.status_code == 405 and put.json()["error"]["code"] == "MethodNotAllowed"


def test_harness_workspace_get(emulator, monkeypatch):
    aml = emulator.azureml
    for key in ("MLFLOW_TRACKING_TOKEN", "EMULATOR_AZUREML_TOKEN", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AZUREML_EMULATOR_URL", aml.url)
    ws = Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                       resource_group=aml.resource_group, auth=aml.token)
    assert (ws.name, ws.subscription_id, ws.resource_group, ws.location) == (
        aml.workspace_name, aml.subscription_id, aml.resource_group, "westeurope")
    assert ws.get_mlflow_tracking_uri() == aml.tracking_uri

    with pytest.raises(WorkspaceException) as err:
        Workspace.get(name="nope", subscription_id=aml.subscription_id,
                      resource_group=aml.resource_group, auth=aml.token)
    assert err.value.code == "ResourceNotFound" and err.value.status == 404
    with pytest.raises(WorkspaceException) as err:
        Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                      resource_group=aml.resource_group, auth="wrong-token")
    assert err.value.status == 401
    # Token from the environment, as the seed's code has no auth argument.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", aml.token)
    assert Workspace.get(name=aml.workspace_name, subscription_id=aml.subscription_id,
                         resource_group=aml.resource_group).name == aml.workspace_name
