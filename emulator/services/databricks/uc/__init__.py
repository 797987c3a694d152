"""The Unity Catalog model registry (``databricks-uc``, MLflow 3's default registry for "databricks").

* ``catalogs``     UC's catalog/schema API (``/api/2.1/unity-catalog/catalogs|schemas``); ``main.default`` exists
* ``registry``     registered models, tags, aliases (``/api/2.0/mlflow/unity-catalog/registered-models/...``)
* ``versions``     model versions, temporary credentials, finalize
* ``lineage``      the logged models and runs a version may name
* ``registration_faults``  hold_pending_s / fail_registration rules, applied at finalize
* ``prompts``      the prompt registry (``/api/2.0/mlflow/unity-catalog/prompts/...``)
* ``store``        all of it in ``<state>/databricks/uc.db``
* ``s3_link``      the workspace's admin calls to the S3 store holding the files (seal a finalized
                   version, reset); the store itself is ``emulator.services.s3``, its own process
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request

from emulator.pipeline import reset
from emulator.services.databricks.uc import catalogs, prompts, registry, versions
from emulator.services.databricks.uc.s3_link import S3Link
from emulator.services.databricks.uc.store import UcStore
from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig, workspace_id: str) -> None:
    state = Path(config.state_dir)
    store = UcStore(state / "uc.db", config.user)
    s3 = S3Link(config.s3_url, config.token)
    catalogs.install(app, store)
    registry.install(app, store)
    registration_faults = versions.install(app, store, s3, workspace_id)
    prompts.install(app, store)
    reset.on_reset(app, store.reset)
    reset.on_holds_data(app, store.holds_data)
    reset.on_reset(app, s3.reset)
    reset.on_reset(app, registration_faults.reset)

    @app.after_request
    def _org_id(response):
        # Databricks answers carry the workspace id; the UC client reads it from runs/get to link a
        # model version to its source run (else it warns "Unable to get ... workspace ID").
        if request.path.startswith("/api/"):
            response.headers.setdefault("x-databricks-org-id", workspace_id)
        return response
