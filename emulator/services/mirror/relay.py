"""Delivers outbox events to the linked Azure ML workspace, in order, with retries.

One background thread in the Databricks server process. Consecutive param/metric/tag writes of
one run go out as a single ``log-batch`` (within MLflow's batch limits), so a backlog of
thousands of points catches up in a few calls. An event is deleted from the outbox only after
Azure ML accepted it; a crash in between means it is sent again, which is harmless:

* experiments are found by name and runs by their ``emulator.source_run_id`` tag before
  anything is created, and the id mapping is stored durably;
* params and tags are re-set to the same value; artifacts are overwritten with the same bytes;
* Azure ML's SQL store keeps one row per (key, value, step, timestamp) metric point and drops
  exact duplicates, so a re-sent batch adds no point.

Azure ML down, refusing the token, answering a 4xx that names nothing that was sent (a fault, a
proxy's page) or a malformed 200: retried with exponential backoff, shown as the last error
(``aml_client.AzureMLError.transient``). Azure ML refusing one write for good (a 4xx naming its
run, key, ...): that event is set aside as a dead letter (counted in the status) so the rest of
the backlog is not blocked behind it. A refused
``log-batch`` is split until the refused items are found: the valid points are delivered and the
dead letter names only the refused ones. Azure ML answering RESOURCE_DOES_NOT_EXIST can mean an id
mapping names what it no longer holds: ``stale_ids`` checks and forgets it, and the write is tried again.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from emulator.services.mirror import stale_ids, traces
from emulator.services.mirror.aml_client import AzureMLClient, AzureMLError
from emulator.services.mirror.logged_models import ModelMirror
from emulator.services.mirror.outbox import Outbox, Skip

_logger = logging.getLogger(__name__)

SOURCE_RUN_TAG = "emulator.source_run_id"
SOURCE_WORKSPACE_TAG = "emulator.source_workspace"
BACKOFF_MIN, BACKOFF_MAX = 0.25, 2.0
IDLE_WAIT = 1.0
# A short backlog waits this long for the writes that follow it, so that a client logging point by
# point costs Azure ML one log-batch per few points instead of one per point (both workspaces share
# the machine's cores): a bounded lag traded for CPU. See bench/README.md.
GATHER_S = float(os.environ.get("EMULATOR_MIRROR_GATHER_S", "0.05"))
GATHER_BELOW = 50
MAX_ATTEMPTS_ON_BUG = 5
# MLflow's log-batch limits.
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000


class Relay(threading.Thread):
    def __init__(self, outbox: Outbox, artifacts_root: Path, source_url: str, tracking_store):
        super().__init__(name="emulator-mirror-relay", daemon=True)
        self.outbox = outbox
        self.artifacts_root = Path(artifacts_root)
        self.source_url = source_url
        self.tracking_store = tracking_store  # callable -> the Databricks MLflow store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._clients: dict[str, AzureMLClient] = {}
        self._erroring = bool(outbox.get_meta("last_error"))

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        backoff = BACKOFF_MIN
        while not self._stop.is_set():
            try:  # nothing may end this thread: a dead relay would silently stop the mirror
                target = self.outbox.get_meta("target")
                events = self.outbox.pending() if target else []
                if not events:
                    self._wake.wait(IDLE_WAIT)
                    self._wake.clear()
                    continue
                if len(events) < GATHER_BELOW and GATHER_S > 0:  # fidelity: Store and mirror speed (issue 16)
                    self._stop.wait(GATHER_S)
                    events = self.outbox.pending()
                self.deliver(events, self._client(target), target["url"])
                backoff = BACKOFF_MIN
                if self._erroring:
                    self.outbox.note_error(None)
                    self._erroring = False
            except Exception as exc:  # AzureMLError (transient) or a bug: keep the events, retry later
                message = str(exc) if isinstance(exc, AzureMLError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, AzureMLError):
                    _logger.exception("mirror relay: unexpected error")
                try:
                    self.outbox.note_error(message)
                except Exception:
                    _logger.exception("mirror relay: cannot record the error")
                self._erroring = True
                # Not woken by new events: an outage must not turn every write into a retry.
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _client(self, target: dict) -> AzureMLClient:
        key = f"{target['url']}|{target['token']}"
        if key not in self._clients:
            self._clients = {key: AzureMLClient(target["url"], target["token"])}
        return self._clients[key]

    def deliver(self, events: list[dict], client: AzureMLClient, target: str) -> None:
        """Deliver a prefix of the backlog in order; raises on the first transient failure."""
        ctx = _Context(self, client, target)
        i = 0
        while i < len(events) and not self._stop.is_set():
            group = _data_group(events, i) if events[i]["kind"] == "data" else [events[i]]
            self._deliver_group(ctx, group)
            i += len(group)

    def _deliver_group(self, ctx: _Context, group: list[dict], retried: bool = False) -> None:
        try:
            if group[0]["kind"] == "data":
                ctx.log_batch(group)
            else:
                ctx.apply(group[0])
        except Skip as why:
            _logger.info("mirror: nothing to deliver for event %s: %s", group[0]["seq"], why)
        except AzureMLError as exc:
            # A mapping may name what Azure ML no longer holds: forgotten, the write is tried again once.
            # fidelity: Mirror: ids Azure ML no longer holds
            if not retried and stale_ids.is_not_found(exc) and stale_ids.forget(ctx, group[0]):
                self._deliver_group(ctx, group, retried=True)
                return
            if exc.transient:
                raise
            self._set_aside(ctx, group, str(exc))
            return
        except Exception as exc:  # a bug or bad data: retried a few times, then set aside
            if self.outbox.count_attempt(group[0]["seq"]) < MAX_ATTEMPTS_ON_BUG:
                raise
            _logger.exception("mirror: giving up on event %s", group[0]["seq"])
            self._set_aside(ctx, group, f"{type(exc).__name__}: {exc}")
            return
        self.outbox.delivered([e["seq"] for e in group])

    def _set_aside(self, ctx: _Context, group: list[dict], error: str) -> None:
        if len(group) > 1:  # find the one write that fails; deliver the others
            for event in group:
                self._deliver_group(ctx, [event])
            return
        # fidelity: Mirror: refused batch items
        if group[0]["kind"] == "data" and len(_items(group[0]["payload"])) > 1:
            # One log-batch refused as a whole: never lose its valid points because of one bad item.
            error = _deliver_valid_items(ctx, group[0], error)
        _logger.warning("mirror: event %s set aside: %s", group[0]["seq"], error)
        self.outbox.dead_letter(group[0]["seq"], error)
        self._erroring = True  # cleared by the next successful delivery; the dead letter stays listed


_ITEM_FIELDS = ("metrics", "params", "tags")


def _items(payload: dict) -> list[tuple[str, dict]]:
    return [(field, item) for field in _ITEM_FIELDS for item in payload.get(field) or []]


def _deliver_valid_items(ctx: _Context, event: dict, error: str) -> str:
    """Azure ML refused the event's batch: deliver its items in halves until the refused ones are
    isolated. Returns the dead letter's error, naming only those; a transient failure raises (the
    event stays pending and is re-sent whole, which is idempotent)."""
    refused: list[tuple[str, dict, str]] = []
    pending = [(_items(event["payload"]), error)]
    while pending:
        items, why = pending.pop()
        if len(items) == 1:
            refused.append((*items[0], why))
            continue
        for half in (items[: len(items) // 2], items[len(items) // 2:]):
            payload: dict = {field: [] for field in _ITEM_FIELDS}
            for field, item in half:
                payload[field].append(item)
            try:
                ctx.log_batch([{**event, "payload": payload}])
            except AzureMLError as exc:
                if exc.transient:
                    raise
                pending.append((half, str(exc)))
    total = len(_items(event["payload"]))
    shown = "; ".join(f"{field[:-1]} {item.get('key')!r}: {why}" for field, item, why in refused[:5])
    return (f"{len(refused)} of {total} items refused, the other {total - len(refused)} delivered: {shown}"
            + (" ..." if len(refused) > 5 else ""))


def _data_group(events: list[dict], start: int) -> list[dict]:
    """Consecutive param/metric/tag events of one run that fit in one log-batch."""
    group, n_m, n_p, n_t = [], 0, 0, 0
    run_id = events[start]["run_id"]
    for event in events[start:]:
        if event["kind"] != "data" or event["run_id"] != run_id:
            break
        p = event["payload"]
        m, pa, t = len(p.get("metrics", [])), len(p.get("params", [])), len(p.get("tags", []))
        if group and (n_m + m > MAX_METRICS or n_p + pa > MAX_PARAMS or n_t + t > MAX_TAGS
                      or n_m + m + n_p + pa + n_t + t > MAX_ENTITIES):
            break
        group.append(event)
        n_m, n_p, n_t = n_m + m, n_p + pa, n_t + t
    return group


class _Context:
    """One delivery pass against one target: id mapping and the per-kind translations."""

    def __init__(self, relay: Relay, client: AzureMLClient, target: str):
        self.relay = relay
        self.outbox = relay.outbox
        self.client = client
        self.target = target
        self.models = ModelMirror(self)

    # -- ids ---------------------------------------------------------------------------------
    def experiment(self, db_exp_id: str) -> str:
        """The Azure ML experiment of the same name, created (with the tags) if missing."""
        mapped = self.outbox.experiment_map(db_exp_id, self.target)
        if mapped:
            return mapped
        try:
            exp = self.relay.tracking_store().get_experiment(db_exp_id)
        except Exception as exc:
            raise Skip(f"Databricks experiment {db_exp_id} is gone: {exc}") from None
        tags = [{"key": k, "value": v} for k, v in exp.tags.items()]
        try:
            found = self.client.call("GET", "experiments/get-by-name", params={"experiment_name": exp.name})
            aml_id = found["experiment"]["experiment_id"]
            if found["experiment"].get("lifecycle_stage") == "deleted" and exp.lifecycle_stage != "deleted":
                self.client.call("POST", "experiments/restore", {"experiment_id": aml_id})
            for tag in tags:
                self.client.call("POST", "experiments/set-experiment-tag", {"experiment_id": aml_id, **tag})
        except AzureMLError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            aml_id = self.client.call("POST", "experiments/create", {"name": exp.name, "tags": tags})["experiment_id"]
        self.outbox.set_experiment_map(db_exp_id, self.target, aml_id)
        return aml_id

    def run(self, db_run_id: str, captured: dict | None = None) -> dict:
        """The mirrored Azure ML run: found by its source tag, else created like the source run."""
        mapped = self.outbox.run_map(db_run_id, self.target)
        if mapped:
            return mapped
        if captured is None:
            captured = self._source_run(db_run_id)
        info = captured["info"]
        tags = {t["key"]: t["value"] for t in (captured.get("data") or {}).get("tags", [])}
        aml_exp = self.experiment(info["experiment_id"])
        found = self.client.call("POST", "runs/search", {
            "experiment_ids": [aml_exp],
            "filter": f"tags.`{SOURCE_RUN_TAG}` = '{db_run_id}'",
            "run_view_type": "ALL",
            "max_results": 1,
        }).get("runs")
        if found:
            aml_info = found[0]["info"]
        else:
            tags.update({SOURCE_RUN_TAG: db_run_id, SOURCE_WORKSPACE_TAG: self.relay.source_url})
            body = {
                "experiment_id": aml_exp,
                "user_id": info.get("user_id"),
                "start_time": info.get("start_time"),
                "run_name": info.get("run_name"),
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            }
            aml_info = self.client.call("POST", "runs/create", body)["run"]["info"]
            if info.get("status") not in (None, "RUNNING"):  # created late, from the store
                self.client.call("POST", "runs/update", {
                    "run_id": aml_info["run_id"], "status": info["status"], "end_time": info.get("end_time")})
        self.outbox.set_run_map(db_run_id, self.target, aml_info["run_id"], aml_exp, aml_info.get("artifact_uri"))
        return self.outbox.run_map(db_run_id, self.target)

    def _source_run(self, db_run_id: str) -> dict:
        try:
            run = self.relay.tracking_store().get_run(db_run_id)
        except Exception as exc:
            raise Skip(f"Databricks run {db_run_id} is gone: {exc}") from None
        return {
            "info": {
                "experiment_id": run.info.experiment_id, "user_id": run.info.user_id,
                "start_time": run.info.start_time, "run_name": run.info.run_name,
                "status": run.info.status, "end_time": run.info.end_time,
            },
            "data": {"tags": [{"key": k, "value": v} for k, v in run.data.tags.items()]},
        }

    # -- writes ------------------------------------------------------------------------------
    def log_batch(self, group: list[dict]) -> None:
        aml_run = self.run(group[0]["run_id"])["azureml_run_id"]
        metrics, params, tags = [], {}, {}
        for event in group:
            p = event["payload"]
            metrics.extend(p.get("metrics", []))
            params.update({x["key"]: x for x in p.get("params", [])})
            tags.update({x["key"]: x for x in p.get("tags", [])})  # later value wins, as in Databricks
        self.client.call("POST", "runs/log-batch", {
            "run_id": aml_run, "metrics": self.models.metrics(metrics),
            "params": list(params.values()), "tags": list(tags.values())})

    def apply(self, event: dict) -> None:
        kind, p, run_id = event["kind"], event["payload"], event["run_id"]
        if kind.startswith("model_"):
            self.models.apply(event)
        elif kind == "outputs":
            self.models.outputs(run_id, p["models"])
        elif kind == "run_create":
            self.run(run_id, captured=p["run"])
        elif kind == "run_update":
            self.client.call("POST", "runs/update", {"run_id": self.run(run_id)["azureml_run_id"], **p})
        elif kind in ("run_delete", "run_restore"):
            self._lifecycle("runs", "run_id", self.run(run_id)["azureml_run_id"], kind)
        elif kind == "run_tag_delete":
            self._tolerate_missing("POST", "runs/delete-tag",
                                   {"run_id": self.run(run_id)["azureml_run_id"], "key": p["key"]})
        elif kind == "inputs":
            self.client.call("POST", "runs/log-inputs",
                             {"run_id": self.run(run_id)["azureml_run_id"], "datasets": p["datasets"]})
        elif kind == "artifact":
            self.upload([run_id], p, self.run(run_id)["artifact_uri"])
        elif kind == "experiment":
            self.experiment(p["experiment_id"])
        elif kind == "trace":
            self.trace(p)
        elif kind == "experiment_tag":
            self.client.call("POST", "experiments/set-experiment-tag", {
                "experiment_id": self.experiment(p["experiment_id"]), "key": p["key"], "value": p["value"]})
        else:  # changes that only matter if the experiment is already mirrored
            aml_exp = self.outbox.experiment_map(p["experiment_id"], self.target)
            if aml_exp is None:
                raise Skip("experiment not mirrored (it will be mirrored as it is then)")
            if kind == "experiment_tag_delete":
                self._tolerate_missing("POST", "experiments/delete-experiment-tag",
                                       {"experiment_id": aml_exp, "key": p["key"]})
            elif kind == "experiment_rename":
                self.client.call("POST", "experiments/update", {"experiment_id": aml_exp, "new_name": p["new_name"]})
            elif kind in ("experiment_delete", "experiment_restore"):
                self._lifecycle("experiments", "experiment_id", aml_exp, kind)
            else:
                raise Skip(f"unknown event kind {kind!r}")

    def _lifecycle(self, noun: str, id_field: str, aml_id: str, kind: str) -> None:
        """Delete/restore, idempotently: a redelivery finds it already done."""
        wanted = "deleted" if kind.endswith("delete") else "active"
        if noun == "runs":
            current = self.client.call("GET", "runs/get", params={"run_id": aml_id})["run"]["info"]
        else:
            current = self.client.call("GET", "experiments/get", params={"experiment_id": aml_id})["experiment"]
        if current.get("lifecycle_stage") != wanted:
            self.client.call("POST", f"{noun}/{'delete' if wanted == 'deleted' else 'restore'}", {id_field: aml_id})

    def _tolerate_missing(self, method: str, endpoint: str, body: dict) -> None:
        try:
            self.client.call(method, endpoint, body)
        except AzureMLError as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    def trace(self, p: dict) -> None:
        try:
            otlp = traces.export_request(self.relay.artifacts_root, p["experiment_id"], p["trace_id"])
        except traces.NoSpans as why:
            raise Skip(str(why)) from None
        self.client.export_spans(self.experiment(p["experiment_id"]), otlp)

    def upload(self, owner: list[str], p: dict, artifact_uri: str) -> None:
        """Copy one file from the Databricks artifact root (``<exp>/<owner...>/artifacts/<path>``)."""
        from emulator.stores.safe_paths import Storage, split_segments

        storage = Storage(self.relay.artifacts_root)
        rel = p["path"]
        local = storage.resolve([p["experiment_id"], *owner, "artifacts", *split_segments(rel)], rel)
        if not local.is_file():
            raise Skip(f"artifact {rel} no longer exists in Databricks")
        with open(local, "rb") as fh:
            self.client.put_artifact(artifact_uri, rel, fh)
