"""A small REST client for Azure ML managed online endpoints (the emulator's or a real workspace's
ARM API), sending the shapes azure-ai-ml 1.35.2 sends and polling long-running operations the way
azure-core's ARMPolling does (``Azure-AsyncOperation`` until Succeeded/Failed, then GET).

Used by the harness's endpoint-scoring check and the tests; azure-ai-ml itself needs HTTPS for
bearer tokens, so from plain-http emulators this client is the way in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

API_VERSION = "2025-12-01"


class EndpointError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _raise_for(resp: requests.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        err = {}
    raise EndpointError(resp.status_code, err.get("code", "Error"), err.get("message", resp.text[:500]))


@dataclass
class OnlineEndpointsClient:
    url: str  # the workspace's ARM base, e.g. http://127.0.0.1:5002
    token: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    location: str = "westeurope"
    poll_timeout: float = 900.0

    @classmethod
    def for_workspace(cls, ws, **kw) -> OnlineEndpointsClient:
        """From a harness AzureMLWorkspace."""
        return cls(ws.url, ws.token, ws.subscription_id, ws.resource_group, ws.workspace_name, **kw)

    @property
    def scope(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}")

    def model_id(self, name: str, version: str | int) -> str:
        return f"{self.scope}/models/{name}/versions/{version}"

    def call(self, method: str, path: str, body: dict | None = None, raw: bool = False):
        resp = requests.request(method, f"{self.url}{self.scope}{path}", params={"api-version": API_VERSION},
                                json=body, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        if raw:
            return resp
        _raise_for(resp)
        return resp

    def _poll(self, resp: requests.Response, resource_path: str | None) -> dict | None:
        operation = resp.headers.get("Azure-AsyncOperation")
        if operation:
            deadline = time.monotonic() + self.poll_timeout
            while True:
                status = requests.get(operation, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
                _raise_for(status)
                body = status.json()
                if body["status"] in ("Succeeded", "Failed", "Canceled"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"operation {operation} still {body['status']} after {self.poll_timeout} s")
                time.sleep(float(status.headers.get("Retry-After", "1")))
            if body["status"] != "Succeeded":
                err = body.get("error") or {}
                raise EndpointError(200, err.get("code", body["status"]), err.get("message", ""))
        return self.call("GET", resource_path).json() if resource_path else None

    # -- endpoints -----------------------------------------------------------------------------
    def create_endpoint(self, name: str, auth_mode: str = "Key", traffic: dict | None = None,
                        description: str | None = None) -> dict:
        body = {"location": self.location, "identity": {"type": "SystemAssigned"},
                "properties": {"authMode": auth_mode, "description": description, "properties": {},
                               "traffic": traffic or {}}, "tags": {}}
        path = f"/onlineEndpoints/{name}"
        return self._poll(self.call("PUT", path, body), path)

    def get_endpoint(self, name: str) -> dict:
        return self.call("GET", f"/onlineEndpoints/{name}").json()

    def set_traffic(self, name: str, traffic: dict[str, int]) -> dict:
        current = self.get_endpoint(name)
        body = {"location": current["location"], "identity": current.get("identity"), "tags": current.get("tags"),
                "properties": {"authMode": current["properties"]["authMode"], "traffic": traffic,
                               "description": current["properties"].get("description")}}
        path = f"/onlineEndpoints/{name}"
        return self._poll(self.call("PUT", path, body), path)

    def delete_endpoint(self, name: str) -> None:
        resp = self.call("DELETE", f"/onlineEndpoints/{name}")
        if resp.status_code == 202:
            self._poll(resp, None)

    def keys(self, name: str) -> dict:
        return self.call("POST", f"/onlineEndpoints/{name}/listKeys").json()

    def endpoint_token(self, name: str) -> dict:
        return self.call("POST", f"/onlineEndpoints/{name}/token").json()

    def regenerate_key(self, name: str, key_type: str = "Primary") -> None:
        self._poll(self.call("POST", f"/onlineEndpoints/{name}/regenerateKeys", {"keyType": key_type}), None)

    # -- deployments ---------------------------------------------------------------------------
    def deployment_body(self, model: str, instance_type: str = "Standard_DS3_v2", instance_count: int = 1,
                        request_timeout: str | None = None) -> dict:
        props = {"endpointComputeType": "Managed", "model": model, "instanceType": instance_type,
                 "scaleSettings": {"scaleType": "Default"}, "appInsightsEnabled": False,
                 "egressPublicNetworkAccess": "Enabled", "properties": {}, "environmentVariables": {}}
        if request_timeout:
            props["requestSettings"] = {"requestTimeout": request_timeout, "maxConcurrentRequestsPerInstance": 1}
        return {"location": self.location, "properties": props,
                "sku": {"name": "Default", "capacity": instance_count}, "tags": {}}

    def create_deployment(self, endpoint: str, name: str, model: str, **kw) -> dict:
        path = f"/onlineEndpoints/{endpoint}/deployments/{name}"
        return self._poll(self.call("PUT", path, self.deployment_body(model, **kw)), path)

    def get_deployment(self, endpoint: str, name: str) -> dict:
        return self.call("GET", f"/onlineEndpoints/{endpoint}/deployments/{name}").json()

    def delete_deployment(self, endpoint: str, name: str) -> None:
        resp = self.call("DELETE", f"/onlineEndpoints/{endpoint}/deployments/{name}")
        if resp.status_code == 202:
            self._poll(resp, None)

    def logs(self, endpoint: str, name: str, tail: int | None = None) -> str:
        body = {"containerType": "InferenceServer", **({"tail": tail} if tail else {})}
        return self.call("POST", f"/onlineEndpoints/{endpoint}/deployments/{name}/getLogs", body).json()["content"]

    # -- scoring -------------------------------------------------------------------------------
    def credential(self, endpoint: str) -> str:
        mode = self.get_endpoint(endpoint)["properties"]["authMode"].lower()
        if mode == "key":
            return self.keys(endpoint)["primaryKey"]
        if mode == "amltoken":
            return self.endpoint_token(endpoint)["accessToken"]
        return self.token  # AADToken: an Entra token of the workspace (here: the workspace token)

    def score(self, endpoint: str, payload, credential: str | None = None, deployment: str | None = None,
              timeout: float = 300) -> requests.Response:
        scoring_uri = self.get_endpoint(endpoint)["properties"]["scoringUri"]
        headers = {"Authorization": f"Bearer {credential or self.credential(endpoint)}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        return requests.post(scoring_uri, json=payload, headers=headers, timeout=timeout)
