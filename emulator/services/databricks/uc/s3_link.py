"""The workspace's side of the S3 gate: the credential key, and the admin calls (seal, reset)."""

from __future__ import annotations

import logging
import threading

import requests

from emulator.errors import EmulatorError
from emulator.services.s3.credentials import admin_token, master_key

_logger = logging.getLogger(__name__)


class S3Link:
    def __init__(self, url: str, workspace_token: str):
        self.url = url  # from the server's configuration (ServerConfig.s3_url)
        self.master = master_key(workspace_token)
        # A kept connection per worker thread: every reset (before each test of the pytest
        # plugin's) calls the store, and a new session and connection each time was most of it.
        self._local = threading.local()

    def _session(self) -> requests.Session:
        http = getattr(self._local, "session", None)
        if http is None:
            http = self._local.session = requests.Session()
            http.trust_env = False  # the store is on loopback (or the Compose network): no proxy
        return http

    def _post(self, path: str, body: dict) -> None:
        url = self.url
        try:
            resp = self._session().post(f"{url}{path}", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {admin_token(self.master)}"})
        except requests.RequestException as exc:
            raise EmulatorError("TEMPORARILY_UNAVAILABLE", f"The model storage (S3 at {url}) is not reachable: {exc}. "
                                "Start it with `emulator up`.", 503) from None
        if resp.status_code != 200:
            raise EmulatorError("TEMPORARILY_UNAVAILABLE", f"The model storage (S3 at {url}) answered "
                                f"{resp.status_code}: {resp.text[:200]}", 503)

    def seal(self, prefix: str) -> None:
        self._post("/__emulator/s3/seal", {"prefix": prefix})

    def reset(self) -> None:
        try:
            self._post("/__emulator/s3/reset", {})
        except EmulatorError:
            _logger.warning("reset: the S3 store was not reachable; its objects were kept")
