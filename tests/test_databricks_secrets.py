"""The workspace's Secrets API through databricks-sdk's real client (``w.secrets``) and its ``dbutils``."""

import base64

import pytest
import requests
from databricks.sdk.dbutils import RemoteDbUtils
from databricks.sdk.errors import InvalidParameterValue, NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import ScopeBackendType


def _raw(ws, method, path, **kwargs):
    return requests.request(method, f"{ws.url}{path}", headers={"Authorization": f"Bearer {ws.token}"},
                            timeout=60, **kwargs)


def test_scopes_and_secrets_round_trip_through_the_sdk(databricks_ws, sdk):
    sdk.secrets.create_scope("notebook-scope")
    sdk.secrets.put_secret("notebook-scope", "db-password", string_value="s3cr\u00e9t")
    sdk.secrets.put_secret("notebook-scope", "raw.bytes", bytes_value=base64.b64encode(b"\x00\xff").decode())
    assert [s.name for s in sdk.secrets.list_scopes() if s.name == "notebook-scope"] == ["notebook-scope"]
    scope = next(s for s in sdk.secrets.list_scopes() if s.name == "notebook-scope")
    assert scope.backend_type == ScopeBackendType.DATABRICKS
    listed = list(sdk.secrets.list_secrets("notebook-scope"))
    assert [s.key for s in listed] == ["db-password", "raw.bytes"]
    assert all(s.last_updated_timestamp > 0 for s in listed)
    got = sdk.secrets.get_secret("notebook-scope", "db-password")
    assert base64.b64decode(got.value).decode() == "s3cr\u00e9t"

    # dbutils outside Databricks (RemoteDbUtils) reads secrets over this REST API.
    dbutils = RemoteDbUtils(sdk.config)
    assert dbutils.secrets.get("notebook-scope", "db-password") == "s3cr\u00e9t"
    assert dbutils.secrets.getBytes("notebook-scope", "raw.bytes") == b"\x00\xff"
    assert [m.key for m in dbutils.secrets.list("notebook-scope")] == ["db-password", "raw.bytes"]
    assert "notebook-scope" in [s.getName() for s in dbutils.secrets.listScopes()]

    # Overwrite, then delete a secret and the scope.
    sdk.secrets.put_secret("notebook-scope", "db-password", string_value="rotated")
    assert dbutils.secrets.get("notebook-scope", "db-password") == "rotated"
    sdk.secrets.delete_secret("notebook-scope", "raw.bytes")
    assert [s.key for s in sdk.secrets.list_secrets("notebook-scope")] == ["db-password"]
    sdk.secrets.delete_scope("notebook-scope")
    assert "notebook-scope" not in [s.name for s in sdk.secrets.list_scopes()]


def test_refusals_use_databricks_codes_and_messages(databricks_ws, sdk):
    sdk.secrets.create_scope("refusals")
    with pytest.raises(ResourceAlreadyExists, match="^Scope refusals already exists!$"):
        sdk.secrets.create_scope("refusals")
    answer = _raw(databricks_ws, "POST", "/api/2.0/secrets/scopes/create", json={"scope": "refusals"})
    assert answer.status_code == 400
    assert answer.json() == {"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Scope refusals already exists!"}
    with pytest.raises(NotFound, match="^Scope nowhere does not exist!$"):
        sdk.secrets.delete_scope("nowhere")
    with pytest.raises(NotFound, match="^Scope nowhere does not exist!$"):
        sdk.secrets.put_secret("nowhere", "k", string_value="v")
    with pytest.raises(NotFound, match="^Scope nowhere does not exist!$"):
        list(sdk.secrets.list_secrets("nowhere"))
    with pytest.raises(NotFound, match="^Secret does not exist with scope: refusals and key: absent$"):
        sdk.secrets.get_secret("refusals", "absent")
    with pytest.raises(NotFound, match="^Secret does not exist with scope: refusals and key: absent$"):
        sdk.secrets.delete_secret("refusals", "absent")
    with pytest.raises(InvalidParameterValue, match="alphanumeric"):
        sdk.secrets.create_scope("bad scope/../x")
    with pytest.raises(InvalidParameterValue, match="alphanumeric"):
        sdk.secrets.put_secret("refusals", "x" * 129, string_value="v")
    with pytest.raises(InvalidParameterValue, match="Exactly one"):
        sdk.secrets.put_secret("refusals", "k")
    both = _raw(databricks_ws, "POST", "/api/2.0/secrets/put",
                json={"scope": "refusals", "key": "k", "string_value": "a", "bytes_value": "YQ=="})
    assert (both.status_code, both.json()["error_code"]) == (400, "MALFORMED_REQUEST")
    with pytest.raises(InvalidParameterValue, match="base64"):
        sdk.secrets.put_secret("refusals", "k", bytes_value="not base64!")
    with pytest.raises(InvalidParameterValue, match="exceeds the limit"):
        sdk.secrets.put_secret("refusals", "big", string_value="x" * (128 * 1024 + 1))
    with pytest.raises(InvalidParameterValue, match="userAADToken"):
        sdk.secrets.create_scope("vault", scope_backend_type=ScopeBackendType.AZURE_KEYVAULT)
    for body in ([], "scope", None):
        answer = _raw(databricks_ws, "POST", "/api/2.0/secrets/scopes/create", json=body)
        assert answer.status_code == 400 and answer.json()["error_code"] in ("MALFORMED_REQUEST",
                                                                             "INVALID_PARAMETER_VALUE")
    # Nothing was stored by the refused calls.
    assert list(sdk.secrets.list_secrets("refusals")) == []
    assert _raw(databricks_ws, "GET", "/api/2.0/secrets/scopes/list").status_code == 200
    unauthenticated = requests.get(f"{databricks_ws.url}/api/2.0/secrets/scopes/list", timeout=60)
    assert unauthenticated.status_code == 401
    sdk.secrets.delete_scope("refusals")


def test_secrets_survive_a_restart_and_a_reset_clears_them(emulator, databricks_ws, sdk):
    sdk.secrets.create_scope("durable")
    sdk.secrets.put_secret("durable", "k", string_value="kept")
    emulator.stop("databricks")
    emulator.start("databricks")
    assert base64.b64decode(sdk.secrets.get_secret("durable", "k").value) == b"kept"
    assert _raw(databricks_ws, "GET", "/__emulator/reset").json()["holds_data"] is True
    assert _raw(databricks_ws, "POST", "/__emulator/reset", json={}).status_code == 200
    assert list(sdk.secrets.list_scopes()) == []
    with pytest.raises(NotFound):
        sdk.secrets.get_secret("durable", "k")
