"""Two views of the same artifact store: ``azureml://`` for the azureml-mlflow plugin, ``mlflow-artifacts:/``
for everyone else.

The store keeps MLflow's own URIs (``mlflow-artifacts:/<exp>/<run>/artifacts``, logged models
``mlflow-artifacts:/<exp>/models/<m-id>/artifacts``): vanilla clients, the UI and the Databricks
mirror use them. Under an ``azureml://`` tracking URI MLflow refuses ``mlflow-artifacts:/`` URIs, and
the plugin stores artifacts through run history + Blob instead, so for the plugin (over HTTPS, its
User-Agent carries ``azureml-mlflow/``) MLflow API answers are rewritten to
``azureml://experiments/<exp>/runs/<run-or-model-id>/artifacts`` and its requests (e.g.
``model-versions/create`` sources) rewritten back. Both name the same files (run_history.py).
Models registered from a local folder: ``azureml://artifacts/LocalUpload/<container>/<path>`` is
``mlflow-artifacts:/LocalUpload/<container>/<path>`` in the store (local_uploads.py).
"""

from __future__ import annotations

import io
import re

PLUGIN_AGENT = "azureml-mlflow/"
MAX_BODY = 64 * 1024**2

_EXP = r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"  # a GUID (experiment_id_view)
_TO_AZURE = re.compile(r"mlflow-artifacts:/" + _EXP + r"/(?:models/(m-[0-9a-f]+)|([0-9a-f]{32}))/artifacts(?=[/\"?]|$)")
_TO_STORE = re.compile(r"azureml://experiments/" + _EXP + r"/runs/(?:(m-[0-9a-f]+)|([0-9a-f]{32}))/artifacts(?=[/\"?]|$)")
# Models registered from a local folder (local_uploads.py): the container's files, same bytes.
_UPLOAD_TO_AZURE = re.compile(r"mlflow-artifacts:/(?=LocalUpload/[A-Za-z0-9])")
_UPLOAD_TO_STORE = re.compile(r"azureml://artifacts/(?=LocalUpload/[A-Za-z0-9])")


def to_azure(text: str) -> str:
    text = _UPLOAD_TO_AZURE.sub("azureml://artifacts/", text)
    return _TO_AZURE.sub(lambda m: f"azureml://experiments/{m[1]}/runs/{m[2] or m[3]}/artifacts", text)


def to_store(text: str) -> str:
    # fidelity: Azure ML local uploads -- the version's source is azureml://artifacts/LocalUpload/...
    text = _UPLOAD_TO_STORE.sub("mlflow-artifacts:/", text)
    return _TO_STORE.sub(lambda m: f"mlflow-artifacts:/{m[1]}/" + (f"models/{m[2]}" if m[2] else m[3])
                         + "/artifacts", text)


def is_plugin_request(environ) -> bool:
    # fidelity: Azure ML real clients -- the plugin view is per request (HTTPS + plugin User-Agent)
    return (environ.get("wsgi.url_scheme") == "https"
            and PLUGIN_AGENT in environ.get("HTTP_USER_AGENT", "")
            and "/api/2.0/" in environ.get("PATH_INFO", "")
            and "/mlflow-artifacts/" not in environ.get("PATH_INFO", ""))


class ArtifactViewMiddleware:
    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if not is_plugin_request(environ):
            return self.wsgi_app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if 0 < length <= MAX_BODY and "json" in environ.get("CONTENT_TYPE", "json"):
            body = to_store(environ["wsgi.input"].read(length).decode("utf-8", "surrogateescape"))
            raw = body.encode("utf-8", "surrogateescape")
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))

        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"], captured["exc_info"] = status, headers, exc_info
            return lambda data: captured.setdefault("written", []).append(data)

        result = self.wsgi_app(environ, capture)
        try:
            chunks = captured.pop("written", []) + list(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        headers = captured["headers"]
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        body = b"".join(chunks)
        if "json" in content_type:
            body = to_azure(body.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]
