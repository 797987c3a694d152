"""The Secrets API (``/api/2.0/secrets/...``) behind ``w.secrets`` and ``dbutils.secrets``.

Databricks-backed scopes only, without ACLs (every caller holds the workspace's one token, so it
MANAGEs every scope). Scopes and secrets live in ``<state>/secrets.db`` (SQLite), so they survive
a restart as workspace folders do, and a workspace reset empties them. Values are kept as the
bytes the caller stored: ``string_value`` as UTF-8, ``bytes_value`` base64-decoded; ``secrets/get``
(what dbutils calls) answers them base64-encoded, as on Databricks.
"""

from __future__ import annotations

import base64
import binascii
import re
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.pipeline import reset

# fidelity: Secrets API — names: alphanumerics, dashes, underscores, periods; at most 128 characters
NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_VALUE = 128 * 1024  # bytes of one secret's value
MAX_SECRETS_PER_SCOPE = 1000


def _scope_missing(scope: str) -> EmulatorError:
    # fidelity: Secrets API
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!", 404)


def _secret_missing(scope: str, key: str) -> EmulatorError:
    # fidelity: Secrets API
    return EmulatorError("RESOURCE_DOES_NOT_EXIST", f"Secret does not exist with scope: {scope} and key: {key}", 404)


def _name(source: dict, field: str, what: str) -> str:
    value = source.get(field)
    if value is None or value == "":
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Missing required field: {field}", 400)
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise EmulatorError(
            "INVALID_PARAMETER_VALUE",
            f"{what} name must consist of alphanumeric characters, dashes, underscores, and periods, "
            f"and may not exceed 128 characters.", 400)
    return value


def _value(body: dict) -> bytes:
    given = [f for f in ("string_value", "bytes_value") if body.get(f) is not None]
    if len(given) != 1:
        # fidelity: Secrets API — exactly one of the two; both at once conflict
        code = "MALFORMED_REQUEST" if given else "INVALID_PARAMETER_VALUE"
        raise EmulatorError(code, "Exactly one of string_value or bytes_value must be specified.", 400)
    raw = body[given[0]]
    if not isinstance(raw, str):
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"{given[0]} must be a string.", 400)
    if given[0] == "string_value":
        value = raw.encode("utf-8", errors="surrogatepass")
    else:
        try:
            value = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise EmulatorError("INVALID_PARAMETER_VALUE", "bytes_value must be base64-encoded.", 400) from None
    if len(value) > MAX_VALUE:
        raise EmulatorError("INVALID_PARAMETER_VALUE",
                            f"Size of secret value ({len(value)} bytes) exceeds the limit of {MAX_VALUE} bytes.", 400)
    return value


