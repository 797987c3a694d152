"""UC registered models: create / get / update (rename, description) / delete / search, tags, aliases."""

from __future__ import annotations

from flask import Flask

from emulator.errors import EmulatorError
from emulator.services.databricks.uc.store import (
    UcStore,
    new_id,
    not_found,
    now_ms,
    split_name,
)
from emulator.services.databricks.uc.views import (
    PREFIX,
    model_json,
    ok,
    optional_str,
    page,
    params,
    required,
    tag_list,
    version_json,
)


def install(app: Flask, store: UcStore) -> None:
    @app.route(f"{PREFIX}/registered-models/create", methods=["POST"])
    def _uc_create_model():
        data = params()
        catalog, schema, name = split_name(data.get("name"))
        tags = tag_list(data)
        with store.tx() as db:
            store.require_schema(db, catalog, schema)
            if db.execute("SELECT 1 FROM models WHERE catalog = ? AND schema = ? AND name = ?",
                          (catalog, schema, name)).fetchone():
                # fidelity: Unity Catalog model registry  (mlflow's _register_model goes on with a new version)
                raise EmulatorError("RESOURCE_ALREADY_EXISTS",
                                    f"Routine or Model '{catalog}.{schema}.{name}' already exists.", 409)
            model_id, ts = new_id(), now_ms()
            db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                       (model_id, catalog, schema, name, optional_str(data, "description") or "", store.user, ts, ts))
            db.executemany("INSERT OR REPLACE INTO model_tags VALUES (?, ?, ?)", [(model_id, k, v) for k, v in tags])
            model = db.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
            return ok({"registered_model": model_json(db, model)})

    @app.route(f"{PREFIX}/registered-models/get", methods=["GET"])
    def _uc_get_model():
        data = params()
        with store.tx() as db:
            return ok({"registered_model": model_json(db, store.model_row(db, data.get("name")))})

    @app.route(f"{PREFIX}/registered-models/update", methods=["PATCH"])
    def _uc_update_model():
        data = params()
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            if data.get("description") is not None:
                db.execute("UPDATE models SET description = ?, updated = ? WHERE id = ?",
                           (optional_str(data, "description"), now_ms(), model["id"]))
            if data.get("new_name"):
                catalog, schema, name = split_name(data["new_name"])
                store.require_schema(db, catalog, schema)
                if db.execute("SELECT 1 FROM models WHERE catalog = ? AND schema = ? AND name = ? AND id != ?",
                              (catalog, schema, name, model["id"])).fetchone():
                    raise EmulatorError("RESOURCE_ALREADY_EXISTS",
                                        f"Routine or Model '{catalog}.{schema}.{name}' already exists.", 409)
                db.execute("UPDATE models SET catalog = ?, schema = ?, name = ?, updated = ? WHERE id = ?",
                           (catalog, schema, name, now_ms(), model["id"]))
            model = db.execute("SELECT * FROM models WHERE id = ?", (model["id"],)).fetchone()
            return ok({"registered_model": model_json(db, model)})

    @app.route(f"{PREFIX}/registered-models/delete", methods=["DELETE"])
    def _uc_delete_model():
        data = params()
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            for table in ("versions", "model_tags", "version_tags", "aliases"):
                db.execute(f"DELETE FROM {table} WHERE model = ?", (model["id"],))
            db.execute("DELETE FROM models WHERE id = ?", (model["id"],))
        return ok()

    @app.route(f"{PREFIX}/registered-models/search", methods=["GET"])
    def _uc_search_models():
        data = params()
        with store.tx() as db:
            rows = db.execute("SELECT * FROM models ORDER BY catalog, schema, name").fetchall()
            chunk, token = page(rows, data)
            out = {"registered_models": [model_json(db, m, full=False) for m in chunk]}
        if token:
            out["next_page_token"] = token
        return ok(out)

    @app.route(f"{PREFIX}/registered-models/set-tag", methods=["POST"])
    def _uc_set_model_tag():
        data = params()
        key = required(data, "key")
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            db.execute("INSERT OR REPLACE INTO model_tags VALUES (?, ?, ?)", (model["id"], key, str(data.get("value", ""))))
        return ok()

    @app.route(f"{PREFIX}/registered-models/delete-tag", methods=["DELETE"])
    def _uc_delete_model_tag():
        data = params()
        key = required(data, "key")
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            db.execute("DELETE FROM model_tags WHERE model = ? AND key = ?", (model["id"], key))
        return ok()

    @app.route(f"{PREFIX}/registered-models/alias", methods=["POST", "DELETE", "GET"])
    def _uc_alias():
        from flask import request

        data = params()
        alias = required(data, "alias")
        with store.tx() as db:
            model = store.model_row(db, data.get("name"))
            if request.method == "POST":
                _, version = store.version_row(db, data.get("name"), required(data, "version"))
                _check_alias(alias)
                db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (model["id"], alias, version["version"]))
                return ok()
            if request.method == "DELETE":
                db.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (model["id"], alias))
                return ok()
            row = db.execute("SELECT version FROM aliases WHERE model = ? AND alias = ?", (model["id"], alias)).fetchone()
            if row is None:
                raise not_found(f"Alias '{alias}' does not exist for model '{data.get('name')}'.")
            _, version = store.version_row(db, data.get("name"), row["version"])
            return ok({"model_version": version_json(db, model, version)})


def _check_alias(alias: str) -> None:
    # MLflow reserves "latest" and v<N> forms, which would shadow version URIs.
    lowered = alias.lower()
    if lowered == "latest" or (lowered.startswith("v") and lowered[1:].isdigit()):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"'{alias}' is a reserved alias name.", 400)
