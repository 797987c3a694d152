"""One online deployment's inference server: a child process of the Azure ML workspace server.

Two steps, two processes (emulator.services.azureml.deployment_pool starts both):

* ``--fetch models:/<name>/<v> --dest DIR`` copies the registered version into DIR over the
  workspace's MLflow API (this process holds the workspace token; it runs no model code);
* ``--ready-fd N --parent-pid P``, started in that model directory with an environment that holds
  no emulator secret and no state dir path, reads the deployment's secret from stdin, loads the
  model once (``mlflow.pyfunc.load_model``, the current environment: ``env_manager=local``), serves
  ``POST /score`` on a free loopback port to callers that present that secret only, and writes
  ``{"port", "pid"}`` to fd N. Its own process: a model that crashes or hangs takes down only this
  deployment, never the workspace. It exits when the workspace server (its parent) is gone.

Payloads, as Azure ML's MLflow inference server takes them (no scoring script):

* ``{"input_data": {"columns": [...], "index": [...], "data": [[...]]}}``: a DataFrame (split);
* ``{"input_data": [[...]]}``: a tensor (``numpy.array``), or rows for a column-based signature;
* ``{"input_data": {"name": [...], ...}}``: named tensors / columns;
* MLflow's own ``dataframe_split`` / ``dataframe_records`` / ``inputs`` / ``instances``.

``input_data`` answers the predictions as a JSON list; MLflow's formats answer MLflow's
``{"predictions": ...}``. The signature is enforced by pyfunc as in the real server: a missing
column is a 400 naming it. Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import shutil
import sys
import threading
import time
import traceback
from http import HTTPStatus

from emulator.settings import WAITRESS_CONNECTION_LIMITS

_logger = logging.getLogger("azureml.inference")


_INPUT_FIELDS = {"input_data", "dataframe_split", "dataframe_records", "inputs", "instances"}
_NO_INPUT = ("The request body must be a JSON object with 'input_data' (or MLflow's 'dataframe_split', "
             "'dataframe_records', 'inputs', 'instances').")


def _error(start_response, status: str, code: str, message: str):
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _input_data_to_model_input(input_data, input_schema):
    """Azure ML's ``input_data`` forms -> what pyfunc.predict takes."""
    import numpy as np
    import pandas as pd

    tensor_schema = input_schema is not None and input_schema.is_tensor_spec()
    if isinstance(input_data, dict) and "data" in input_data and not tensor_schema:
        return pd.DataFrame(input_data["data"], columns=input_data.get("columns"), index=input_data.get("index"))
    if isinstance(input_data, dict):
        if tensor_schema or input_schema is None:
            return {k: np.asarray(v) for k, v in input_data.items()}
        return pd.DataFrame(input_data)
    if isinstance(input_data, list):
        if input_data and all(isinstance(row, dict) for row in input_data):
            return pd.DataFrame(input_data)
        if tensor_schema or input_schema is None:
            return np.asarray(input_data)
        return pd.DataFrame(input_data)
    raise ValueError("'input_data' must be an object ({\"columns\", \"index\", \"data\"} or named tensors) "
                     f"or a list, got {type(input_data).__name__}")


class ScoringApp:
    def __init__(self, model, secret: str):
        self.model = model
        self.input_schema = model.metadata.get_input_schema()
        self._expected = f"Bearer {secret}".encode()

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        # fidelity: Security promises — only the workspace (which holds the deployment's secret) calls in
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), self._expected):
            return _error(start_response, "401 Unauthorized", "Unauthorized",
                          "Call the endpoint's scoring URI; the inference server answers only its workspace.")
        if method == "GET" and path in ("/", "/health"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"Healthy"]
        if path != "/score":
            return _error(start_response, "404 Not Found", "NotFound", f"No route {method} {path}")
        if method != "POST":
            return _error(start_response, "405 Method Not Allowed", "MethodNotAllowed", "Use POST /score")
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0) or -1)
        started = time.monotonic()
        try:
            status, body = self.score(raw)
        except Exception as exc:  # the model's own failure: the caller's input, as the real server says
            _logger.exception("scoring failed")
            status, body = 400, {"error": {"code": "BadRequest", "message": _message(exc)}}
        _logger.info("POST /score %s %.1f ms", status, (time.monotonic() - started) * 1000)
        data = json.dumps(body, default=str).encode() if not isinstance(body, bytes) else body
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def score(self, raw: bytes):
        from mlflow.pyfunc.scoring_server import invocations

        try:
            payload = json.loads(raw or b"null")
        except ValueError as exc:
            return 400, {"error": {"code": "BadRequest", "message": f"The request body is not valid JSON: {exc}"}}
        if not isinstance(payload, dict) or not set(payload) & _INPUT_FIELDS:
            # fidelity: Online endpoints - scoring payloads
            # MLflow's own answer for {} lists only its four fields; Azure ML's input_data is the main one.
            return 400, {"error": {"code": "BadRequest", "message": _NO_INPUT}}
        if "input_data" in payload:
            # fidelity: Online endpoints - scoring payloads
            model_input = _input_data_to_model_input(payload["input_data"], self.input_schema)
            params = payload.get("params")
            predictions = self.model.predict(model_input, params=params) if params else self.model.predict(model_input)
            return 200, _jsonable(predictions).encode()
        answer = invocations(raw.decode("utf-8"), "application/json", self.model, self.input_schema)
        if answer.status == 200:
            return 200, answer.response.encode()
        return answer.status, {"error": {"code": "BadRequest", "message": answer.response}}


