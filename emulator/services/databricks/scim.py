"""``GET /api/2.0/preview/scim/v2/Me``: the token's user (``mlflow.login()``, ``w.current_user.me()``)."""

from __future__ import annotations

from flask import Flask, jsonify

from emulator.services.databricks.experiment_rules import user_id
from emulator.settings import ServerConfig


def me(config: ServerConfig) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": user_id(config.user),
        "userName": config.user,
        "displayName": config.user.split("@")[0],
        "active": True,
        "emails": [{"value": config.user, "type": "work", "primary": True}],
        "groups": [{"display": "users", "type": "direct"}],
    }


def install(app: Flask, config: ServerConfig) -> None:
    @app.route("/api/2.0/preview/scim/v2/Me", methods=["GET"])
    def _scim_me():
        return jsonify(me(config))
