"""UC model versions: create (PENDING_REGISTRATION, with a storage location) -> the CLIENT uploads
the files with temporary credentials -> finalize (READY, files sealed); get / update / delete /
search, tags, download URI, credentials."""

from __future__ import annotations

import re

from flask import Flask

from emulator.errors import EmulatorError
from emulator.services.databricks.registration_lifecycle import HELD_MESSAGE
from emulator.services.databricks.uc import lineage
from emulator.services.databricks.uc.registration_faults import RegistrationFaults
from emulator.services.databricks.uc.s3_link import S3Link
from emulator.services.databricks.uc.store import (
    UcStore,
    full_model_name,
    new_id,
    now_ms,
    split_name,
)
from emulator.services.databricks.uc.views import (
    PREFIX,
    ok,
    optional_str,
    page,
    params,
    required,
    tag_list,
    version_json,
)
from emulator.services.s3 import credentials
from emulator.services.s3.app import BUCKET

PENDING = "PENDING_REGISTRATION"
_FILTER = re.compile(r"^\s*(name|run_id)\s*=\s*'([^']*)'\s*$")
_WRITE_OPS = {"MODEL_VERSION_OPERATION_READ_WRITE", "2", 2}
_READ_OPS = {"MODEL_VERSION_OPERATION_READ", "1", 1}


def _prefix(storage_location: str) -> str:
    return storage_location.split(f"s3://{BUCKET}/", 1)[1]


