"""MLflow 3 logged models (``/api/2.0/mlflow/logged-models``) on the mirror.

A logged model created while linked is created in Azure ML too (same experiment name, name,
type, params, tags, status, files), linked to the mirrored source run, and tagged
``emulator.source_model_id``; ``runs/outputs`` and metric points that name it are mapped to the
mirrored model. Ids are kept in the same tables as runs (logged model ids start with ``m-``,
run ids are hex), so the created-while-linked rule and the id mapping work the same way.
"""

from __future__ import annotations

from urllib.parse import quote

from emulator.services.mirror.aml_client import AzureMLError
from emulator.services.mirror.outbox import Skip

SOURCE_MODEL_TAG = "emulator.source_model_id"
# Tags naming Databricks registry versions: the registry is not dual, so on the mirror they would
# point the Azure ML UI at versions that exist only in Databricks (fidelity: "Linked workspaces").
REGISTRY_TAGS = frozenset({"mlflow.modelVersions"})


def _mirrored_tags(tags: list[dict]) -> list[dict]:
    return [t for t in tags or [] if t.get("key") not in REGISTRY_TAGS | {SOURCE_MODEL_TAG}]


class ModelMirror:
    def __init__(self, ctx):
        self.ctx = ctx
        self.outbox = ctx.outbox
        self.client = ctx.client

    def model(self, db_model_id: str, captured: dict | None = None) -> dict:
        """The mirrored model: found by its source tag, else created like the source model."""
        mapped = self.outbox.run_map(db_model_id, self.ctx.target)
        if mapped:
            return mapped
        if captured is None:
            captured = self._source_model(db_model_id)
        info = captured["info"]
        aml_exp = self.ctx.experiment(info["experiment_id"])
        found = self.client.call("POST", "logged-models/search", {
            "experiment_ids": [aml_exp],
            "filter": f"tags.`{SOURCE_MODEL_TAG}` = '{db_model_id}'",
            "max_results": 1,
        }).get("models")
        if found:
            aml_info = found[0]["info"]
        else:
            source_run = info.get("source_run_id")
            tags = _mirrored_tags(info.get("tags"))
            body = {
                "experiment_id": aml_exp,
                "name": info.get("name"),
                "model_type": info.get("model_type"),
                "source_run_id": (self.ctx.run(source_run)["azureml_run_id"]
                                  if source_run and self.outbox.is_mirrored_run(source_run) else None),
                "params": (captured.get("data") or {}).get("params") or [],
                "tags": tags + [{"key": SOURCE_MODEL_TAG, "value": db_model_id}],
            }
            try:
                aml_info = self.client.call("POST", "logged-models", {k: v for k, v in body.items() if v is not None})["model"]["info"]
            except AzureMLError as exc:
                if exc.error_code == "ENDPOINT_NOT_FOUND":  # like the real service: no logged-models API
                    raise Skip("Azure ML has no logged-models API") from None
                raise
        self.outbox.set_run_map(db_model_id, self.ctx.target, aml_info["model_id"], aml_exp,
                                aml_info.get("artifact_uri"))
        return self.outbox.run_map(db_model_id, self.ctx.target)

    def _source_model(self, db_model_id: str) -> dict:
        try:
            m = self.ctx.relay.tracking_store().get_logged_model(db_model_id)
        except Exception as exc:
            raise Skip(f"Databricks logged model {db_model_id} is gone: {exc}") from None
        return {
            "info": {"experiment_id": m.experiment_id, "name": m.name, "model_type": m.model_type,
                     "source_run_id": m.source_run_id,
                     "tags": [{"key": k, "value": v} for k, v in (m.tags or {}).items()]},
            "data": {"params": [{"key": k, "value": v} for k, v in (m.params or {}).items()]},
        }

    def aml_id(self, db_model_id: str) -> str | None:
        """The mirrored model's id, or None if that model is not (or cannot be) mirrored."""
        if not self.outbox.is_mirrored_run(db_model_id):
            return None
        try:
            return self.model(db_model_id)["azureml_run_id"]
        except Skip:  # e.g. no logged-models API: the points and outputs still go, unlinked
            return None

    def apply(self, event: dict) -> None:
        kind, p, model_id = event["kind"], event["payload"], event["run_id"]
        if kind == "model_create":
            self.model(model_id, captured=p["model"])
            return
        aml = self.model(model_id)
        aml_id = aml["azureml_run_id"]
        endpoint = f"logged-models/{quote(aml_id)}"
        if kind == "model_finalize":
            self.client.call("PATCH", endpoint, {"model_id": aml_id, "status": p["status"]})
        elif kind == "model_tags":
            tags = _mirrored_tags(p["tags"])
            if tags:
                self.client.call("PATCH", f"{endpoint}/tags", {"model_id": aml_id, "tags": tags})
        elif kind == "model_params":
            self.client.call("POST", f"{endpoint}/params", {"model_id": aml_id, "params": p["params"]})
        elif kind == "model_tag_delete":
            self.ctx._tolerate_missing("DELETE", f"{endpoint}/tags/{quote(p['key'], safe='')}", None)
        elif kind == "model_delete":
            self.ctx._tolerate_missing("DELETE", endpoint, None)
        elif kind == "model_artifact":
            self.ctx.upload(["logged_models", model_id], p, aml["artifact_uri"])

    def outputs(self, run_id: str, models: list[dict]) -> None:
        mapped = []
        for m in models:
            aml_id = self.aml_id(m.get("model_id"))
            if aml_id:
                mapped.append({**m, "model_id": aml_id})
        if mapped:
            self.client.call("POST", "runs/outputs",
                             {"run_id": self.ctx.run(run_id)["azureml_run_id"], "models": mapped})

    def metrics(self, metrics: list[dict]) -> list[dict]:
        """Metric points with their model link mapped (or dropped if that model is not mirrored)."""
        out = []
        for m in metrics:
            model_id = m.get("model_id")
            aml_id = self.aml_id(model_id) if model_id else None
            if aml_id:
                out.append({**m, "model_id": aml_id})
            else:
                out.append({k: v for k, v in m.items() if k not in ("model_id", "dataset_name", "dataset_digest")})
        return out
