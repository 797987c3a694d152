"""Model-version status as the Databricks workspace registry reports it.

On Databricks ``model-versions/create`` answers ``PENDING_REGISTRATION`` while the server copies the
version's files; the version becomes ``READY`` (or ``FAILED_REGISTRATION`` with a
``status_message``), and the client's ``await_registration_for`` polls ``model-versions/get``
every 3 s until the status is no longer pending (``_await_model_version_creation_impl``). Here
the copy (``registry_artifacts``) is done before the answer, so a version is normally ``READY`` by
the client's first poll; fault rules make the slow and failed cases:

* ``hold_pending_s: N``: the version stays ``PENDING_REGISTRATION`` for N seconds, then ``READY``;
* ``fail_registration: "message"``: it ends ``FAILED_REGISTRATION`` with that message.

A source with no files fails on its own (``registry_artifacts``); a held version ends in the
status it had before the hold.
"""

from __future__ import annotations

import json
import logging
import threading

from flask import Flask, request

from emulator.pipeline.faults import ENVIRON_RULE

_logger = logging.getLogger(__name__)

PENDING, READY, FAILED = "PENDING_REGISTRATION", "READY", "FAILED_REGISTRATION"
HELD_MESSAGE = "Copying model version files (held by an emulator fault)."


def registration_rule():
    """The hold_pending_s / fail_registration rule that fired on this request, if any."""
    rule = request.environ.get(ENVIRON_RULE)
    return rule if rule is not None and (rule.hold_pending_s or rule.fail_registration) else None


def set_status(name: str, version: str, status: str, message: str | None = None) -> None:
    from mlflow.server.handlers import _get_model_registry_store
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    store = _get_model_registry_store()
    with store.ManagedSessionMaker() as session:
        session.query(SqlModelVersion).filter(
            SqlModelVersion.name == name, SqlModelVersion.version == int(version)
        ).update({SqlModelVersion.status: status, SqlModelVersion.status_message: message})


def get_status(name: str, version: str) -> tuple[str, str | None]:
    from mlflow.server.handlers import _get_model_registry_store

    mv = _get_model_registry_store().get_model_version(name, version)
    return str(mv.status), mv.status_message


class Later:
    """Calls made after a delay (held registrations), all cancelled by a workspace reset."""

    def __init__(self):
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()

    def call(self, seconds: float, fn, what: str) -> None:
        def run():
            with self._lock:
                self._timers.discard(timer)
            try:
                fn()
            except Exception:  # the version may have been deleted or the workspace reset meanwhile
                _logger.exception("could not %s", what)

        timer = threading.Timer(seconds, run)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def cancel_all(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()


class Lifecycle:
    def __init__(self):
        self.later = Later()

    def hold(self, name: str, version: str, seconds: float) -> None:
        final, final_message = get_status(name, version)
        set_status(name, version, PENDING, HELD_MESSAGE)
        self.later.call(seconds, lambda: set_status(name, version, final, final_message),
                        f"mark {name} v{version} {final}")

    def cancel_all(self) -> None:
        self.later.cancel_all()

    def after_create(self, response):
        """Apply a registration fault, and answer PENDING_REGISTRATION as Databricks does."""
        if getattr(response, "status_code", 200) != 200:
            return response
        payload = response.get_json(silent=True) or {}
        mv = payload.get("model_version") or {}
        if not (mv.get("name") and mv.get("version")):
            return response
        rule = registration_rule()
        if rule is not None and rule.fail_registration:
            set_status(mv["name"], mv["version"], FAILED, rule.fail_registration)
        elif rule is not None and rule.hold_pending_s:
            self.hold(mv["name"], mv["version"], rule.hold_pending_s)
        # fidelity: Registration lifecycle
        mv["status"] = PENDING
        mv.pop("status_message", None)
        response.set_data(json.dumps(payload))
        return response


def install(app: Flask) -> Lifecycle:
    """Wrap MLflow's ``model-versions/create`` view (after ``registry_artifacts`` wrapped it)."""
    from emulator.pipeline import reset

    lifecycle = Lifecycle()

    def wrap(original):
        def create(*args, **kwargs):
            return lifecycle.after_create(original(*args, **kwargs))

        return create

    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.rule.endswith("/mlflow/model-versions/create")}
    for endpoint in endpoints:
        app.view_functions[endpoint] = wrap(app.view_functions[endpoint])
    reset.on_reset(app, lifecycle.cancel_all)
    return lifecycle
