"""ARM long-running operations: ``Azure-AsyncOperation`` status resources for PUT/DELETE/POST.

A create answers 201/200 with the resource in ``Creating``/``Updating`` and the header
``Azure-AsyncOperation: <this server>/subscriptions/<sub>/providers/Microsoft.MachineLearningServices/
locations/<loc>/mfeOperationsStatus/<id>`` (azure-core's ARMPolling polls it until ``Succeeded``,
``Failed`` or ``Canceled``, then GETs the resource); ``Location`` points at ``mfeOperationResults/<id>``
(202 while running). ``Retry-After: 1`` keeps polling quick. Kept in memory: an operation is
only polled while its server runs.
"""

from __future__ import annotations

import threading
import uuid

from flask import Flask, jsonify, request

from emulator.services.azureml.arm_resources import PROVIDER, now_iso
from emulator.services.azureml.azure_errors import arm_error
from emulator.settings import ServerConfig

RETRY_AFTER_S = "1"


class Operations:
    def __init__(self, config: ServerConfig):
        self.config = config
        self._ops: dict[str, dict] = {}
        self._lock = threading.Lock()

    def start(self) -> str:
        op_id = str(uuid.uuid4())
        with self._lock:
            self._ops[op_id] = {"name": op_id, "status": "InProgress", "startTime": now_iso()}
        return op_id

    def finish(self, op_id: str, error: tuple[str, str] | None = None) -> None:
        with self._lock:
            op = self._ops.get(op_id)
            if op is None:
                return
            op["endTime"] = now_iso()
            if error:
                op["status"] = "Failed"
                op["error"] = {"code": error[0], "message": error[1]}
            else:
                op["status"] = "Succeeded"

    def get(self, op_id: str) -> dict | None:
        with self._lock:
            op = self._ops.get(op_id)
            return dict(op) if op else None

    def headers(self, op_id: str) -> dict[str, str]:
        """The LRO headers for an answer; URLs on the listener the client used (plain or TLS)."""
        # fidelity: Online endpoints - LRO
        base = (f"{request.host_url.rstrip('/')}/subscriptions/{self.config.subscription_id}/providers/"
                f"{PROVIDER}/locations/{self.config.location}")
        version = request.args.get("api-version", "2025-12-01")
        return {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op_id}?api-version={version}",
            "Location": f"{base}/mfeOperationResults/{op_id}?api-version={version}",
            "Retry-After": RETRY_AFTER_S,
        }


def install(app: Flask, config: ServerConfig, ops: Operations) -> None:
    prefix = f"/subscriptions/<sub>/providers/{PROVIDER}/locations/<loc>"

    def _find(sub: str, op_id: str):
        if sub.lower() != config.subscription_id.lower():
            return None, arm_error("SubscriptionNotFound", f"The subscription '{sub}' could not be found.", 404)
        op = ops.get(op_id)
        if op is None:
            return None, arm_error("ResourceNotFound", f"Operation '{op_id}' was not found.", 404)
        return op, None

    @app.route(prefix + "/mfeOperationsStatus/<op_id>", methods=["GET"])
    def _operation_status(sub, loc, op_id):
        op, problem = _find(sub, op_id)
        if problem:
            return problem
        op["id"] = request.path
        # fidelity: Online endpoints - LRO (azure-core waits Retry-After of the LAST poll, else its
        # default: 30 s for endpoints, azure-ai-ml's 5 s for deployments)
        headers = {"Retry-After": RETRY_AFTER_S} if op["status"] == "InProgress" else {}
        return jsonify(op), 200, headers

    @app.route(prefix + "/mfeOperationResults/<op_id>", methods=["GET"])
    def _operation_result(sub, loc, op_id):
        op, problem = _find(sub, op_id)
        if problem:
            return problem
        if op["status"] == "InProgress":
            return "", 202, ops.headers(op_id)
        if op["status"] == "Failed":
            return arm_error(op["error"]["code"], op["error"]["message"], 400)
        return "", 204
