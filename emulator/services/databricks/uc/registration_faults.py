"""``hold_pending_s`` / ``fail_registration`` fault rules on Unity Catalog versions.

A UC version is ``PENDING_REGISTRATION`` from ``model-versions/create`` until ``finalize`` (the
client uploads the files in between); finalize is where Unity Catalog decides the outcome. A rule
that fired on the create (or on the finalize) applies there: ``fail_registration`` ends the version
``FAILED_REGISTRATION`` with that ``status_message``; ``hold_pending_s`` keeps it pending for N
seconds after finalize, then ``READY``.
"""

from __future__ import annotations

import threading

from emulator.services.databricks.registration_lifecycle import (
    FAILED,
    HELD_MESSAGE,
    PENDING,
    READY,
    Later,
    registration_rule,
)
from emulator.services.databricks.uc.store import UcStore, now_ms


class RegistrationFaults:
    def __init__(self, store: UcStore):
        self._store = store
        self._rules: dict[tuple[str, int], object] = {}  # (model id, version) -> rule seen at create
        self._lock = threading.Lock()
        self.later = Later()

    def remember(self, model_id: str, number: int) -> None:
        rule = registration_rule()
        if rule is not None:
            with self._lock:
                self._rules[(model_id, number)] = rule

    def outcome(self, model_id: str, number: int) -> tuple[str, str | None]:
        """The status (and message) finalize gives this version."""
        with self._lock:
            remembered = self._rules.pop((model_id, number), None)
        rule = registration_rule() or remembered
        # fidelity: Registration lifecycle
        if rule is None:
            return READY, None
        if rule.fail_registration:
            return FAILED, rule.fail_registration
        self.later.call(rule.hold_pending_s, lambda: self._ready(model_id, number),
                        f"mark UC version {model_id} v{number} READY")
        return PENDING, HELD_MESSAGE

    def _ready(self, model_id: str, number: int) -> None:
        with self._store.tx() as db:
            db.execute("UPDATE versions SET status = ?, status_message = NULL, updated = ? "
                       "WHERE model = ? AND version = ? AND status = ?", (READY, now_ms(), model_id, number, PENDING))

    def reset(self) -> None:
        self.later.cancel_all()
        with self._lock:
            self._rules.clear()
