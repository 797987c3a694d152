"""Run a user's command with a given client stack (a cached venv, harness.client_venvs) against
the running workspaces: what `harness run --mlflow 2.9.2 -- python repro.py` does.

A bug report names the client it was seen with; the project's own MLflow is usually newer. The
pins start from the version matrix's (so `--mlflow 2.9.2` reuses the matrix's venv, numpy and
scikit-learn the old MLflow can load included), then each named package replaces its pin.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from harness import client_venvs

# The client's own telemetry must not leave the machine (as in tests/support/client_matrix.py).
QUIET = {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
AZUREML_TRACKING_URI_ENV = "EMULATOR_AZUREML_TRACKING_URI"


class PinError(ValueError):
    """A --with that is not a requirement, or no pin at all."""


@dataclass(frozen=True)
class ClientStack:
    name: str  # the venv's name (its directory adds a hash of the pins)
    pins: tuple[str, ...]

    @property
    def root(self) -> Path:
        return client_venvs.venv_dir(self.name, self.pins)

    @property
    def cached(self) -> bool:
        return client_venvs.built(self.root)


def _package(pin: str) -> str:
    try:
        return canonicalize_name(Requirement(pin).name)
    except InvalidRequirement as exc:
        raise PinError(f"not a requirement: {pin!r} (e.g. scikit-learn==1.5.2)") from exc


def stack(mlflow: str | None = None, azureml_mlflow: str | None = None, databricks_sdk: str | None = None,
          extra: tuple[str, ...] = ()) -> ClientStack:
    """The pins for these versions: the matrix's for a known MLflow, each named package replacing its pin."""
    base = client_venvs.MATRIX.get(mlflow, (f"mlflow=={mlflow}",)) if mlflow else ()
    named = [f"azureml-mlflow=={azureml_mlflow}" if azureml_mlflow else None,
             f"databricks-sdk=={databricks_sdk}" if databricks_sdk else None, *extra]
    pins = {_package(p): p for p in base}
    for pin in filter(None, named):
        pins[_package(pin)] = pin
    if not pins:
        raise PinError("name a client: --mlflow, --azureml-mlflow, --databricks-sdk or --with PKG==VER")
    return ClientStack(f"mlflow-{mlflow}" if mlflow else "client", tuple(pins.values()))


def environment(info: dict, venv: Path) -> dict[str, str]:
    """The caller's environment, the venv's bin first on PATH, and what a client of the running
    workspaces reads (`emulator status --json`): Databricks host and token, the S3 endpoint of
    Unity Catalog model files, Azure ML's MLflow token, its tracking URI and what azureml-core /
    azure-ai-ml need to reach the emulated ARM (CA bundle, managed identity, cloud metadata)."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    db, aml = info["databricks"], info["azureml"]
    env.update(db["client_env"])
    env.update(aml.get("client_env", {}))
    env.update({"MLFLOW_TRACKING_TOKEN": aml["token"], "AZUREML_EMULATOR_URL": aml["url"],
                AZUREML_TRACKING_URI_ENV: aml["tracking_uri"], **QUIET})
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)])
    return env
