"""What the access log (``EMULATOR_ACCESS_LOG=1``) may print about a request.

Secrets in the query (``?token=`` of the UI login, ``sig=`` of signed download URLs) are redacted,
and control characters (a ``%0a`` in the path decodes to a newline) are escaped, so a request can
neither leak a credential into the log nor forge log lines.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from flask import Request

SECRET_PARAMS = {"token", "sig", "access_token", "code"}
REDACTED = "REDACTED"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as a Python escape (``\\n``, ``\\x1b``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def redacted_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, REDACTED if k.lower() in SECRET_PARAMS else v) for k, v in pairs])


def request_target(request: Request) -> str:
    # fidelity: Security promises — no credentials in logs
    query = request.query_string.decode("latin-1")
    target = request.script_root + request.path
    if query:
        target += "?" + redacted_query(query)
    return printable(target)
