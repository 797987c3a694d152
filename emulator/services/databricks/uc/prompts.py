"""UC prompt registry (``/api/2.0/mlflow/unity-catalog/prompts...``, registry ``databricks-uc``).

``mlflow.genai.register_prompt`` / ``load_prompt`` / ``search_prompts`` on ``databricks-uc`` call
these routes (``unity_catalog_prompt_service.proto``): prompts named ``catalog.schema.prompt`` in an
existing schema, numbered versions holding the client's JSON-encoded template, tags on both, aliases.
A name that is not three levels is refused with the prompt wording (the client passes the server's
message through), never the model one. Links of prompt versions to models/runs/traces are accepted
and dropped, as the model registry's lineage is.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import unquote

from flask import Flask, request

from emulator.errors import EmulatorError, error_response
from emulator.services.databricks.uc.store import UcStore, new_id, not_found, now_ms
from emulator.services.databricks.uc.views import (
    PREFIX,
    ok,
    optional_str,
    page,
    params,
    required,
    tag_list,
)

PROMPTS = f"{PREFIX}/prompts"
# fidelity: Evaluation datasets, traces and prompts
BAD_PROMPT_NAME = ("Bad prompt name: please specify all three levels of the prompt in the form "
                   "`catalog_name.schema_name.prompt_name`")


def is_three_levels(name) -> bool:
    parts = name.split(".") if isinstance(name, str) else []
    return len(parts) == 3 and all(p.strip() for p in parts)


def split_prompt_name(name) -> tuple[str, str, str]:
    if not is_three_levels(name) or any(ch in name for ch in "/ \t\n\x00"):
        raise EmulatorError("INVALID_PARAMETER_VALUE", BAD_PROMPT_NAME, 400)
    return tuple(p.lower() for p in name.split("."))  # type: ignore[return-value]  # UC names are lowercase


def _names_in_request() -> list:
    """The prompt names a call carries: the path segment after ``prompts/``, or the create body's."""
    rest = request.path[len(PROMPTS):]
    if rest.startswith("/"):
        segment = unquote(rest[1:].split("/", 1)[0])
        return [] if segment == "search" else [segment]
    if request.method == "POST":  # prompts create
        body = request.get_json(force=True, silent=True)
        body = body if isinstance(body, dict) else {}
        prompt = body.get("prompt") if isinstance(body.get("prompt"), dict) else {}
        return [body.get("name", prompt.get("name"))]
    return []


def _timestamp(ms: int) -> str:
    # google.protobuf.Timestamp's JSON form (the client parses these messages with ParseDict)
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _full_name(row) -> str:
    return f"{row['catalog']}.{row['schema']}.{row['name']}"


def _prompt_row(store: UcStore, db, name):
    catalog, schema, short = split_prompt_name(name)
    return store.named_row(db, "prompts", catalog, schema, short, f"Prompt '{catalog}.{schema}.{short}' does not exist.")


def _version_number(version) -> int:
    try:
        number = int(str(version))
    except ValueError:
        number = 0
    if not 1 <= number < 2**63:  # beyond int64 SQLite would raise (a 500)
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid prompt version '{version}': "
                            "a version is a positive integer.", 400)
    return number


def _version_row(store: UcStore, db, name, version):
    prompt = _prompt_row(store, db, name)
    number = _version_number(version)
    row = db.execute("SELECT * FROM prompt_versions WHERE prompt = ? AND version = ?", (prompt["id"], number)).fetchone()
    if row is None:
        raise not_found(f"Prompt '{_full_name(prompt)}' version {number} does not exist.")
    return prompt, row


def prompt_json(db, prompt) -> dict:
    return {
        "name": _full_name(prompt),
        "creation_timestamp": _timestamp(prompt["created"]),
        "last_updated_timestamp": _timestamp(prompt["updated"]),
        "description": prompt["description"] or "",
        "aliases": [{"alias": r["alias"], "version": str(r["version"])} for r in db.execute(
            "SELECT alias, version FROM prompt_aliases WHERE prompt = ? ORDER BY alias", (prompt["id"],))],
        "tags": [{"key": r["key"], "value": r["value"]} for r in db.execute(
            "SELECT key, value FROM prompt_tags WHERE prompt = ? ORDER BY key", (prompt["id"],))],
    }


def version_json(db, prompt, version) -> dict:
    number = version["version"]
    return {
        "name": _full_name(prompt),
        "version": str(number),
        "creation_timestamp": _timestamp(version["created"]),
        "last_updated_timestamp": _timestamp(version["updated"]),
        "description": version["description"] or "",
        "template": version["template"],
        "aliases": [{"alias": r["alias"], "version": str(number)} for r in db.execute(
            "SELECT alias FROM prompt_aliases WHERE prompt = ? AND version = ? ORDER BY alias", (prompt["id"], number))],
        "tags": [{"key": r["key"], "value": r["value"]} for r in db.execute(
            "SELECT key, value FROM prompt_version_tags WHERE prompt = ? AND version = ? ORDER BY key",
            (prompt["id"], number))],
    }