def _jsonable(predictions) -> str:
    from io import StringIO

    from mlflow.pyfunc.scoring_server import unwrapped_predictions_to_json

    out = StringIO()
    unwrapped_predictions_to_json(predictions, out)
    return out.getvalue()


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {message}" if not getattr(exc, "message", None) else message


PRIVATE_PREFIX = "azureml-deployment-"


def _orphaned(private_dir: str | None) -> None:
    # The workspace (which removes the directory when it stops a deployment) is gone: nobody else
    # will, so the model's private copy goes with its server.
    if private_dir and os.path.basename(os.path.normpath(private_dir)).startswith(PRIVATE_PREFIX):
        shutil.rmtree(private_dir, ignore_errors=True)
    os._exit(0)


def _watch_parent(pid: int, private_dir: str | None = None) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except OSError:
            _orphaned(private_dir)
        if os.getppid() != pid:
            _orphaned(private_dir)


def fetch(model_uri: str, dest: str) -> int:
    """Copy the registered version into ``dest`` (the tracking URI and token are in this process's environment)."""
    import mlflow.artifacts

    _logger.info("Azure ML inference server (emulated): downloading model %s", model_uri)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dest)
    except Exception:
        _logger.error("Failed to download model %s:\n%s", model_uri, traceback.format_exc())
        return 1
    return 0


def _logging_to_stdout() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(secret: str, ready_fd: int, parent_pid: int, private_dir: str | None, threads: int = 4) -> int:
    """Load the model in the working directory and serve it; the port goes to ``ready_fd`` as soon
    as the model is loaded and the socket bound."""
    threading.Thread(target=_watch_parent, args=(parent_pid, private_dir), daemon=True).start()

    import mlflow.pyfunc
    from waitress import create_server

    _logger.info("Azure ML inference server (emulated): loading the model")
    started = time.monotonic()
    try:
        model = mlflow.pyfunc.load_model(os.getcwd())  # the working directory holds the model, nothing else
    except BaseException:
        _logger.error("Failed to load the model:\n%s", traceback.format_exc())
        return 1
    _logger.info("Model loaded in %.2f s; signature inputs: %s", time.monotonic() - started,
                 model.metadata.get_input_schema())
    server = create_server(ScoringApp(model, secret), host="127.0.0.1", port=0, threads=threads,
                           ident="azureml-inference", **WAITRESS_CONNECTION_LIMITS)
    with os.fdopen(ready_fd, "w") as ready:
        json.dump({"port": server.effective_port, "pid": os.getpid()}, ready)
    _logger.info("Listening on 127.0.0.1:%s; POST /score", server.effective_port)
    sys.stdout.flush()
    server.run()
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fetch", metavar="MODEL_URI")
    parser.add_argument("--dest")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--private-dir", help="removed if the workspace dies first")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--zygote-fd", type=int, help="serve fork requests on this socket (inference_zygote)")
    args = parser.parse_args(argv)
    _logging_to_stdout()
    if args.zygote_fd is not None:
        from emulator.services.azureml import inference_zygote

        return inference_zygote.run(args.zygote_fd, args.parent_pid,
                                    inference_zygote.Steps(fetch=fetch, serve=serve, reset_logging=_logging_to_stdout))
    if args.fetch:
        return fetch(args.fetch, args.dest)
    secret = sys.stdin.readline().strip()  # not argv or the environment: neither shows it to others
    if not secret or args.ready_fd is None:
        parser.error("serving needs --ready-fd and the deployment's secret on stdin")
    return serve(secret, args.ready_fd, args.parent_pid, args.private_dir, args.threads)


if __name__ == "__main__":
    sys.exit(main())
