"""A small MLflow REST client for the Azure ML side of the mirror.

Not ``MlflowClient``: that one reads its token from process-wide environment variables and retries
for minutes inside each call; the relay needs its own credentials, short timeouts, and to decide
itself what to retry.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlparse

import requests

# Azure ML answers that are worth retrying: it is down, overloaded, or the link's token is wrong
# (fixed by linking again). Anything else is a verdict on the write itself.
_TRANSIENT_STATUS = {401, 403, 408, 425, 429}


class AzureMLError(Exception):
    def __init__(self, message: str, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code

    @property
    def transient(self) -> bool:
        return self.status is None or self.status >= 500 or self.status in _TRANSIENT_STATUS


class AzureMLClient:
    def __init__(self, tracking_base: str, token: str, timeout: float = 30.0):
        self.base = tracking_base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _check(self, resp: requests.Response, what: str) -> requests.Response:
        if resp.ok:
            return resp
        try:
            body = resp.json()
            code, message = body.get("error_code"), body.get("message", resp.text)
        except ValueError:
            code, message = None, resp.text[:300]
        raise AzureMLError(f"Azure ML answered {resp.status_code} to {what}: {code or ''} {message}".strip(),
                           resp.status_code, code)

    def call(self, method: str, endpoint: str, body: dict | None = None, params: dict | None = None) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        what = f"{method} {endpoint}"
        try:
            # Serialised here, not by requests: metric values may be NaN/Infinity as MLflow sends them.
            data = None if body is None else json.dumps(body)
            resp = self.session.request(method, url, data=data, params=params, timeout=self.timeout,
                                        headers={"Content-Type": "application/json"} if data else None)
        except requests.RequestException as exc:
            raise AzureMLError(f"Azure ML unreachable ({what}): {type(exc).__name__}: {exc}") from None
        return self._check(resp, what).json() if resp.content else {}

    def put_artifact(self, artifact_uri: str, rel_path: str, fileobj) -> None:
        """Upload one run artifact through Azure ML's proxied artifact API (``mlflow-artifacts:``)."""
        parsed = urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":
            raise AzureMLError(f"cannot upload to run artifact URI {artifact_uri!r} (expected mlflow-artifacts:/...)",
                               400, "INVALID_PARAMETER_VALUE")
        path = "/".join(p for p in (parsed.path.strip("/"), rel_path.strip("/")) if p)
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{quote(path)}"
        try:
            resp = self.session.put(url, data=fileobj, timeout=max(self.timeout, 300))
        except requests.RequestException as exc:
            raise AzureMLError(f"Azure ML unreachable (artifact upload): {type(exc).__name__}: {exc}") from None
        self._check(resp, f"PUT artifact {rel_path}")

    def export_spans(self, experiment_id: str, otlp_request: bytes) -> None:
        """Log spans through Azure ML's OTLP endpoint (``POST /v1/traces``, protobuf)."""
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
        try:
            resp = self.session.post(f"{self.base}/v1/traces", data=otlp_request, headers=headers,
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            raise AzureMLError(f"Azure ML unreachable (span export): {type(exc).__name__}: {exc}") from None
        self._check(resp, "POST /v1/traces")
