"""Blanking the credentials a call carries or an answer hands out, for the journal and the access log.

Two kinds: URL parameters that sign or authorise a URL (``?token=`` of the UI login, the SAS
``sig``/``se``/``skoid``... of blob URLs, S3 presigned ``X-Amz-*``), wherever a URL appears: in the
query, or inside a body (``signed_uri`` of artifact credentials, Azure ML run history's content
URIs); and JSON fields that hold a secret (Unity Catalog's temporary ``secret_access_key`` and
``session_token``, the registry's ``sig``), matched whatever their case or ``_``/``-`` spelling.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode

REDACTED = "REDACTED"
# SAS: sig (signature), se (expiry), sk* (user delegation key: oid, tid, start, expiry, service, version).
SECRET_PARAMS = {"token", "access_token", "code", "sig", "se", "skoid", "sktid", "skt", "ske", "sks", "skv"}
SECRET_PARAM_PREFIXES = ("x-amz-",)
# Compared with "_" and "-" removed, lower case: session_token, sessionToken, SessionToken.
SECRET_FIELDS = {"secretaccesskey", "sessiontoken", "sastoken", "oauthtoken", "accesstoken", "refreshtoken",
                 "tokenvalue", "clientsecret", "password", "accountkey", "sig", "signature"}
_URL_PARAM = re.compile(r"(?P<lead>[?&](?:amp;)?)(?P<name>[A-Za-z][A-Za-z0-9_-]*)=(?P<value>[^&#\s\"'<>\\]*)")


def secret_param(name: str) -> bool:
    name = name.lower()
    return name in SECRET_PARAMS or name.startswith(SECRET_PARAM_PREFIXES)


def secret_field(name: str) -> bool:
    return name.replace("_", "").replace("-", "").lower() in SECRET_FIELDS


def redact_query(query: str) -> str:
    """A query string with the values of secret parameters replaced."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if secret_param(k) else v) for k, v in pairs])


def redact_urls(text: str) -> str:
    """``text`` with the secret parameters of every URL in it replaced (``?sig=...`` -> ``?sig=REDACTED``)."""
    return _URL_PARAM.sub(
        lambda m: f"{m['lead']}{m['name']}={REDACTED}" if secret_param(m["name"]) else m[0], text)


def _redact_json(value):
    if isinstance(value, dict):
        return {k: REDACTED if secret_field(k) and isinstance(v, str) else _redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return redact_urls(value) if isinstance(value, str) else value


def redact_body(text: str, content_type: str | None) -> str:
    """A request or answer body with its credentials replaced: JSON by field and URL parameter,
    a form by parameter, any other text by URL parameter."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, REDACTED if secret_param(k) or secret_field(k) else v) for k, v in pairs])
    try:
        parsed = json.loads(text)
    except ValueError:
        return redact_urls(text)
    redacted = _redact_json(parsed)
    return text if redacted is parsed or redacted == parsed else json.dumps(redacted)
