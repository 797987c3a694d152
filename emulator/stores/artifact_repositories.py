"""Artifact repositories inside a workspace server process: its own disk, never a remote store.

MLflow's server-side artifact routes (``ajax-api/.../upload-artifact``, ``get-trace-artifact``,
the GraphQL artifact listing, ...) build repositories from the URIs clients stored. For ``dbfs:/``
MLflow's own repository talks to a Databricks workspace with the SDK's default credentials: from
a user's shell that is their REAL workspace and token. In the server process this registry maps
instead:

* ``dbfs:/...`` -> the workspace's own files, through the storage path guard (Databricks role);
  the Azure ML role has no DBFS and refuses such locations with a 400;
* cloud and host-addressed schemes (s3, gs, wasbs, abfss, http(s), ftp, ...) -> a 400: the
  emulator never connects out, whatever a client stored as an artifact location.

Registered with ``_artifact_repository_registry.register`` in the server process only: an
``mlflow.artifact_repository`` entry point would also replace the CLIENTS' DBFS repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

REMOTE_SCHEMES = ("s3", "r2", "b2", "gs", "wasbs", "abfss", "ftp", "sftp", "hdfs", "viewfs", "http", "https")


def _refusal(why: str):
    def refuse(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        from mlflow.exceptions import MlflowException

        raise MlflowException.invalid_parameter_value(
            f"The emulator does not read or write artifacts at {artifact_uri!r}: {why}")

    return refuse


def workspace_dbfs(locate: Callable[[str], Path]):
    """A repository factory for ``dbfs:/`` URIs backed by the workspace's local folders."""

    def repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        from emulator.errors import EmulatorError

        try:
            local = locate(artifact_uri)  # 400 for '..', symlinks and anything outside the roots
        except EmulatorError as exc:
            raise MlflowException.invalid_parameter_value(exc.message) from None
        return LocalArtifactRepository(local.as_uri(), tracking_uri, registry_uri)

    return repository


def install(locate_dbfs: Callable[[str], Path] | None) -> None:
    # fidelity: Security promises — dbfs:/ is the workspace's own storage; no remote stores
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry as registry,
    )

    for scheme in REMOTE_SCHEMES:
        registry.register(scheme, _refusal("it is remote storage, and the emulator makes no outbound calls"))
    if locate_dbfs is None:
        registry.register("dbfs", _refusal("dbfs:/ locations belong to a Databricks workspace"))
    else:
        registry.register("dbfs", workspace_dbfs(locate_dbfs))
