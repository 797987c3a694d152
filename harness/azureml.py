"""A stand-in for ``azureml.core.Workspace``, shaped like the seed uses it.

    from harness.azureml import Workspace      # instead of: from azureml.core import Workspace
    ws = Workspace.get(name=..., subscription_id=..., resource_group=...)
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())

Discovery is a real ARM call to the emulator: ``GET <arm>/subscriptions/<sub>/resourceGroups/
<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>?api-version=...``.

Where ARM is: ``AZUREML_EMULATOR_URL`` (e.g. ``http://127.0.0.1:5002``), else the Azure ML
workspace of the running emulator in ``EMULATOR_STATE_DIR`` (default ``.emulator``).
Credentials (first that applies): the ``auth`` argument (a token string or an object with
``get_authentication_header()``, as azureml-core's auth classes have); ``MLFLOW_TRACKING_TOKEN``;
``EMULATOR_AZUREML_TOKEN``; a managed identity through ``IDENTITY_ENDPOINT`` +
``IDENTITY_HEADER`` (:class:`MsiAuthentication`); the emulator state dir's token.

``get_mlflow_tracking_uri()`` turns ARM's ``azureml://host:port/mlflow/v2.0/<scope>`` into
``http://host:port/...`` (no azureml-mlflow plugin here: it pins mlflow-skinny<=3.15) and, as
that plugin does by injecting the workspace's credentials, exports the token as
``MLFLOW_TRACKING_TOKEN`` for the vanilla MLflow client.

The real ``azureml.core.Workspace`` with the plugin works too, in a venv of its own
(harness.client_venvs) with the environment ``emulator status --json`` prints as
``azureml.client_env``: see docs/pages/azureml.md.
"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import requests

ARM_API_VERSION = "2023-10-01"
MANAGEMENT_RESOURCE = "https://management.azure.com/"
URL_ENV = "AZUREML_EMULATOR_URL"


class WorkspaceException(Exception):
    """Discovery failed; the message is ARM's (e.g. ResourceGroupNotFound)."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class TokenAuthentication:
    def __init__(self, token: str):
        self.token = token

    def get_token(self) -> str:
        return self.token

    def get_authentication_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.get_token()}"}


class MsiAuthentication:
    """Managed identity, App Service style: ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``."""

    def __init__(self, identity_endpoint: str | None = None, identity_header: str | None = None,
                 resource: str = MANAGEMENT_RESOURCE):
        self.endpoint = identity_endpoint or os.environ.get("IDENTITY_ENDPOINT")
        self.secret = identity_header or os.environ.get("IDENTITY_HEADER")
        if not (self.endpoint and self.secret):
            raise WorkspaceException("MsiAuthentication needs IDENTITY_ENDPOINT and IDENTITY_HEADER.")
        self.resource = resource
        self._token: str | None = None
        self._expires_on = 0.0

    def get_token(self) -> str:
        if self._token is None or self._expires_on - time.time() < 300:  # refresh 5 min early
            answer = requests.get(
                self.endpoint,
                params={"resource": self.resource, "api-version": "2019-08-01"},
                headers={"X-IDENTITY-HEADER": self.secret},
                timeout=30,
            )
            if answer.status_code != 200:
                raise WorkspaceException(f"managed identity token request failed ({answer.status_code}): "
                                         f"{answer.text}", status=answer.status_code)
            body = answer.json()
            self._token, self._expires_on = body["access_token"], float(body["expires_on"])
        return self._token

    def get_authentication_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.get_token()}"}


def _emulator_state():
    from emulator.control import status
    from emulator.control.state import StateDir

    state = StateDir()
    return status.workspace_url(state, "azureml"), state.config()


def _default_arm_url() -> str:
    url = os.environ.get(URL_ENV)
    return url.rstrip("/") if url else _emulator_state()[0]


def _default_auth(auth):
    if auth is None:
        for env in ("MLFLOW_TRACKING_TOKEN", "EMULATOR_AZUREML_TOKEN"):
            if os.environ.get(env):
                return TokenAuthentication(os.environ[env])
        if os.environ.get("IDENTITY_ENDPOINT") and os.environ.get("IDENTITY_HEADER"):
            return MsiAuthentication()
        token = _emulator_state()[1].get("azureml_token")
        if not token:
            raise WorkspaceException("No Azure ML credentials: set MLFLOW_TRACKING_TOKEN, "
                                     "EMULATOR_AZUREML_TOKEN or IDENTITY_ENDPOINT/IDENTITY_HEADER.")
        return TokenAuthentication(token)
    return TokenAuthentication(auth) if isinstance(auth, str) else auth


class Workspace:
    def __init__(self, resource: dict, arm_url: str, auth):
        self._resource = resource
        self._arm_url = arm_url
        self._auth = auth
        self.name = resource["name"]
        self.location = resource["location"]
        parts = resource["id"].strip("/").split("/")
        self.subscription_id = parts[1]
        self.resource_group = parts[3]

    @classmethod
    def get(cls, name: str, subscription_id: str | None = None, resource_group: str | None = None,
            auth=None, *, arm_url: str | None = None) -> Workspace:
        if not (subscription_id and resource_group):
            raise WorkspaceException("Workspace.get needs name, subscription_id and resource_group.")
        arm_url = (arm_url or _default_arm_url()).rstrip("/")
        auth = _default_auth(auth)
        url = (f"{arm_url}/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
               f"/providers/Microsoft.MachineLearningServices/workspaces/{name}")
        try:
            answer = requests.get(url, params={"api-version": ARM_API_VERSION},
                                  headers=auth.get_authentication_header(), timeout=30)
        except requests.ConnectionError as exc:
            raise WorkspaceException(f"cannot reach the Azure ML emulator at {arm_url} "
                                     f"(is `emulator up` running? {URL_ENV}?): {exc}") from None
        if answer.status_code != 200:
            try:
                error = answer.json()["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                code, message = None, answer.text
            raise WorkspaceException(f"Workspace '{name}' not available: {code}: {message}",
                                     code=code, status=answer.status_code)
        return cls(answer.json(), arm_url, auth)

    def _token(self) -> str:
        if hasattr(self._auth, "get_token"):
            return self._auth.get_token()
        return self._auth.get_authentication_header()["Authorization"].partition(" ")[2]

    def get_details(self) -> dict:
        return self._resource

    @property
    def discovery_url(self) -> str:
        return self._resource["properties"]["discoveryUrl"]

    def get_mlflow_tracking_uri(self) -> str:
        aml_uri = urlsplit(self._resource["properties"]["mlFlowTrackingUri"])
        scheme = urlsplit(self._arm_url).scheme or "http"
        os.environ["MLFLOW_TRACKING_TOKEN"] = self._token()
        return f"{scheme}://{aml_uri.netloc}{aml_uri.path}"

    def __repr__(self) -> str:
        return (f"Workspace.get(name={self.name!r}, subscription_id={self.subscription_id!r}, "
                f"resource_group={self.resource_group!r})")
