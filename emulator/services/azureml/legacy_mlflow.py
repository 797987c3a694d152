"""MLflow 1.x REST routes that Azure ML's tracking server still answers: ``GET experiments/list``.

Open-source MLflow removed ``experiments/list`` in 2.0 (``search`` replaced it); Azure ML kept it:
its docs still tell MLflow < 2.0 users to call ``mlflow.list_experiments()`` against a workspace,
and its public REST example lists experiments with ``GET .../api/2.0/mlflow/experiments/list``.
Answered from the same store as ``experiments/search``, in the 1.x response shape.
"""

from __future__ import annotations

from flask import Flask, Response, request

from emulator.errors import EmulatorError

_VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
MAX_RESULTS = 1000  # MLflow 1.x's cap for experiments/list


def install(app: Flask, tracking_store) -> None:
    from mlflow.server.handlers import catch_mlflow_exception

    # fidelity: Azure ML workspace
    @app.route("/api/2.0/mlflow/experiments/list", methods=["GET"])
    @catch_mlflow_exception  # a forged page_token: MLflow's 400, not a 500
    def _list_experiments():
        from mlflow.entities import ViewType
        from mlflow.protos.service_pb2 import SearchExperiments
        from mlflow.utils.proto_json_utils import message_to_json

        view = (request.args.get("view_type") or "ACTIVE_ONLY").upper()
        if view not in _VIEW_TYPES:
            raise EmulatorError("INVALID_PARAMETER_VALUE",
                                f"Invalid view_type '{request.args['view_type']}': use one of {', '.join(_VIEW_TYPES)}.")
        raw = request.args.get("max_results")
        try:
            max_results = MAX_RESULTS if raw is None else int(raw)
        except ValueError:
            max_results = 0
        if not 1 <= max_results <= MAX_RESULTS:
            raise EmulatorError("INVALID_PARAMETER_VALUE",
                                f"Invalid value {raw} for parameter 'max_results': it must be between 1 and {MAX_RESULTS}.")
        found = tracking_store().search_experiments(view_type=ViewType.from_string(view.lower()), max_results=max_results,
                                                    page_token=request.args.get("page_token") or None)
        answer = SearchExperiments.Response()  # the same fields as 1.x's ListExperiments.Response
        answer.experiments.extend(e.to_proto() for e in found)
        if found.token:
            answer.next_page_token = found.token
        return Response(message_to_json(answer), mimetype="application/json")
