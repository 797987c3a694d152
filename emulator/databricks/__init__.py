"""The Azure Databricks workspace stand-in (tracking URI ``databricks``)."""

from __future__ import annotations

from flask import Flask, request

from emulator.errors import error_response
from emulator.settings import ServerConfig


def install(app: Flask, config: ServerConfig) -> None:
    app.config["EMULATOR_PUBLIC_PREFIXES"].append("/.well-known/databricks-config")

    def not_found():
        # Databricks clients retry 5xx for minutes and treat 404 as "missing"; an unknown API is
        # reported as not implemented, naming the path.
        if request.path.startswith("/api/"):
            return error_response(
                "NOT_IMPLEMENTED",
                f"The Databricks emulator does not implement {request.method} {request.path}",
                501,
            )
        return error_response("ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'", 404)

    app.config["EMULATOR_NOT_FOUND"] = not_found
