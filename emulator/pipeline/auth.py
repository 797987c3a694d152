"""Who may call a workspace: bearer tokens for APIs, a per-workspace cookie for the MLflow UI only.

API clients send ``Authorization: Bearer <token>``; that is the only credential the API, admin
(``/__emulator/...``) and DBFS routes take. Browsers cannot send it, so, as Jupyter does,
``/?token=<token>`` logs the UI in: it sets an HttpOnly cookie and redirects to the same URL
without the token. The cookie authorises the UI's own routes only (``UI_PREFIXES``), never
``/api/``, ``/__emulator/`` or ``/dbfs``.

Cookies ignore ports, so every local server sees every ``127.0.0.1`` cookie: each workspace has
its own cookie name, and the value is an HMAC derived from the token, not the token, so one
workspace (or anything else on another local port) never receives the other's bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from flask import Request

# Routes the MLflow UI itself loads or calls (paths after the Azure ML scope prefix is stripped).
UI_PAGE = "/"
# Pages a browser navigates to, also from links on other sites: the UI shell, its static files, and
# the "View run" links the Databricks client prints (/ml/experiments/...).
PAGE_PREFIXES = ("/static-files/", "/ml/")
UI_PREFIXES = (*PAGE_PREFIXES, "/ajax-api/")
UI_PATHS = ("/", "/graphql", "/get-artifact", "/model-versions/get-artifact", "/favicon.ico")
LOGIN_PARAM = "token"
# Every workspace's login cookie starts so (the name then says role and port).
COOKIE_PREFIX = "emulator_token_"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def presented_token(request: Request) -> str | None:
    """The API credential of a request: its bearer token (the login cookie is not one)."""
    return bearer_token(request)


def token_matches(presented: str | None, expected: str) -> bool:
    # Constant-time comparison: the emulators are also used to test auth handling.
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def cookie_name(role: str, public_url: str) -> str:
    # fidelity: Security promises — one cookie per workspace (role and public port)
    port = urlsplit(public_url).port or 80
    return f"{COOKIE_PREFIX}{role}_{port}"


def cookie_value(token: str, name: str) -> str:
    """What the login cookie holds: a MAC of the cookie's name keyed by the token, not the token."""
    return hmac.new(token.encode(), f"emulator-ui-login:{name}".encode(), hashlib.sha256).hexdigest()


def in_ui_scope(path: str) -> bool:
    return path in UI_PATHS or path.startswith(UI_PREFIXES)


def is_page_load(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and (request.path == UI_PAGE or request.path.startswith(PAGE_PREFIXES))


def is_ui_login(request: Request) -> bool:
    """``GET /?token=...``: the link `emulator status` prints for the UI."""
    return request.method in ("GET", "HEAD") and request.path == UI_PAGE and LOGIN_PARAM in request.args


def cookie_matches(request: Request, name: str, token: str) -> bool:
    presented = request.cookies.get(name)
    return presented is not None and hmac.compare_digest(presented.encode(), cookie_value(token, name).encode())


def url_without_login(request: Request) -> str:
    """The same (relative) URL minus ``?token=``: the address bar and history never keep it."""
    from urllib.parse import urlencode

    rest = [(k, v) for k, v in request.args.items(multi=True) if k != LOGIN_PARAM]
    target = f"{request.script_root}{request.path}"
    return f"{target}?{urlencode(rest)}" if rest else target
