"""SigV4 checks for the S3 gate: who signed a request (header or presigned URL) and was it them.

moto, which serves the bytes, accepts any signature; the gate in front of it recomputes the
signature with botocore's own signer from the secret derived for the presented access key (see
``credentials``), as S3 does, and refuses mismatches, expired or foreign tokens.
"""

from __future__ import annotations

import calendar
import hmac
import time
from urllib.parse import parse_qsl, quote

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from emulator.services.s3.credentials import (
    CredentialError,
    Scope,
    check_session,
    secret_for,
)

_SIG_MISMATCH = CredentialError(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method.",
    403,
)


def _raw_target(environ) -> tuple[str, str]:
    """Path and query exactly as sent: the signature covers the encoded form."""
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        path, _, query = raw.partition("?")
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        return path, query
    return quote(environ.get("PATH_INFO", "/")), environ.get("QUERY_STRING", "")


def _headers(environ) -> dict[str, str]:
    out = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").lower()] = environ[key]
    return out


def _parse_header_auth(value: str) -> dict[str, str]:
    _, _, rest = value.partition(" ")
    parts = {}
    for item in rest.split(","):
        key, _, val = item.strip().partition("=")
        parts[key] = val
    return parts


def authenticate(environ, master: bytes) -> Scope:
    """The scope the request's credentials grant; CredentialError if S3 would refuse it."""
    headers = _headers(environ)
    path, query = _raw_target(environ)
    params = dict(parse_qsl(query, keep_blank_values=True))
    if headers.get("authorization", "").startswith("AWS4-HMAC-SHA256"):
        auth = _parse_header_auth(headers["authorization"])
        credential, signed, signature = auth.get("Credential", ""), auth.get("SignedHeaders", ""), auth.get("Signature", "")
        token = headers.get("x-amz-security-token")
        timestamp = headers.get("x-amz-date", "")
        presigned = False
    elif "X-Amz-Signature" in params:
        credential, signed, signature = params.get("X-Amz-Credential", ""), params.get("X-Amz-SignedHeaders", ""), params["X-Amz-Signature"]
        token = params.get("X-Amz-Security-Token")
        timestamp = params.get("X-Amz-Date", "")
        presigned = True
    else:
        raise CredentialError("AccessDenied", "Access Denied", 403)
    scope_parts = credential.split("/")
    if len(scope_parts) != 5 or not signature:
        raise CredentialError("AuthorizationHeaderMalformed", "The authorization header is malformed.", 400)
    access_key_id, region = scope_parts[0], scope_parts[2]
    scope = check_session(master, access_key_id, token)
    if presigned:
        try:
            signed_at = calendar.timegm(time.strptime(timestamp, "%Y%m%dT%H%M%SZ"))
            lifetime = int(params.get("X-Amz-Expires", "0"))
        except ValueError:
            raise CredentialError("AuthorizationQueryParametersError", "X-Amz-Date or X-Amz-Expires is malformed.", 400) from None
        if time.time() > signed_at + lifetime:
            raise CredentialError("AccessDenied", "Request has expired", 403)
    creds = Credentials(access_key_id, secret_for(master, access_key_id), token)
    wanted = set(signed.split(";"))
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    req_headers = {k: v for k, v in headers.items() if k in wanted}
    if presigned:
        query_wo_sig = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Signature="))
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=f"http://{host}{path}?{query_wo_sig}", headers=req_headers)
        signer = S3SigV4QueryAuth(creds, "s3", region, expires=int(params.get("X-Amz-Expires", "3600")))
    else:
        url = f"http://{host}{path}" + (f"?{query}" if query else "")
        request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, headers=req_headers)
        signer = S3SigV4Auth(creds, "s3", region)
    request.context["timestamp"] = timestamp
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise _SIG_MISMATCH
    return scope
