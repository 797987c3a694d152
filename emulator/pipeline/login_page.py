"""The page a browser gets instead of a JSON 401 when it opens the UI without being logged in.

API clients (which accept JSON or anything) keep the backend's JSON 401; only page loads whose
``Accept`` prefers ``text/html`` (what browsers send when they navigate) get this page.
"""

from __future__ import annotations

from html import escape

from flask import Request, Response

from emulator.pipeline import auth

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in to the {role} emulator</title></head>
<body>
<h1>Log in to the emulated {role} workspace</h1>
<p>{problem}</p>
<p>Open the UI with the link that <code>emulator status</code> prints for this workspace
(its <code>ui</code> entry, <code>{url}/?token=&lt;token&gt;</code>). The token logs this browser in
with a cookie and is then dropped from the address.</p>
</body></html>
"""


def wants_html(request: Request) -> bool:
    """A browser navigating to a UI page: text/html preferred over JSON (``*/*`` is not enough)."""
    if not auth.is_page_load(request):
        return False
    # Browsers list text/html first; requests/urllib send */*, which picks the first offer (JSON).
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def response(role: str, public_url: str, problem: str) -> Response:
    name = {"databricks": "Databricks", "azureml": "Azure ML"}.get(role, role)
    body = _PAGE.format(role=escape(name), problem=escape(problem), url=escape(public_url))
    # The same status as the JSON answer: only the shape follows what the caller can read.
    return Response(body, 401, mimetype="text/html", headers={"Cache-Control": "no-store"})
