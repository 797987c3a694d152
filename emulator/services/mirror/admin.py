"""Admin routes on the Databricks workspace (token-checked like every other call).

* ``POST /__emulator/link``   ``{"azureml_url": ..., "azureml_token": ...}``: link (the portal button)
* ``POST /__emulator/unlink``
* ``GET  /__emulator/mirror``: linked?, backlog, dead letters, delivered count, last error
* ``GET  /__emulator/mirror/runs/<databricks_run_id>``: ``{"azureml_run_id", "azureml_experiment_id"}``
"""

from __future__ import annotations

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError


def install(app: Flask, mirror) -> None:
    @app.route("/__emulator/link", methods=["POST"])
    def _link():
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            raise EmulatorError("MALFORMED_REQUEST", 'Expected a JSON object {"azureml_url": ..., "azureml_token": ...}')
        return jsonify(mirror.link(body.get("azureml_url"), body.get("azureml_token")))

    @app.route("/__emulator/unlink", methods=["POST"])
    def _unlink():
        return jsonify(mirror.unlink())

    @app.route("/__emulator/mirror", methods=["GET"])
    def _mirror_status():
        return jsonify(mirror.status())

    @app.route("/__emulator/mirror/runs/<run_id>", methods=["GET"])
    def _mirror_run(run_id: str):
        target = (mirror.outbox.get_meta("target") or {}).get("url")
        mapped = mirror.outbox.run_map(run_id, target) if target else None
        if mapped:
            return jsonify({k: mapped[k] for k in ("azureml_run_id", "azureml_experiment_id")})
        if mirror.outbox.is_mirrored_run(run_id):
            raise EmulatorError("RESOURCE_DOES_NOT_EXIST",
                                f"Run {run_id} is not in Azure ML yet (mirror backlog: "
                                f"{mirror.outbox.summary()['backlog']}).", 404)
        raise EmulatorError("RESOURCE_DOES_NOT_EXIST",
                            f"Run {run_id} is not mirrored: it was not created while the workspace was linked.", 404)
