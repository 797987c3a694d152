"""Admin routes of the fault rules and the journal (bearer token like every route; JSON bodies).

* ``POST /__emulator/faults`` a rule (or ``{"rules": [...]}``) -> the stored rule(s) with ids
* ``GET /__emulator/faults`` -> ``{"rules": [...]}`` with each rule's ``matched`` and ``hits``
* ``DELETE /__emulator/faults`` (all) or ``/__emulator/faults/<id>`` -> ``{"cleared": n}``
* ``GET /__emulator/requests?since=<seq>&path=<substring or glob>&limit=<n>`` -> the journal
* ``POST /__emulator/requests {"enabled": true|false, "max_entries": n}``; ``DELETE`` empties it
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.pipeline import auth
from emulator.pipeline.faults import FaultRule, FaultRules
from emulator.pipeline.journal import Journal


def _json_body():
    # A state-changing admin call takes JSON only, so a cross-site form post cannot make one.
    if not request.is_json:
        raise EmulatorError("INVALID_PARAMETER_VALUE",
                            f"{request.method} {request.path} needs Content-Type: application/json.", 415)
    body = request.get_json(silent=True)
    if body is None:
        raise EmulatorError("INVALID_PARAMETER_VALUE", "The request body is not valid JSON.", 400)
    return body


def _int_arg(name: str, default: int | None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"'{name}' must be a non-negative integer.", 400)
    return int(value)


def _bearer_only():
    # The token check before this accepts the UI's ?token= and cookie too; these routes change how
    # the workspace answers and show what it was sent, so only an API client's bearer token will do
    # (the check already validated it: it looks at the Authorization header first).
    if auth.bearer_token(request) is None:
        raise EmulatorError("UNAUTHENTICATED", f"{request.path} needs Authorization: Bearer <token>.", 401)


def install(app: Flask, rules: FaultRules, journal: Journal) -> None:
    @app.route("/__emulator/faults", methods=["GET", "POST", "DELETE"])
    def _faults():
        _bearer_only()
        if request.method == "GET":
            return jsonify({"rules": rules.list()})
        if request.method == "DELETE":
            return jsonify({"cleared": rules.clear()})
        body = _json_body()
        many = isinstance(body, dict) and "rules" in body and set(body) == {"rules"}
        specs = body["rules"] if many else [body]
        if not isinstance(specs, list) or not specs:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "'rules' must be a non-empty list of rules.", 400)
        parsed = [FaultRule.from_json(spec) for spec in specs]  # all valid, or none added
        added = [rules.add(rule).to_json() for rule in parsed]
        return jsonify({"rules": added} if many else {"rule": added[0]})

    @app.route("/__emulator/faults/<int:rule_id>", methods=["DELETE"])
    def _fault(rule_id: int):
        _bearer_only()
        cleared = rules.clear(rule_id)
        if not cleared:
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST", f"No fault rule {rule_id}.", 404)
        return jsonify({"cleared": cleared})

    @app.route("/__emulator/requests", methods=["GET", "POST", "DELETE"])
    def _requests():
        _bearer_only()
        if request.method == "DELETE":
            journal.clear()
            return jsonify(journal.state())
        if request.method == "POST":
            body = _json_body()
            if not isinstance(body, dict) or set(body) - {"enabled", "max_entries"}:
                raise EmulatorError("INVALID_PARAMETER_VALUE", "Expected {\"enabled\": bool, \"max_entries\": int}.", 400)
            enabled, size = body.get("enabled"), body.get("max_entries")
            if enabled is not None and not isinstance(enabled, bool):
                raise EmulatorError("INVALID_PARAMETER_VALUE", "'enabled' must be true or false.", 400)
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 10**6):
                raise EmulatorError("INVALID_PARAMETER_VALUE", "'max_entries' must be from 1 to 1000000.", 400)
            journal.configure(enabled, size)
            return jsonify(journal.state())
        entries = journal.entries(_int_arg("since", 0), request.args.get("path") or None, _int_arg("limit", None))
        return jsonify({**journal.state(), "requests": entries,
                        "next_since": entries[-1]["seq"] if entries else _int_arg("since", 0)})
