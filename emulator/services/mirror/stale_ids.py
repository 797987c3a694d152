"""Id mappings that name what the Azure ML workspace no longer holds: found, forgotten, rebuilt.

The outbox maps Databricks ids to Azure ML ids per target. A mapping outlives what it names when
the Azure ML workspace loses it behind the mirror's back: its state was reset alone (its own
``POST /__emulator/reset``), or the state dir was written by an emulator from before Azure ML's
experiment ids were GUIDs (the map still says ``1``). Every write that uses such a mapping is then
answered RESOURCE_DOES_NOT_EXIST; retried (``runs/search`` does not name the id it was sent in
``experiment_ids``) the whole backlog would stall behind it for good, and set aside it would lose
the run's data.

So when Azure ML answers RESOURCE_DOES_NOT_EXIST, the relay asks ``forget`` to check the event's
mappings against Azure ML. A mapping whose entity is gone is forgotten, and the retried write
finds or creates it again the way a first delivery does (experiments by name, runs and logged
models by their source tag). A run that had to be created again in Azure ML gets everything
Databricks holds for it queued again (params, tags, metric history, status, artifact files), since
its earlier copy went with the old one. Not rebuilt: a logged model's earlier files.
"""

from __future__ import annotations

import logging

from emulator.services.mirror import reconcile
from emulator.services.mirror.aml_client import AzureMLError

_logger = logging.getLogger(__name__)

NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
# A run Azure ML never heard of, in the ledger's shape: everything the store holds is missing.
NOTHING_RECORDED = {"info": None, "params": set(), "tags": {}, "metrics": {}}


def is_not_found(exc: AzureMLError) -> bool:
    return exc.error_code == NOT_FOUND


def forget(ctx, event: dict) -> bool:
    """Forget the event's run and experiment mappings whose Azure ML entity is gone; True if any was.
    Raises AzureMLError if Azure ML cannot say (down, a fault): the event is then retried as is."""
    forgot = False
    owner = event.get("run_id")
    is_model = event["kind"].startswith("model_")
    mapped = ctx.outbox.run_map(owner, ctx.target) if owner else None
    # The run first: forgetting a gone experiment forgets its runs' mappings too, and a run that is
    # gone with it must be known as gone to have its content sent again.
    if mapped and not is_model and _gone(ctx, "runs/get", {"run_id": mapped["azureml_run_id"]}):
        _logger.warning("mirror: Azure ML no longer holds run %s (the mirror of %s): creating it again",
                        mapped["azureml_run_id"], owner)
        ctx.outbox.forget_run_map(owner, ctx.target)
        _requeue_run(ctx, owner)
        forgot = True
    db_exp = (event.get("payload") or {}).get("experiment_id") or (owner and ctx.outbox.experiment_of(owner))
    aml_exp = ctx.outbox.experiment_map(str(db_exp), ctx.target) if db_exp else None
    if aml_exp is not None and _gone(ctx, "experiments/get", {"experiment_id": aml_exp}):
        _logger.warning("mirror: Azure ML no longer holds experiment %s (the mirror of %s): finding it "
                        "again by name", aml_exp, db_exp)
        ctx.outbox.forget_experiment_map(aml_exp, ctx.target)
        forgot = True
    return forgot


def _gone(ctx, endpoint: str, params: dict) -> bool:
    try:
        ctx.client.call("GET", endpoint, params=params)
    except AzureMLError as exc:
        if is_not_found(exc):
            return True
        raise
    return False


def _requeue_run(ctx, run_id: str) -> None:
    """Queue all the Databricks store holds for the run, as the start-up reconciliation queues what
    it finds missing, plus its artifact files."""
    store = ctx.relay.tracking_store()
    found = reconcile.store_states(store, [run_id]).get(run_id)
    if found is None or found["deleted"]:
        return
    events = reconcile.missing(store, run_id, found, NOTHING_RECORDED)
    exp = ctx.outbox.experiment_of(run_id)
    events += [("artifact", {"experiment_id": exp, "path": path}) for path in _artifact_files(ctx, exp, run_id)]
    ctx.outbox.requeue(run_id, events, found["state"])


def _artifact_files(ctx, exp: str | None, run_id: str) -> list[str]:
    from emulator.stores.safe_paths import Storage

    if exp is None:
        return []
    root = Storage(ctx.relay.artifacts_root).resolve([exp, run_id, "artifacts"], run_id)
    return list(_files(root, "")) if root.is_dir() else []


def _files(folder, prefix: str):
    """Relative paths of the files below ``folder``, as the Files API lists them (Storage.list_dir:
    no symbolic links, no in-flight ``.upload-*`` files, which are recorded when they land)."""
    from emulator.stores.safe_paths import Storage

    for entry in Storage.list_dir(folder):
        if entry.is_dir:
            yield from _files(folder / entry.name, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}"
