"""Azure ML experiment ids: GUIDs outside, the SQL store's integers inside.

Azure ML names an MLflow experiment by a GUID (its run-history experiment id); MLflow's SQL store,
which the emulated workspace runs on, numbers experiments 0, 1, 2 ... A stale small integer (an
id taken from a local store before ``set_tracking_uri``) must not land in whichever experiment
of the workspace happens to have that number.

The GUID is derived, not stored (so it holds on SQLite and PostgreSQL alike, with no table of our
own): its first 10 bytes are a keyed hash of (store id, creation time), its last 6 the store id
masked by a hash of those 10. Reading a GUID back unmasks the candidate store id, then checks the
hash against that experiment's creation time: a GUID of another workspace, of an experiment that
a reset replaced, or made up, names nothing. The key is the workspace's ARM id.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable

from emulator.services.azureml import run_guids

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)
_MAX_ID = 2**31  # SQL integer ids; a made-up GUID unmasks to far more

# creation time (ms) of the store's experiment with this id, or None when it has none
CreationTime = Callable[[int], "int | None"]


def _hash(key: bytes, data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, key=key[:64], digest_size=size).digest()


class ExperimentGuids:
    def __init__(self, workspace_key: str, creation_time: CreationTime):
        self._key = hashlib.sha256(workspace_key.lower().encode()).digest()
        self._creation_time = creation_time

    def _guid(self, store_id: int, created: int) -> str:
        head = _hash(self._key, f"{store_id}:{created}".encode(), 10) + bytes(6)
        head = uuid.UUID(bytes=head, version=4).bytes[:10]  # version/variant bits are in the head
        mask = int.from_bytes(_hash(self._key, head, 6), "big")
        return str(uuid.UUID(bytes=head + (store_id ^ mask).to_bytes(6, "big")))

    def external(self, store_id: str) -> str | None:
        """The GUID of the store's experiment ``store_id``; None if the store has no such experiment."""
        if not str(store_id).isdigit() or int(store_id) >= _MAX_ID:
            return None
        created = self._creation_time(int(store_id))
        return None if created is None else self._guid(int(store_id), created)

    def internal(self, guid: str) -> str | None:
        """The store id the GUID names; None when it names no experiment of this workspace."""
        if not isinstance(guid, str) or not GUID.match(guid):
            return None
        raw = uuid.UUID(guid).bytes
        store_id = int.from_bytes(raw[10:], "big") ^ int.from_bytes(_hash(self._key, raw[:10], 6), "big")
        created = self._creation_time(store_id) if store_id < _MAX_ID else None
        if created is None or self._guid(store_id, created) != guid.lower():
            return None
        return str(store_id)


def from_store(workspace_key: str, store) -> ExperimentGuids:
    """The codec for one request over MLflow's tracking store (look-ups memoised)."""
    from mlflow.exceptions import MlflowException

    seen: dict[int, int | None] = {}

    def creation_time(store_id: int) -> int | None:
        if store_id not in seen:
            try:
                seen[store_id] = store.get_experiment(str(store_id)).creation_time
            except MlflowException:
                seen[store_id] = None
        return seen[store_id]

    return ExperimentGuids(workspace_key, creation_time)


class Owners:
    """What the plugin's ``azureml://experiments/<name>/runs/<id>/artifacts`` URIs need: an
    experiment's name from its GUID, and the GUID of a run's (or logged model's) experiment."""

    def __init__(self, workspace_key: str, store):
        self.store = store
        self.guids = from_store(workspace_key, store)

    def name_of(self, guid: str) -> str | None:
        from mlflow.exceptions import MlflowException

        found = self.guids.internal(guid)
        try:
            return None if found is None else self.store.get_experiment(found).name
        except MlflowException:
            return None

    def guid_of(self, owner_id: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            if owner_id.startswith("m-"):
                return self.guids.external(self.store.get_logged_model(owner_id).experiment_id)
            return self.guids.external(self.store.get_run(run_guids.internal(owner_id)).info.experiment_id)
        except MlflowException:
            return None