def install(app: Flask, store: UcStore) -> None:
    @app.before_request
    def _prompt_name_has_three_levels():
        if request.path != PROMPTS and not request.path.startswith(PROMPTS + "/"):
            return None
        if any(not is_three_levels(name) for name in _names_in_request()):
            return error_response("INVALID_PARAMETER_VALUE", BAD_PROMPT_NAME, 400)
        return None

    # fidelity: Evaluation datasets, traces and prompts  (the registry, for well-formed names)
    @app.route(PROMPTS, methods=["POST"])
    def _uc_create_prompt():
        data = params()
        prompt = data.get("prompt") if isinstance(data.get("prompt"), dict) else {}
        catalog, schema, name = split_prompt_name(data.get("name") or prompt.get("name"))
        tags = tag_list(prompt)
        with store.tx() as db:
            store.require_schema(db, catalog, schema)
            if db.execute("SELECT 1 FROM prompts WHERE catalog = ? AND schema = ? AND name = ?",
                          (catalog, schema, name)).fetchone():
                # the client's register_prompt goes on to a new version on exactly this code
                raise EmulatorError("ALREADY_EXISTS", f"Prompt '{catalog}.{schema}.{name}' already exists.", 409)
            prompt_id, ts = new_id(), now_ms()
            db.execute("INSERT INTO prompts VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                       (prompt_id, catalog, schema, name, optional_str(prompt, "description") or "", ts, ts))
            db.executemany("INSERT OR REPLACE INTO prompt_tags VALUES (?, ?, ?)", [(prompt_id, k, v) for k, v in tags])
            return ok(prompt_json(db, db.execute("SELECT * FROM prompts WHERE id = ?", (prompt_id,)).fetchone()))

    @app.route(f"{PROMPTS}/<name>", methods=["GET", "PATCH", "DELETE"])
    def _uc_prompt(name):
        data = params()
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            if request.method == "DELETE":
                for table in ("prompt_versions", "prompt_tags", "prompt_version_tags", "prompt_aliases"):
                    db.execute(f"DELETE FROM {table} WHERE prompt = ?", (prompt["id"],))
                db.execute("DELETE FROM prompts WHERE id = ?", (prompt["id"],))
                return ok()
            if request.method == "PATCH":
                body = data.get("prompt") if isinstance(data.get("prompt"), dict) else data
                db.execute("UPDATE prompts SET description = ?, updated = ? WHERE id = ?",
                           (optional_str(body, "description") or "", now_ms(), prompt["id"]))
                prompt = db.execute("SELECT * FROM prompts WHERE id = ?", (prompt["id"],)).fetchone()
            return ok(prompt_json(db, prompt))

    @app.route(f"{PROMPTS}/search", methods=["POST", "GET"])
    def _uc_search_prompts():
        data = params()
        where = data.get("catalog_schema") if isinstance(data.get("catalog_schema"), dict) else {}
        catalog, schema = where.get("catalog_name"), where.get("schema_name")
        if not isinstance(catalog, str) or not isinstance(schema, str) or not catalog or not schema:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "catalog_schema.catalog_name and schema_name are required.", 400)
        with store.tx() as db:
            store.require_schema(db, catalog.lower(), schema.lower())
            rows = db.execute("SELECT * FROM prompts WHERE catalog = ? AND schema = ? ORDER BY name",
                              (catalog.lower(), schema.lower())).fetchall()
            chunk, token = page(rows, data)
            out = {"prompts": [prompt_json(db, r) for r in chunk]}
        if token:
            out["next_page_token"] = token
        return ok(out)

    @app.route(f"{PROMPTS}/<name>/tags", methods=["POST"])
    def _uc_set_prompt_tag(name):
        data = params()
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            db.execute("INSERT OR REPLACE INTO prompt_tags VALUES (?, ?, ?)",
                       (prompt["id"], required(data, "key"), str(data.get("value") or "")))
        return ok()

    @app.route(f"{PROMPTS}/<name>/tags/<key>", methods=["DELETE"])
    def _uc_delete_prompt_tag(name, key):
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            db.execute("DELETE FROM prompt_tags WHERE prompt = ? AND key = ?", (prompt["id"], key))
        return ok()

    @app.route(f"{PROMPTS}/<name>/versions", methods=["POST"])
    def _uc_create_prompt_version(name):
        data = params()
        version = data.get("prompt_version") if isinstance(data.get("prompt_version"), dict) else {}
        template = required(version, "template")  # the client's json.dumps of the template
        tags = tag_list(version)
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            number, ts = prompt["next_version"], now_ms()
            db.execute("INSERT INTO prompt_versions VALUES (?, ?, ?, ?, ?, ?)",
                       (prompt["id"], number, template, optional_str(version, "description") or "", ts, ts))
            db.executemany("INSERT OR REPLACE INTO prompt_version_tags VALUES (?, ?, ?, ?)",
                           [(prompt["id"], number, k, v) for k, v in tags])
            db.execute("UPDATE prompts SET next_version = ?, updated = ? WHERE id = ?", (number + 1, ts, prompt["id"]))
            row = db.execute("SELECT * FROM prompt_versions WHERE prompt = ? AND version = ?",
                             (prompt["id"], number)).fetchone()
            return ok(version_json(db, prompt, row))

    @app.route(f"{PROMPTS}/<name>/versions/<version>", methods=["GET", "PATCH", "DELETE"])
    def _uc_prompt_version(name, version):
        data = params()
        with store.tx() as db:
            prompt, row = _version_row(store, db, name, version)
            key = (prompt["id"], row["version"])
            if request.method == "DELETE":
                for table in ("prompt_versions", "prompt_version_tags", "prompt_aliases"):
                    db.execute(f"DELETE FROM {table} WHERE prompt = ? AND version = ?", key)
                return ok()
            if request.method == "PATCH":
                body = data.get("prompt_version") if isinstance(data.get("prompt_version"), dict) else data
                db.execute("UPDATE prompt_versions SET description = ?, updated = ? WHERE prompt = ? AND version = ?",
                           (optional_str(body, "description") or "", now_ms(), *key))
                row = db.execute("SELECT * FROM prompt_versions WHERE prompt = ? AND version = ?", key).fetchone()
            return ok(version_json(db, prompt, row))

    @app.route(f"{PROMPTS}/<name>/versions/search", methods=["POST", "GET"])
    def _uc_search_prompt_versions(name):
        data = params()
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            rows = db.execute("SELECT * FROM prompt_versions WHERE prompt = ? ORDER BY version DESC",
                              (prompt["id"],)).fetchall()
            chunk, token = page(rows, data)
            out = {"prompt_versions": [version_json(db, prompt, r) for r in chunk]}
        if token:
            out["next_page_token"] = token
        return ok(out)

    @app.route(f"{PROMPTS}/<name>/versions/<version>/tags", methods=["POST"])
    def _uc_set_prompt_version_tag(name, version):
        data = params()
        with store.tx() as db:
            prompt, row = _version_row(store, db, name, version)
            db.execute("INSERT OR REPLACE INTO prompt_version_tags VALUES (?, ?, ?, ?)",
                       (prompt["id"], row["version"], required(data, "key"), str(data.get("value") or "")))
        return ok()

    @app.route(f"{PROMPTS}/<name>/versions/<version>/tags/<key>", methods=["DELETE"])
    def _uc_delete_prompt_version_tag(name, version, key):
        with store.tx() as db:
            prompt, row = _version_row(store, db, name, version)
            db.execute("DELETE FROM prompt_version_tags WHERE prompt = ? AND version = ? AND key = ?",
                       (prompt["id"], row["version"], key))
        return ok()

    @app.route(f"{PROMPTS}/<name>/aliases/<alias>", methods=["POST", "DELETE"])
    def _uc_prompt_alias(name, alias):
        data = params()
        with store.tx() as db:
            if request.method == "DELETE":
                prompt = _prompt_row(store, db, name)
                db.execute("DELETE FROM prompt_aliases WHERE prompt = ? AND alias = ?", (prompt["id"], alias))
                return ok()
            prompt, row = _version_row(store, db, name, required(data, "version"))
            db.execute("INSERT OR REPLACE INTO prompt_aliases VALUES (?, ?, ?)", (prompt["id"], alias, row["version"]))
        return ok()

    @app.route(f"{PROMPTS}/<name>/versions/by-alias/<alias>", methods=["GET"])
    def _uc_prompt_version_by_alias(name, alias):
        with store.tx() as db:
            prompt = _prompt_row(store, db, name)
            found = db.execute("SELECT version FROM prompt_aliases WHERE prompt = ? AND alias = ?",
                               (prompt["id"], alias)).fetchone()
            if found is None:
                raise not_found(f"Alias '{alias}' does not exist for prompt '{_full_name(prompt)}'.")
            _, row = _version_row(store, db, name, found["version"])
            return ok(version_json(db, prompt, row))

    @app.route(f"{PREFIX}/prompt-versions/<link>", methods=["POST"])
    def _uc_prompt_links(link):
        if link not in ("links-to-models", "links-to-traces", "links-to-runs"):
            raise EmulatorError("ENDPOINT_NOT_FOUND", f"No API found for 'POST {request.path}'", 404)
        params()  # accepted and dropped, like the model registry's lineage
        return ok()