def install(app: Flask, store: UcStore, s3: S3Link, workspace_id: str) -> RegistrationFaults:
    faults = RegistrationFaults(store)

    @app.route(f"{PREFIX}/model-versions/create", methods=["POST"])
    def _uc_create_version():
        data = params()
        source = required(data, "source")
        tags = tag_list(data)
        lineage.check(optional_str(data, "model_id"), optional_str(data, "run_id"),
                      optional_str(data, "run_tracking_server_id"), workspace_id)
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            number, version_id, ts = model["next_version"], new_id(), now_ms()
            location = f"s3://{BUCKET}/models/{model['id']}/versions/{version_id}"
            db.execute("UPDATE models SET next_version = ?, updated = ? WHERE id = ?", (number + 1, ts, model["id"]))
            db.execute("INSERT INTO versions (model, version, id, source, run_id, description, status, "
                       "storage_location, user_id, created, updated, logged_model_id, run_tracking_server_id) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (model["id"], number, version_id, source, optional_str(data, "run_id") or "",
                        optional_str(data, "description") or "", PENDING, location, store.user, ts, ts,
                        optional_str(data, "model_id"), optional_str(data, "run_tracking_server_id")))
            db.executemany("INSERT OR REPLACE INTO version_tags VALUES (?, ?, ?, ?)",
                           [(model["id"], number, k, v) for k, v in tags])
            _, version = store.version_row(db, data.get("name"), number)
            faults.remember(model["id"], number)
            return ok({"model_version": version_json(db, model, version)})

    @app.route(f"{PREFIX}/registered-models:is-databricks-sdk-models-artifact-repository-enabled", methods=["GET"])
    def _uc_sdk_repo_enabled():
        # fidelity: Unity Catalog model registry  (false: the client takes the temporary-credentials path)
        return ok({"is_databricks_sdk_models_artifact_repository_enabled": False})

    @app.route(f"{PREFIX}/model-versions/generate-temporary-credentials", methods=["POST"])
    def _uc_credentials():
        data = params()
        operation = data.get("operation")
        if operation not in _WRITE_OPS | _READ_OPS:
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid operation {operation!r}: expected "
                                "MODEL_VERSION_OPERATION_READ or MODEL_VERSION_OPERATION_READ_WRITE.", 400)
        write = operation in _WRITE_OPS
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
        if write and version["status"] != PENDING:
            # fidelity: Unity Catalog model registry  (files are written once, before finalize)
            raise EmulatorError("INVALID_PARAMETER_VALUE",
                                f"Cannot generate write credentials for model version {full_model_name(model)} "
                                f"version {version['version']}: its status is {version['status']}; "
                                "only versions in PENDING_REGISTRATION can be written.", 400)
        creds = credentials.issue(s3.master, BUCKET, _prefix(version["storage_location"]), write)
        expiration = creds.pop("expiration_time")
        return ok({"credentials": {"aws_temp_credentials": creds, "expiration_time": expiration,
                                   "storage_mode": "CUSTOMER_HOSTED"}})

    @app.route(f"{PREFIX}/model-versions/finalize", methods=["POST"])
    def _uc_finalize():
        data = params()
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
        if version["status"] == PENDING and version["status_message"] != HELD_MESSAGE:  # a held one stays held
            s3.seal(_prefix(version["storage_location"]))  # before READY: a failed seal leaves it pending
            status, message = faults.outcome(model["id"], version["version"])
            with store.tx() as db:
                db.execute("UPDATE versions SET status = ?, status_message = ?, updated = ? "
                           "WHERE model = ? AND version = ?", (status, message, now_ms(), model["id"], version["version"]))
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), version["version"])
            return ok({"model_version": version_json(db, model, version)})

    @app.route(f"{PREFIX}/model-versions/get", methods=["GET"])
    def _uc_get_version():
        data = params()
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
            return ok({"model_version": version_json(db, model, version)})

    @app.route(f"{PREFIX}/model-versions/get-download-uri", methods=["GET"])
    def _uc_download_uri():
        data = params()
        with store.tx() as db:
            _, version = store.version_row(db, data.get("name"), required(data, "version"))
        return ok({"artifact_uri": version["storage_location"]})

    @app.route(f"{PREFIX}/model-versions/update", methods=["PATCH"])
    def _uc_update_version():
        data = params()
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
            if data.get("description") is not None:
                db.execute("UPDATE versions SET description = ?, updated = ? WHERE model = ? AND version = ?",
                           (optional_str(data, "description"), now_ms(), model["id"], version["version"]))
            model, version = store.version_row(db, data.get("name"), version["version"])
            return ok({"model_version": version_json(db, model, version)})

    @app.route(f"{PREFIX}/model-versions/delete", methods=["DELETE"])
    def _uc_delete_version():
        data = params()
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
            for table in ("versions", "version_tags", "aliases"):
                db.execute(f"DELETE FROM {table} WHERE model = ? AND version = ?", (model["id"], version["version"]))
        return ok()

    @app.route(f"{PREFIX}/model-versions/search", methods=["GET"])
    def _uc_search_versions():
        data = params()
        text = data.get("filter") or ""
        match = _FILTER.match(text)
        if text and not match:
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Unsupported filter {text!r}: Unity Catalog model "
                                "versions are searched by name = '<catalog>.<schema>.<model>' or run_id = '<id>'.", 400)
        with store.tx() as db:
            if match and match.group(1) == "name":
                catalog, schema, name = split_name(match.group(2))
                model = db.execute("SELECT * FROM models WHERE catalog = ? AND schema = ? AND name = ?",
                                   (catalog, schema, name)).fetchone()
                # A name with no model matches nothing (as MLflow's own stores answer): callers
                # check "does it have versions yet" this way before registering.
                rows = [] if model is None else [(model, v) for v in db.execute(
                    "SELECT * FROM versions WHERE model = ? ORDER BY version DESC", (model["id"],))]
            else:
                where, args = ("WHERE v.run_id = ?", (match.group(2),)) if match else ("", ())
                rows = []
                for v in db.execute(f"SELECT v.* FROM versions v {where} ORDER BY v.created DESC", args):
                    rows.append((db.execute("SELECT * FROM models WHERE id = ?", (v["model"],)).fetchone(), v))
            chunk, token = page(rows, data)
            out = {"model_versions": [version_json(db, m, v, full=False) for m, v in chunk]}
        if token:
            out["next_page_token"] = token
        return ok(out)

    @app.route(f"{PREFIX}/model-versions/set-tag", methods=["POST"])
    def _uc_set_version_tag():
        data = params()
        key = required(data, "key")
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
            db.execute("INSERT OR REPLACE INTO version_tags VALUES (?, ?, ?, ?)",
                       (model["id"], version["version"], key, str(data.get("value", ""))))
        return ok()

    @app.route(f"{PREFIX}/model-versions/delete-tag", methods=["DELETE"])
    def _uc_delete_version_tag():
        data = params()
        key = required(data, "key")
        with store.tx() as db:
            model, version = store.version_row(db, data.get("name"), required(data, "version"))
            db.execute("DELETE FROM version_tags WHERE model = ? AND version = ? AND key = ?",
                       (model["id"], version["version"], key))
        return ok()

    @app.route(f"{PREFIX}/model-versions/emit-lineage", methods=["POST"])
    def _uc_emit_lineage():
        params()
        return ok()  # lineage is not kept

    return faults
