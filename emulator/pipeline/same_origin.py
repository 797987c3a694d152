"""Browser-facing protections: cookie-authorised requests must come from the workspace's own pages.

A page on any other local port is "same-site" with the workspace (SameSite ignores ports), so the
browser attaches the UI cookie to its requests. Those are refused here: a cookie-authorised
request whose ``Origin`` is another origin, or whose ``Sec-Fetch-Site`` is not ``same-origin``
(or ``none``: typed into the address bar), is a 403; a state-changing one must prove it comes
from the workspace's own page (browsers send ``Origin`` on every POST, and ``Sec-Fetch-Site``).

No CORS: MLflow 3.17.2's middleware answers credentialed CORS for every ``http://localhost:*`` /
``127.0.0.1:*`` origin whatever ``MLFLOW_SERVER_CORS_ALLOWED_ORIGINS`` says (security.py adds
LOCALHOST_ORIGIN_PATTERNS unconditionally), so the server runs with that middleware disabled
(emulator.workspace.app) and this module adds the security headers it would have set. Same-origin
pages need no CORS headers at all.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Request, Response, request

STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
# The notebook trace renderer is meant to be framed by Jupyter (MLflow exempts it too).
_FRAMEABLE = "/static-files/lib/notebook-trace-renderer/"


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origins(req: Request, public_url: str) -> set[str]:
    # The address the browser used (it cannot forge Host) and the configured public URL.
    return {_origin_of(req.host_url), _origin_of(public_url)}


def cross_site_problem(req: Request, public_url: str, page_load: bool = False) -> str | None:
    """Why a cookie-authorised request is refused, or None when it comes from our own pages."""
    # fidelity: Security promises — cookies authorise same-origin UI requests only
    origin = req.headers.get("Origin")
    if origin is not None and origin.lower() not in own_origins(req, public_url):
        return f"Cross-origin request from {origin!r} refused: the UI cookie works on its own pages only."
    fetch_site = req.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none") and not page_load:
        return f"Request from another site ({fetch_site}) refused: the UI cookie works on its own pages only."
    if req.method in STATE_CHANGING and origin is None and fetch_site != "same-origin":
        return "A state-changing request authorised by the UI cookie must come from the UI (no Origin header)."
    return None


def install_headers(app: Flask) -> None:
    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if not request.path.startswith(_FRAMEABLE):
            response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return response
