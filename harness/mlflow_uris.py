"""Set MLflow's process-wide tracking/registry URIs for a block, then put back exactly what was there.

`mlflow.set_tracking_uri(x)` / `set_registry_uri(x)` also export MLFLOW_TRACKING_URI /
MLFLOW_REGISTRY_URI for subprocesses, and `set_registry_uri(None)` leaves that variable behind, so
"restore the previous value" through the public API pins resolved values or leaks "databricks" into
every later test and subprocess of a user's suite. We save and restore both the module globals and
the variables. The active experiment goes with them: its id names an experiment of one tracking
server (`set_experiment` keeps it in a global and exports MLFLOW_EXPERIMENT_ID), and left behind it
sends the next test's runs to an id the next server does not hold ("No Experiment with id=7 exists").
"""
from __future__ import annotations

import os
from contextlib import contextmanager

ENV_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def _modules():
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils, registry_utils


def snapshot() -> tuple:
    from mlflow.tracking import fluent

    tracking_utils, registry_utils = _modules()
    return (getattr(tracking_utils, "_tracking_uri", None), getattr(registry_utils, "_registry_uri", None),
            {k: os.environ.get(k) for k in ENV_KEYS}, getattr(fluent, "_active_experiment_id", None))


def restore(saved: tuple) -> None:
    import mlflow

    from mlflow.tracking import fluent

    tracking, registry, env, experiment_id = saved
    tracking_utils, registry_utils = _modules()
    mlflow.set_tracking_uri(tracking)  # also resets the tracer provider when it changes
    registry_utils._registry_uri = registry  # set_registry_uri(None) would not unset anything
    fluent._active_experiment_id = experiment_id
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def using(tracking_uri: str | None = None, registry_uri: str | None = None):
    """Within the block MLflow tracks to `tracking_uri` and registers in `registry_uri` (each only
    when given); afterwards both are exactly as before, globals and exported variables alike."""
    import mlflow

    saved = snapshot()
    try:
        if tracking_uri is not None:
            mlflow.set_tracking_uri(tracking_uri)
        if registry_uri is not None:
            mlflow.set_registry_uri(registry_uri)
        yield
    finally:
        restore(saved)
