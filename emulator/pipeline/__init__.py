"""The request pipeline both workspaces share, declared in one place.

A request passes, outermost first::

    journal   -> records every request and answer (off until enabled)
    faults    -> injected failures, for authenticated callers only
    [role WSGI layers, e.g. the Azure ML scope prefix]
    Flask     -> auth (before_request), validation, role routes, MLflow

Both roles call ``install(app, config)`` once from ``emulator.workspace.app.build_app``; the layers are
plain WSGI middleware, so their order is this list, not the order Flask hooks were registered in.
"""

from __future__ import annotations

from flask import Flask

from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig) -> None:
    from emulator.pipeline import admin, faults, journal, reset

    rules = faults.FaultRules()
    recorder = journal.Journal.from_env()
    # Innermost first: each wraps what is already there (MLflow + role layers).
    app.wsgi_app = faults.FaultMiddleware(app.wsgi_app, rules, faults.token_check(app, config), config.role)
    app.wsgi_app = journal.JournalMiddleware(app.wsgi_app, recorder)
    admin.install(app, rules, recorder)
    # A reset empties the workspace: its fault rules and journal too.
    reset.on_reset(app, rules.clear)
    reset.on_reset(app, recorder.clear)
