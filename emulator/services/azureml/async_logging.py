"""Azure ML's asynchronous batch logging (used by the azureml-mlflow plugin).

``POST .../api/2.0/preview/mlflow/runs/log-batch-async`` takes a LogBatch body and answers
``{"batch_tracking_id"}``; ``GET .../runs/get-run-data-status?run_id&batch_tracking_id`` answers
``{"is_complete"}``. The emulator applies the batch synchronously (MLflow's own log-batch
handler, so the same validation), so every batch is complete by the time its id is returned.
"""

from __future__ import annotations

import uuid

from flask import Flask, Response, jsonify, request
from mlflow.exceptions import MlflowException

from emulator.errors import EmulatorError

PREFIX = "/api/2.0/preview/mlflow/runs"


def install(app: Flask) -> None:
    from mlflow.server import handlers

    @app.route(f"{PREFIX}/log-batch-async", methods=["POST"])
    def _log_batch_async():
        answer = handlers._log_batch()
        if answer.status_code != 200:
            return answer  # MLflow's own 4xx JSON error
        return jsonify({"batch_tracking_id": str(uuid.uuid4())})

    @app.route(f"{PREFIX}/get-run-data-status", methods=["GET"])
    def _get_run_data_status():
        run_id = request.args.get("run_id")
        if not run_id:
            raise EmulatorError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'run_id'.")
        try:
            handlers._get_tracking_store().get_run(run_id)
        except MlflowException as exc:  # unknown run -> MLflow's own 404 body
            return Response(exc.serialize_as_json(), status=exc.get_http_status_code(),
                            mimetype="application/json")
        return jsonify({"is_complete": True})
