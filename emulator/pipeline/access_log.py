"""What the access log (``EMULATOR_ACCESS_LOG=1``) may print about a request.

Secrets in the query (``?token=`` of the UI login, ``sig=`` of signed URLs...) are redacted
(emulator.pipeline.redaction),
and control characters (a ``%0a`` in the path decodes to a newline) are escaped, so a request can
neither leak a credential into the log nor forge log lines.
"""

from __future__ import annotations

from flask import Request

from emulator.pipeline.redaction import redact_query


def printable(text: str) -> str:
    """``text`` with every non-printable character written as a Python escape (``\\n``, ``\\x1b``)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def request_target(request: Request) -> str:
    # fidelity: Security promises — no credentials in logs
    query = request.query_string.decode("latin-1")
    target = request.script_root + request.path
    if query:
        target += "?" + redact_query(query)
    return printable(target)