class SecretStore:
    def __init__(self, state_dir: Path):
        self.db_path = Path(state_dir) / "secrets.db"
        self._lock = threading.Lock()
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS scopes (name TEXT PRIMARY KEY)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS secrets (scope TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
                " updated_ms INTEGER NOT NULL, PRIMARY KEY (scope, key))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    def _require_scope(self, db, scope: str) -> None:
        if db.execute("SELECT 1 FROM scopes WHERE name = ?", (scope,)).fetchone() is None:
            raise _scope_missing(scope)

    def create_scope(self, scope: str) -> None:
        with self._lock, closing(self._connect()) as db, db:
            if db.execute("SELECT 1 FROM scopes WHERE name = ?", (scope,)).fetchone():
                # fidelity: Secrets API — 400, not 409 (seen: databricks-cli issue #340, a PowerShell tool's 400)
                raise EmulatorError("RESOURCE_ALREADY_EXISTS", f"Scope {scope} already exists!", 400)
            db.execute("INSERT INTO scopes (name) VALUES (?)", (scope,))

    def delete_scope(self, scope: str) -> None:
        with self._lock, closing(self._connect()) as db, db:
            self._require_scope(db, scope)
            db.execute("DELETE FROM secrets WHERE scope = ?", (scope,))
            db.execute("DELETE FROM scopes WHERE name = ?", (scope,))

    def scopes(self) -> list[str]:
        with closing(self._connect()) as db:
            return [r[0] for r in db.execute("SELECT name FROM scopes ORDER BY name")]

    def put(self, scope: str, key: str, value: bytes) -> None:
        with self._lock, closing(self._connect()) as db, db:
            self._require_scope(db, scope)
            exists = db.execute("SELECT 1 FROM secrets WHERE scope = ? AND key = ?", (scope, key)).fetchone()
            count = db.execute("SELECT COUNT(*) FROM secrets WHERE scope = ?", (scope,)).fetchone()[0]
            if not exists and count >= MAX_SECRETS_PER_SCOPE:
                raise EmulatorError("RESOURCE_LIMIT_EXCEEDED",
                                    f"Scope {scope} already holds {MAX_SECRETS_PER_SCOPE} secrets.", 400)
            db.execute("INSERT OR REPLACE INTO secrets (scope, key, value, updated_ms) VALUES (?, ?, ?, ?)",
                       (scope, key, value, int(time.time() * 1000)))

    def delete(self, scope: str, key: str) -> None:
        with self._lock, closing(self._connect()) as db, db:
            self._require_scope(db, scope)
            if db.execute("DELETE FROM secrets WHERE scope = ? AND key = ?", (scope, key)).rowcount == 0:
                raise _secret_missing(scope, key)

    def list(self, scope: str) -> list[tuple[str, int]]:
        with closing(self._connect()) as db:
            self._require_scope(db, scope)
            return db.execute("SELECT key, updated_ms FROM secrets WHERE scope = ? ORDER BY key", (scope,)).fetchall()

    def get(self, scope: str, key: str) -> bytes:
        with closing(self._connect()) as db:
            self._require_scope(db, scope)
            row = db.execute("SELECT value FROM secrets WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        if row is None:
            raise _secret_missing(scope, key)
        return bytes(row[0])

    def holds_data(self) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM scopes LIMIT 1").fetchone() is not None

    def reset(self) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM secrets")
            db.execute("DELETE FROM scopes")


def _body() -> dict:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise EmulatorError("MALFORMED_REQUEST", "The request body must be a JSON object.", 400)
    return body


def install(app: Flask, store: SecretStore) -> None:
    reset.on_reset(app, store.reset)
    reset.on_holds_data(app, store.holds_data)

    @app.route("/api/2.0/secrets/scopes/create", methods=["POST"])
    def _create_scope():
        body = _body()
        scope = _name(body, "scope", "Scope")
        backend = body.get("scope_backend_type") or "DATABRICKS"
        if str(backend).upper() == "AZURE_KEYVAULT":
            # fidelity: Secrets API — what Databricks answers a token caller (no Azure AD token to reach Key Vault)
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Scope with Azure KeyVault must have userAADToken defined!",
                                400)
        if str(backend).upper() != "DATABRICKS":
            raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid scope_backend_type: {backend}", 400)
        store.create_scope(scope)
        return jsonify({})

    @app.route("/api/2.0/secrets/scopes/delete", methods=["POST"])
    def _delete_scope():
        store.delete_scope(_name(_body(), "scope", "Scope"))
        return jsonify({})

    @app.route("/api/2.0/secrets/scopes/list", methods=["GET"])
    def _list_scopes():
        scopes = [{"name": s, "backend_type": "DATABRICKS"} for s in store.scopes()]
        return jsonify({"scopes": scopes} if scopes else {})  # empty lists are left out, as on Databricks

    @app.route("/api/2.0/secrets/put", methods=["POST"])
    def _put():
        body = _body()
        scope, key = _name(body, "scope", "Scope"), _name(body, "key", "Secret key")
        store.put(scope, key, _value(body))
        return jsonify({})

    @app.route("/api/2.0/secrets/delete", methods=["POST"])
    def _delete():
        body = _body()
        store.delete(_name(body, "scope", "Scope"), _name(body, "key", "Secret key"))
        return jsonify({})

    @app.route("/api/2.0/secrets/list", methods=["GET"])
    def _list():
        rows = store.list(_name(request.args, "scope", "Scope"))
        secrets = [{"key": k, "last_updated_timestamp": ms} for k, ms in rows]
        return jsonify({"secrets": secrets} if secrets else {})

    @app.route("/api/2.0/secrets/get", methods=["GET"])
    def _get():
        # fidelity: Secrets API — Databricks answers this only to dbutils in a notebook; here any
        # caller with the workspace token (the runner's dbutils is local code)
        scope, key = _name(request.args, "scope", "Scope"), _name(request.args, "key", "Secret key")
        return jsonify({"key": key, "value": base64.b64encode(store.get(scope, key)).decode("ascii")})
