"""A small MLflow REST client for the Azure ML side of the mirror.

Not ``MlflowClient``: that one reads its token from process-wide environment variables and retries
for minutes inside each call; the relay needs its own credentials, short timeouts, and to decide
itself what to retry.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlparse

import requests

# Azure ML answers that are worth retrying: it is down, overloaded, or the link's token is wrong
# (fixed by linking again). Any other 4xx is a verdict on the write itself - if it says which
# write: a 4xx that names nothing that was sent (a proxy's or an injected fault's "Bad request")
# is retried too, so that the write is never set aside for a failure that was not its own.
_TRANSIENT_STATUS = {401, 403, 408, 425, 429}
# The request fields that identify what a call writes (the run, a metric/param/tag key, a name).
_NAMING_FIELDS = {"run_id", "experiment_id", "key", "name", "new_name", "experiment_name", "model_id", "path"}


class AzureMLError(Exception):
    def __init__(self, message: str, status: int | None = None, error_code: str | None = None,
                 names_item: bool = True):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.names_item = names_item

    @property
    def transient(self) -> bool:
        # fidelity: Mirror: faults are retried
        return (self.status is None or self.status >= 500 or self.status in _TRANSIENT_STATUS
                or not self.names_item)


def _identifiers(sent) -> set[str]:
    """The values of the naming fields anywhere in a request body or query."""
    found: set[str] = set()
    if isinstance(sent, dict):
        for field, value in sent.items():
            if field in _NAMING_FIELDS and isinstance(value, (str, int)) and str(value):
                found.add(str(value))
            else:
                found |= _identifiers(value)
    elif isinstance(sent, list):
        for value in sent:
            found |= _identifiers(value)
    return found


def _names_any(message: str, identifiers: set[str]) -> bool:
    """Whether the message names one of the identifiers, as a whole word (``lr`` is not in
    ``already``); a number only as an id (``id=3``, ``'3'``), not as in ``fault #3``."""
    for value in identifiers:
        if value.isdigit():
            pattern = rf"(?:\bid[= ]'?|'){value}(?!\w)"
        else:
            pattern = rf"(?<![\w.-]){re.escape(value)}(?![\w.-])"
        if re.search(pattern, message, re.IGNORECASE):
            return True
    return False


def _is_service_validation(body) -> bool:
    """Azure ML's own validation body (``{"Error": {"Code": "ValidationError", ...}, "ComponentName"}``,
    e.g. a run's 201st param): a verdict on what was sent even when it names none of it - a proxy's
    or an injected fault's page does not come in this shape."""
    # fidelity: Mirror: refused batch items
    return (isinstance(body, dict) and isinstance(body.get("Error"), dict)
            and body["Error"].get("Code") == "ValidationError" and "ComponentName" in body)


class _Answer(dict):
    """An answer's JSON object: a field it lacks is a malformed answer (retried), not a bug."""

    what = ""

    def __getitem__(self, key):
        try:
            return _answer(super().__getitem__(key), self.what)
        except (KeyError, TypeError):
            raise AzureMLError(f"Azure ML answered {self.what} without {key!r}: a malformed answer") from None

    def get(self, key, default=None):
        return _answer(super().get(key, default), self.what)


def _answer(value, what: str):
    if isinstance(value, dict) and not isinstance(value, _Answer):
        value = _Answer(value)
        value.what = what
    elif isinstance(value, list):
        value = [_answer(v, what) for v in value]
    return value


class AzureMLClient:
    def __init__(self, tracking_base: str, token: str, timeout: float = 30.0):
        self.base = tracking_base.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _check(self, resp: requests.Response, what: str, sent=None) -> requests.Response:
        if resp.ok:
            return resp
        body = None
        try:
            body = resp.json()
            code, message = body.get("error_code"), str(body.get("message", resp.text))
        except (ValueError, AttributeError):
            code, message = None, resp.text[:300]
        names_item = (resp.status_code >= 500 or _names_any(message, _identifiers(sent))
                      or (resp.status_code == 400 and _is_service_validation(body)))
        raise AzureMLError(f"Azure ML answered {resp.status_code} to {what}: {code or ''} {message}".strip(),
                           resp.status_code, code, names_item)

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
        self._check(resp, what, [body, params])
        try:
            answer = resp.json() if resp.content else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):  # a proxy's page, a cut-off body: not Azure ML's verdict
            raise AzureMLError(f"Azure ML answered {resp.status_code} to {what} with a malformed body: "
                               f"{resp.text[:200]!r}")
        return _answer(answer, f"{resp.status_code} to {what}")

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
        self._check(resp, f"PUT artifact {rel_path}", {"path": rel_path, "run_id": path})

    def export_spans(self, experiment_id: str, otlp_request: bytes) -> None:
        """Log spans through Azure ML's OTLP endpoint (``POST /v1/traces``, protobuf)."""
        headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
        try:
            resp = self.session.post(f"{self.base}/v1/traces", data=otlp_request, headers=headers,
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            raise AzureMLError(f"Azure ML unreachable (span export): {type(exc).__name__}: {exc}") from None
        self._check(resp, "POST /v1/traces", {"experiment_id": experiment_id})
