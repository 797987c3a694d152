"""Shared access signatures for the emulated blob store (no Flask: the history API signs, the blob
service verifies). Like Azure's service SAS: permissions ``sp``, expiry ``se``, ``sig`` = HMAC-SHA256
over those and the blob's account/container/name, keyed by a secret derived from the workspace
token (so a SAS is useless once the token changes, and a path can't be swapped in a signed URL).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

SAS_VERSION = "2021-08-06"
TTL_SECONDS = 24 * 3600
READ, WRITE = "r", "rcw"


def _key(workspace_token: str) -> bytes:
    return hmac.new(workspace_token.encode(), b"blob-sas", hashlib.sha256).digest()


def _string_to_sign(permissions: str, expiry: str, account: str, container: str, blob: str) -> bytes:
    return "\n".join((permissions, expiry, account, f"/{container}/{blob}")).encode()


def _sign(workspace_token: str, *fields: str) -> str:
    return base64.b64encode(hmac.new(_key(workspace_token), _string_to_sign(*fields), hashlib.sha256).digest()).decode()


def _query(workspace_token: str, account: str, container: str, blob: str, permissions: str, ttl: int,
           now: float | None) -> str:
    expiry = datetime.fromtimestamp((time.time() if now is None else now) + ttl, timezone.utc)
    se = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    sig = _sign(workspace_token, permissions, se, account, container, blob)
    return urlencode({"sv": SAS_VERSION, "sr": "b" if blob else "c", "sp": permissions, "se": se, "sig": sig})


def sign(workspace_token: str, account: str, container: str, blob: str, permissions: str,
         ttl: int = TTL_SECONDS, now: float | None = None) -> str:
    """The query string (no '?') that grants ``permissions`` on one blob until now + ttl."""
    if not blob:  # never a container SAS by accident: that is sign_container
        raise ValueError("a blob SAS needs a blob name")
    return _query(workspace_token, account, container, blob, permissions, ttl, now)


def sign_container(workspace_token: str, account: str, container: str, permissions: str,
                   ttl: int = TTL_SECONDS, now: float | None = None) -> str:
    """A container SAS (``sr=c``): ``permissions`` on every blob of the container (``l``: listing)."""
    return _query(workspace_token, account, container, "", permissions, ttl, now)


CONTAINER_ALL = "racwdl"  # what a datastore's expirable SAS grants (read, add, create, write, delete, list)


def blob_url(base: str, container: str, blob: str, query: str) -> str:
    return f"{base}/{container}/{quote(blob, safe='/')}?{query}"


AUTH_FAILED = "AuthenticationFailed"


def verify(workspace_token: str, account: str, container: str, blob: str, args,
           needed: str) -> tuple[str, str] | None:
    """None if the SAS in ``args`` grants ``needed`` (one letter) on the blob; else Storage's
    (error code, message)."""
    sp, se, sig = args.get("sp", ""), args.get("se", ""), args.get("sig", "")
    if not (sp and se and sig):
        return AUTH_FAILED, "Server failed to authenticate the request: the shared access signature is missing."
    # A container SAS (sr=c) is signed over "/<container>/" alone (a blob SAS names its blob, so
    # neither can stand in for the other); it covers every blob of that container only.
    signed_blob = "" if args.get("sr") == "c" else blob
    expected = _sign(workspace_token, sp, se, account, container, signed_blob)
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        return AUTH_FAILED, "Signature did not match. String to sign used was for another resource or permissions."
    try:
        expiry = datetime.strptime(se, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return AUTH_FAILED, "Signature fields not well formed (se)."
    if expiry.timestamp() < time.time():
        return AUTH_FAILED, "Signed expiry time has passed."
    if needed not in sp:
        return ("AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.")
    return None
