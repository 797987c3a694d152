"""The links the MLflow client prints for a Databricks workspace, led to the MLflow UI's pages.

With tracking URI ``databricks`` the client prints ``<host>/ml/experiments/<id>/runs/<run>`` ("View
run ... at") and, in other places, ``<host>/?o=<workspace id>#mlflow/experiments/<id>/runs/<run>``
(``mlflow.utils.databricks_utils._construct_databricks_run_url``). The emulator serves MLflow's own
UI, whose hash router knows ``#/experiments/<id>/runs/<run>``: ``/ml/...`` redirects there, and the
``#mlflow/...`` fragment (never sent to the server) is rewritten by the page itself.
"""

from __future__ import annotations

from flask import Flask, redirect, request

# Served instead of the UI when ``?o=`` marks a Databricks-style link; the fragment only exists in
# the browser, so a script moves ``#mlflow/<route>`` to ``/#/<route>`` (fidelity: "Databricks UI links").
_FRAGMENT_REWRITE = """<!doctype html><meta charset="utf-8"><title>MLflow</title>
<script>
var h = location.hash;
location.replace("./#/" + (h.indexOf("#mlflow/") === 0 ? h.slice(8) : h.replace(/^#\\/?/, "")));
</script>"""


def install(app: Flask) -> None:
    @app.route("/ml/<path:route>", methods=["GET"])
    def _databricks_ui_link(route: str):
        return redirect(f"/#/{route}", code=302)

    @app.before_request
    def _databricks_fragment_link():
        if request.method == "GET" and request.path == "/" and "o" in request.args:
            return _FRAGMENT_REWRITE, 200, {"Content-Type": "text/html; charset=utf-8"}
        return None
