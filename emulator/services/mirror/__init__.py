"""Linked workspaces: dual tracking from the Databricks workspace to a linked Azure ML workspace.

``install(app, config)`` (called by the Databricks role) wires four parts, one job each:

* ``link``      link state (``<state>/databricks/link.json``), read at start-up;
* ``outbox``    the durable, ordered queue of acknowledged writes (``outbox.db``);
* ``recorder``  an after_request hook turning each successful tracking write into events;
* ``relay``     the background thread delivering them to Azure ML (a trace's spans: ``traces``);
* ``ledger`` / ``reconcile``  what was recorded per run, compared with the store at start-up so a
  write acknowledged just before a crash (no event yet) is queued after all;

plus the admin routes in ``admin`` (the portal's "link" button stand-in and the mirror status).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import Flask

from emulator.settings import ServerConfig

_logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"


class Mirror:
    def __init__(self, config: ServerConfig, tracking_store):
        from emulator.services.mirror.outbox import Outbox
        from emulator.services.mirror.relay import Relay

        self.config = config
        self.dir = Path(config.state_dir)
        self.outbox = Outbox(self.dir / OUTBOX_FILE)
        self.relay = Relay(self.outbox, self.dir / "artifacts", config.public_url, tracking_store)
        self._seen_lock = threading.Lock()
        self._seen: tuple | None = None  # link.json's identity when last read
        self._record: dict | None = None
        self._load()  # linked while the server was down (``emulator link``): adopt its target

    # link.json is the one source of truth for "linked": the in-memory view is a cache of it,
    # re-read whenever the file changed (one stat per write request), so it cannot drift.
    # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
    @property
    def linked(self) -> bool:
        return self._load() is not None

    def _load(self) -> dict | None:
        from emulator.services.mirror import link

        with self._seen_lock:
            seen = link.identity(self.dir)
            if seen != self._seen:
                record = link.read(self.dir)
                if record and record != self._record:
                    self._set_target(record)
                self._seen, self._record = seen, record
            return self._record

    def _set_target(self, record: dict) -> None:
        target = {"url": record["tracking_base"], "token": record["azureml_token"]}
        if self.outbox.get_meta("target") != target:
            self.outbox.set_meta("target", target)

    def link(self, azureml_url: str, azureml_token: str) -> dict:
        from emulator.services.mirror import link, reconcile

        identity = {
            "subscription_id": self.config.subscription_id,
            "resource_group": self.config.resource_group,
            "workspace_name": self.config.workspace_name,
        }
        record = link.make(azureml_url, azureml_token, identity)
        with link.locked(self.dir):
            link.write(self.dir, record)
            self._load()  # sets the relay's target from what is now on disk
            reconcile.mark_linked(self.outbox, self.relay.tracking_store())
        self.relay.wake()
        _logger.info("linked to Azure ML at %s", record["tracking_base"])
        return self.status()

    def unlink(self) -> dict:
        from emulator.services.mirror import link, reconcile

        with link.locked(self.dir):
            link.remove(self.dir)
            self._load()
            reconcile.mark_unlinked(self.outbox)
        # Writes already acknowledged while linked keep draining to the last target.
        _logger.info("unlinked from Azure ML")
        return self.status()

    def reset(self) -> None:
        """After the store was emptied in place: nothing recorded or mapped names anything now.
        While linked, every run from here on (the store starts at row 0) is mirrored."""
        self.outbox.reset(0 if self.linked else None)

    def status(self) -> dict:
        from emulator.services.mirror import link

        info = link.public(self._load())
        info.update(self.outbox.summary())
        info["relay_alive"] = self.relay.is_alive()
        return info


def install(app: Flask, config: ServerConfig) -> Mirror:
    from emulator.pipeline import reset as workspace_reset
    from emulator.services.mirror import admin, reconcile, recorder

    def tracking_store():
        from mlflow.server.handlers import _get_tracking_store

        return _get_tracking_store()

    mirror = Mirror(config, tracking_store)
    if mirror.linked:
        # Before the server listens and the relay runs: nothing writes while the store and the
        # outbox are compared (writes acknowledged just before a kill -9 may have no event).
        try:
            # fidelity: Crash consistency, linking, readiness and ownership (hardening C)
            reconcile.run(mirror.outbox, tracking_store())
        except Exception:  # never keep the workspace from starting; the next start tries again
            _logger.exception("mirror: could not reconcile the outbox with the store")
    else:  # unlinked (perhaps by `emulator unlink` while down): runs created now are not mirrored
        reconcile.mark_unlinked(mirror.outbox)
    recorder.install(app, mirror)
    admin.install(app, mirror)
    workspace_reset.on_reset(app, mirror.reset)
    mirror.relay.start()
    app.config["EMULATOR_MIRROR"] = mirror
    return mirror
