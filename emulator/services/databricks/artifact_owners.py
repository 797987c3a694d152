"""Which experiment, run or logged model an MLflow artifact path belongs to, and whether it exists.

The Files API path ``/WorkspaceInternal/Mlflow/Artifacts/<exp>/Runs/<run>/...`` and the DBFS path
``dbfs:/databricks/mlflow-tracking/<exp>/<run>/...`` name an experiment and a run (or a logged
model): both must exist in this workspace and belong together (the run's experiment is the path's),
else the answer is 404 ``RESOURCE_DOES_NOT_EXIST`` and nothing is read or written. Look-ups go to
the tracking store; positive answers are cached (runs and models don't move between experiments),
so a stream of artifact PUTs to one run costs one look-up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from emulator.errors import EmulatorError

LOGGED_MODELS = "logged_models"  # <exp>/logged_models/<id>/... in the artifact root
TRACES = "traces"  # <exp>/traces/<trace id>/artifacts: MLflow 3 trace data (get-trace-artifact)
_CACHE_SIZE = 10_000


def _missing(message: str) -> EmulatorError:
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", message, 404)


class ArtifactOwners:
    def __init__(self):
        self._known: OrderedDict[tuple, None] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, key: tuple) -> bool:
        with self._lock:
            if key in self._known:
                self._known.move_to_end(key)
                return True
        return False

    def forget_all(self) -> None:
        """After a reset ids are reused (experiments start at 1 again): nothing cached still holds."""
        with self._lock:
            self._known.clear()

    def _remember(self, key: tuple) -> None:
        with self._lock:
            self._known[key] = None
            while len(self._known) > _CACHE_SIZE:
                self._known.popitem(last=False)

    @staticmethod
    def _store():
        from mlflow.server.handlers import _get_tracking_store

        return _get_tracking_store()

    def experiment(self, experiment_id: str, shown: str) -> None:
        key = ("experiment", experiment_id)
        if self._cached(key):
            return
        from mlflow.exceptions import MlflowException

        try:
            self._store().get_experiment(experiment_id)
        except (MlflowException, ValueError):
            raise _missing(f"No experiment with id {experiment_id} in this workspace: {shown}") from None
        self._remember(key)

    def _belongs(self, kind: str, experiment_id: str, ident: str, shown: str, experiment_of) -> None:
        """``experiment_of(store, ident)`` names the experiment ``ident`` is in; it must be ``experiment_id``."""
        key = (kind, experiment_id, ident)
        if self._cached(key):
            return
        from mlflow.exceptions import MlflowException

        try:
            found = experiment_of(self._store(), ident)
        except (MlflowException, ValueError):
            found = None
        if found != experiment_id:
            raise _missing(f"No {kind} {ident} in experiment {experiment_id} in this workspace: {shown}")
        self._remember(key)

    def run(self, experiment_id: str, run_id: str, shown: str) -> None:
        self._belongs("run", experiment_id, run_id, shown, lambda store, i: store.get_run(i).info.experiment_id)

    def logged_model(self, experiment_id: str, model_id: str, shown: str) -> None:
        self._belongs("logged model", experiment_id, model_id, shown,
                      lambda store, i: store.get_logged_model(i).experiment_id)

    def trace(self, experiment_id: str, trace_id: str, shown: str) -> None:
        self._belongs("trace", experiment_id, trace_id, shown, lambda store, i: store.get_trace_info(i).experiment_id)

    def check_root_path(self, segments: list[str], shown: str) -> None:
        """For segments relative to the artifact root (``<exp>/<run>/...``, ``<exp>/logged_models/<id>/...``):
        the experiment, run or model they name must exist and belong together. The root itself is fine."""
        if not segments:
            return
        exp = segments[0]
        if len(segments) == 1 or (len(segments) == 2 and segments[1] in (LOGGED_MODELS, TRACES)):
            self.experiment(exp, shown)
        elif segments[1] == LOGGED_MODELS:
            self.logged_model(exp, segments[2], shown)
        elif segments[1] == TRACES:
            self.trace(exp, segments[2], shown)
        else:
            self.run(exp, segments[1], shown)
