"""UC's catalog and schema API (``/api/2.1/unity-catalog/catalogs|schemas``, databricks-sdk's
``w.catalogs`` / ``w.schemas``): models can only be registered into schemas that exist."""

from __future__ import annotations

import re

from flask import Flask, request

from emulator.errors import EmulatorError
from emulator.services.databricks.uc.store import UcStore, not_found, now_ms
from emulator.services.databricks.uc.views import ok, params, required

API = "/api/2.1/unity-catalog"
_NAME = re.compile(r"^[^./\s\x00-\x1f]+$")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid {what} name '{value}': names cannot contain "
                            "'.', '/', spaces or control characters.", 400)
    return value.lower()


def _catalog_json(row) -> dict:
    return {"name": row["name"], "full_name": row["name"], "comment": row["comment"] or "", "owner": row["owner"],
            "created_at": row["created_at"], "catalog_type": "MANAGED_CATALOG"}


def _schema_json(row) -> dict:
    return {"name": row["name"], "catalog_name": row["catalog"], "full_name": f"{row['catalog']}.{row['name']}",
            "comment": row["comment"] or "", "owner": row["owner"], "created_at": row["created_at"]}


def _force() -> bool:
    return request.args.get("force", "false").lower() == "true"


def install(app: Flask, store: UcStore) -> None:
    @app.route(f"{API}/catalogs", methods=["POST", "GET"])
    def _uc_catalogs():
        with store.tx() as db:
            if request.method == "GET":
                return ok({"catalogs": [_catalog_json(r) for r in db.execute("SELECT * FROM catalogs ORDER BY name")]})
            data = params()
            name = _name(required(data, "name"), "catalog")
            if db.execute("SELECT 1 FROM catalogs WHERE name = ?", (name,)).fetchone():
                raise EmulatorError("RESOURCE_ALREADY_EXISTS", f"Catalog '{name}' already exists.", 409)
            db.execute("INSERT INTO catalogs VALUES (?, ?, ?, ?)", (name, data.get("comment") or "", store.user, now_ms()))
            return ok(_catalog_json(db.execute("SELECT * FROM catalogs WHERE name = ?", (name,)).fetchone()))

    @app.route(f"{API}/catalogs/<name>", methods=["GET", "DELETE"])
    def _uc_catalog(name):
        name = name.lower()
        with store.tx() as db:
            row = db.execute("SELECT * FROM catalogs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise not_found(f"Catalog '{name}' does not exist.")
            if request.method == "GET":
                return ok(_catalog_json(row))
            busy = db.execute("SELECT 1 FROM schemas WHERE catalog = ? AND name != 'information_schema'", (name,)).fetchone()
            if busy and not _force():
                raise EmulatorError("INVALID_PARAMETER_VALUE", f"Catalog '{name}' is not empty. "
                                    "Delete its schemas first, or pass force=true.", 400)
            for model in db.execute("SELECT id FROM models WHERE catalog = ?", (name,)).fetchall():
                _drop_model(db, model["id"])
            db.execute("DELETE FROM schemas WHERE catalog = ?", (name,))
            db.execute("DELETE FROM catalogs WHERE name = ?", (name,))
            return ok()

    @app.route(f"{API}/schemas", methods=["POST", "GET"])
    def _uc_schemas():
        with store.tx() as db:
            if request.method == "GET":
                catalog = required(request.args.to_dict(), "catalog_name").lower()
                if not db.execute("SELECT 1 FROM catalogs WHERE name = ?", (catalog,)).fetchone():
                    raise not_found(f"Catalog '{catalog}' does not exist.")
                rows = db.execute("SELECT * FROM schemas WHERE catalog = ? ORDER BY name", (catalog,))
                return ok({"schemas": [_schema_json(r) for r in rows]})
            data = params()
            catalog = _name(required(data, "catalog_name"), "catalog")
            name = _name(required(data, "name"), "schema")
            if not db.execute("SELECT 1 FROM catalogs WHERE name = ?", (catalog,)).fetchone():
                raise not_found(f"Catalog '{catalog}' does not exist.")
            if db.execute("SELECT 1 FROM schemas WHERE catalog = ? AND name = ?", (catalog, name)).fetchone():
                raise EmulatorError("RESOURCE_ALREADY_EXISTS", f"Schema '{catalog}.{name}' already exists.", 409)
            db.execute("INSERT INTO schemas VALUES (?, ?, ?, ?, ?)",
                       (catalog, name, data.get("comment") or "", store.user, now_ms()))
            row = db.execute("SELECT * FROM schemas WHERE catalog = ? AND name = ?", (catalog, name)).fetchone()
            return ok(_schema_json(row))

    @app.route(f"{API}/schemas/<full_name>", methods=["GET", "DELETE"])
    def _uc_schema(full_name):
        catalog, _, name = full_name.lower().partition(".")
        with store.tx() as db:
            row = db.execute("SELECT * FROM schemas WHERE catalog = ? AND name = ?", (catalog, name)).fetchone()
            if row is None:
                raise not_found(f"Schema '{full_name.lower()}' does not exist.")
            if request.method == "GET":
                return ok(_schema_json(row))
            models = db.execute("SELECT id FROM models WHERE catalog = ? AND schema = ?", (catalog, name)).fetchall()
            if models and not _force():
                raise EmulatorError("INVALID_PARAMETER_VALUE", f"Schema '{catalog}.{name}' is not empty. "
                                    "Delete its models first, or pass force=true.", 400)
            for model in models:
                _drop_model(db, model["id"])
            db.execute("DELETE FROM schemas WHERE catalog = ? AND name = ?", (catalog, name))
            return ok()


def _drop_model(db, model_id: str) -> None:
    for table in ("versions", "model_tags", "version_tags", "aliases"):
        db.execute(f"DELETE FROM {table} WHERE model = ?", (model_id,))
    db.execute("DELETE FROM models WHERE id = ?", (model_id,))
