"""A pytest plugin running MLflow's own ``tests/tracking/test_model_registry.py`` unmodified, against
a stock MLflow server or against the emulated Azure ML workspace (issue 30 item 5).

The file (from the mlflow repository at the installed version's tag; not shipped here) imports two
helpers from MLflow's test tree, ``tests.helper_functions.get_safe_port`` and
``tests.tracking.integration_test_utils.ServerThread``; this plugin provides them:

* stock (``EMULATOR_SUITE_TRACKING_URI`` unset): ``ServerThread`` serves the in-process MLflow app
  the file's fixture prepared, with uvicorn on loopback, as MLflow's own helper does;
* Azure ML (``EMULATOR_SUITE_TRACKING_URI`` = the workspace's http tracking URI, with
  ``MLFLOW_TRACKING_TOKEN``): ``ServerThread`` empties the workspace's registry (each test starts from
  an empty one, as with a fresh stock server) and yields the workspace's URI; the fixture's local
  store set-up is skipped.

Load it with ``-p tests.support.mlflow_registry_suite`` (project root on ``sys.path``).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import types

URI_ENV = "EMULATOR_SUITE_TRACKING_URI"


def get_safe_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _empty_registry(uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    while True:
        models = client.search_registered_models(max_results=1000)
        if not models:
            return
        for model in models:
            client.delete_registered_model(model.name)


class ServerThread:
    """MLflow's test helper's interface: ``with ServerThread(app, port) as url``."""

    def __init__(self, app, port: int):
        self.app, self.port = app, port
        self.target = os.environ.get(URI_ENV)
        self._server = self._thread = None

    def __enter__(self) -> str:
        if self.target:
            _empty_registry(self.target)
            return self.target
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 120
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the stock MLflow server did not start on port {self.port}")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=60)


def _install_shims() -> None:
    helper = types.ModuleType("tests.helper_functions")
    helper.get_safe_port = get_safe_port
    tracking = types.ModuleType("tests.tracking")
    tracking.__path__ = []
    utils = types.ModuleType("tests.tracking.integration_test_utils")
    utils.ServerThread = ServerThread
    tracking.integration_test_utils = utils
    if "tests" not in sys.modules:
        pkg = types.ModuleType("tests")
        pkg.__path__ = []
        sys.modules["tests"] = pkg
    sys.modules["tests.helper_functions"] = helper
    sys.modules["tests.tracking"] = tracking
    sys.modules["tests.tracking.integration_test_utils"] = utils
    if os.environ.get(URI_ENV):
        # The workspace is the server: the fixture's local stores are not used, so not built.
        from mlflow.server import handlers

        handlers.initialize_backend_stores = lambda *args, **kwargs: None


_install_shims()
