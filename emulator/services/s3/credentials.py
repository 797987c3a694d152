"""Temporary AWS-style credentials for one model version's files, as UC hands them out.

Stateless on purpose: the workspace issues them and the S3 gate (another process, maybe another
container) checks them, with nothing shared but a key derived from the workspace token. The session
token carries the scope (bucket, key prefix, read or read-write) and the expiry, HMAC-signed; the
secret key is derived from the access key id, so the gate can recompute it and verify SigV4.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

TTL_ENV = "EMULATOR_UC_CREDENTIAL_TTL"
DEFAULT_TTL_S = 900  # STS's minimum session length; tests set a few seconds to see expiry


class CredentialError(Exception):
    """``code`` is S3's error code for the problem (InvalidToken, ExpiredToken, ...)."""

    def __init__(self, code: str, message: str, status: int):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Scope:
    bucket: str
    prefix: str  # keys under "<prefix>/"
    write: bool
    expires: int  # epoch seconds


def master_key(workspace_token: str) -> bytes:
    return hmac.new(workspace_token.encode(), b"emulator-uc-s3-credentials", hashlib.sha256).digest()


def admin_token(master: bytes) -> str:
    """What the workspace presents to the gate's admin routes (sealing a finalized version)."""
    return hmac.new(master, b"admin", hashlib.sha256).hexdigest()


def ttl_seconds() -> int:
    value = os.environ.get(TTL_ENV)
    return max(1, int(value)) if value and value.isdigit() else DEFAULT_TTL_S


def secret_for(master: bytes, access_key_id: str) -> str:
    return base64.b64encode(hmac.new(master, b"secret:" + access_key_id.encode(), hashlib.sha256).digest())[:40].decode()


def _sign(master: bytes, payload: str) -> str:
    return hmac.new(master, payload.encode(), hashlib.sha256).hexdigest()


def issue(master: bytes, bucket: str, prefix: str, write: bool, ttl: int | None = None) -> dict:
    """The ``aws_temp_credentials`` of a GenerateTemporaryModelVersionCredentials answer, plus expiry (ms)."""
    expires = int(time.time()) + (ttl or ttl_seconds())
    access_key_id = "ASIA" + secrets.token_hex(8).upper()
    claims = {"k": access_key_id, "b": bucket, "p": prefix, "w": write, "e": expires}
    payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode()
    return {
        "access_key_id": access_key_id,
        "secret_access_key": secret_for(master, access_key_id),
        "session_token": f"{payload}.{_sign(master, payload)}",
        "expiration_time": expires * 1000,
    }


def check_session(master: bytes, access_key_id: str, session_token: str | None, now: float | None = None) -> Scope:
    """The scope a session token grants, or CredentialError as S3 would answer it."""
    if not session_token:
        # Only temporary credentials are ever issued: a request without a session token uses a key
        # this "account" does not have.
        raise CredentialError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
    payload, _, sig = session_token.partition(".")
    if not sig or not hmac.compare_digest(sig, _sign(master, payload)):
        raise CredentialError("InvalidToken", "The provided token is malformed or otherwise invalid.", 400)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        raise CredentialError("InvalidToken", "The provided token is malformed or otherwise invalid.", 400) from None
    if claims.get("k") != access_key_id:
        raise CredentialError("InvalidToken", "The provided token is malformed or otherwise invalid.", 400)
    # fidelity: Unity Catalog model registry
    if (now or time.time()) >= claims["e"]:
        raise CredentialError("ExpiredToken", "The provided token has expired.", 400)
    return Scope(claims["b"], claims["p"], bool(claims["w"]), int(claims["e"]))
