"""Access tokens the Azure ML stand-in issues and accepts (no Flask here: the harness uses it too).

The workspace accepts its static token (``EMULATOR_AZUREML_TOKEN`` / state config, sent by the
vanilla client as ``MLFLOW_TRACKING_TOKEN``) and JWTs minted by its MSI endpoint. The JWTs are
HMAC-signed with a key derived from the workspace token, so they survive server restarts and stop
working when the workspace token changes, without keeping any token store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

IDENTITY_HEADER_ENV = "EMULATOR_AZUREML_IDENTITY_HEADER"
TOKEN_TTL_SECONDS = 24 * 3600  # App Service managed identity tokens last about a day

# Audiences an Azure ML workspace takes for its MLflow and ARM APIs (with or without a slash).
ACCEPTED_AUDIENCES = {
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://ml.azure.com",
}


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def identity_header(workspace_token: str) -> str:
    """The secret the MSI endpoint wants in ``X-IDENTITY-HEADER`` (App Service's IDENTITY_HEADER)."""
    return os.environ.get(IDENTITY_HEADER_ENV) or _derive(workspace_token, "identity-header").hex()[:32]


def service_principal(workspace_token: str) -> tuple[str, str]:
    """(client id, client secret) of the one service principal Entra (entra.py) issues tokens to."""
    client_id = str(uuid.UUID(bytes=_derive(workspace_token, "service-principal-id")[:16], version=4))
    return client_id, _derive(workspace_token, "service-principal-secret").hex()[:40]


def tenant_id(subscription_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-tenant:{subscription_id}"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(workspace_token: str, resource: str, subscription_id: str, *, ttl: int = TOKEN_TTL_SECONDS,
         now: float | None = None, principal: str = "emulator-managed-identity") -> dict:
    """A managed-identity token answer: ``{access_token, expires_on, resource, token_type, ...}``."""
    now = int(time.time() if now is None else now)
    tid = tenant_id(subscription_id)
    oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-principal:{principal}"))
    claims = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "oid": oid,
        "sub": oid,
        "tid": tid,
        "appid": oid,
        "idtyp": "app",
        "jti": uuid.uuid4().hex,
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(_derive(workspace_token, "msi-signing"), f"{header}.{payload}".encode(), hashlib.sha256)
    return {
        "access_token": f"{header}.{payload}.{_b64(signature.digest())}",
        "expires_on": str(claims["exp"]),
        "expires_in": str(ttl),
        "not_before": str(now),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": oid,
    }


def check(presented: str, workspace_token: str, extra_audiences: frozenset[str] = frozenset()) -> str | None:
    """None if the workspace accepts ``presented``; otherwise why not (for the 401 message)."""
    if hmac.compare_digest(presented.encode(), workspace_token.encode()):
        return None
    parts = presented.split(".")
    if len(parts) != 3:
        return "The access token is invalid."
    expected = hmac.new(_derive(workspace_token, "msi-signing"), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
    # fidelity: Azure ML workspace
    # The signature exactly as issued: decoding first would take "sig==" or "s!ig" as "sig".
    signature_ok = hmac.compare_digest(parts[2].encode(), _b64(expected.digest()).encode())
    try:
        claims = json.loads(_unb64(parts[1])) if signature_ok else None
    except ValueError:
        return "The access token is invalid."
    if not isinstance(claims, dict):
        return "The access token is invalid (bad signature)."
    now = time.time()
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
        return "The access token has expired."
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 300:
        return "The access token is not yet valid."
    if str(claims.get("aud", "")).rstrip("/") not in ACCEPTED_AUDIENCES | extra_audiences:
        return (f"The access token has an invalid audience '{claims.get('aud')}'; an Azure ML workspace "
                f"takes tokens for https://management.azure.com/ or https://ml.azure.com.")
    return None
