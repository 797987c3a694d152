"""Azure ML's blob plane: the shared :mod:`emulator.services.blob.service` over ``<state>/azureml/artifacts``,
container ``azureml``, on the workspace's storage account (``hosts``); and the default datastore's
container ``azureml-blobstore-<workspace id>`` over its folder in the same root (datastores.py)."""

from __future__ import annotations

from pathlib import Path

from emulator.services.azureml import datastores, hosts
from emulator.services.blob.service import CONTAINER
from emulator.services.blob.service import BlobService as _BlobService
from emulator.settings import ServerConfig

__all__ = ["CONTAINER", "BlobService"]


def BlobService(wsgi_app, config: ServerConfig) -> _BlobService:  # noqa: N802 (was the class)
    state = Path(config.state_dir)
    return _BlobService(wsgi_app, token=config.token, account=hosts.storage_account(config),
                        host=hosts.blob_host(config), root=state / "artifacts",
                        staging=state / "blob-staging", container=CONTAINER,
                        containers={datastores.container_name(config): datastores.root(config)})
