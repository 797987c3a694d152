"""Bearer-token checks, shared by both workspaces.

API clients send ``Authorization: Bearer <token>``. Browsers (the MLflow UI) cannot, so, as Jupyter
does, ``?token=<token>`` on any page sets an HttpOnly cookie that is accepted afterwards.
"""

from __future__ import annotations

import hmac

from flask import Request, Response

COOKIE = "emulator_token"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def presented_token(request: Request) -> str | None:
    return bearer_token(request) or request.args.get("token") or request.cookies.get(COOKIE)


def token_matches(presented: str | None, expected: str) -> bool:
    # Constant-time comparison: the emulators are also used to test auth handling.
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def remember_ui_login(request: Request, response: Response, expected: str) -> Response:
    if request.args.get("token") and token_matches(request.args.get("token"), expected):
        response.set_cookie(COOKIE, expected, httponly=True, samesite="Strict")
    return response
