"""Two views of the same artifact store: ``azureml://`` for the azureml-mlflow plugin, ``mlflow-artifacts:/``
for everyone else.

Clients see MLflow's own URIs (``mlflow-artifacts:/<exp>/<run>/artifacts``, logged models
``mlflow-artifacts:/<exp>/models/<m-id>/artifacts``, ``<exp>`` the experiment's GUID:
experiment_id_view.py, which runs inside this view): vanilla clients, the UI and the Databricks
mirror use them. Under an ``azureml://`` tracking URI MLflow refuses ``mlflow-artifacts:/`` URIs, and
the plugin stores artifacts through run history + Blob instead, so for the plugin (over HTTPS, its
User-Agent carries ``azureml-mlflow/``) MLflow API answers are rewritten to
``azureml://experiments/<experiment name>/runs/<run-or-model-id>/artifacts`` (as the service
writes them) and its requests (e.g. ``model-versions/create`` sources) rewritten back through the
run's experiment. Both name the same files (run_history.py).
Models registered from a local folder: ``azureml://artifacts/LocalUpload/<container>/<path>`` is
``mlflow-artifacts:/LocalUpload/<container>/<path>`` in the store (local_uploads.py).
"""

from __future__ import annotations

import io
import re
from urllib.parse import quote

from emulator.pipeline.buffered_answer import buffered

PLUGIN_AGENT = "azureml-mlflow/"
MAX_BODY = 64 * 1024**2

_GUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_GUID = "(" + _GUID_TEXT + ")"  # experiment_id_view's GUIDs
# a run: its GUID (run_guids.py, as answers name it) or the store's 32 hex (still taken inward)
_RUN = "(" + _GUID_TEXT + r"|[0-9a-f]{32})"
_OWNER = r"(?:(m-[0-9a-f]+)|" + _RUN + ")"
_TO_AZURE = re.compile(r"mlflow-artifacts:/" + _GUID + r"/(?:models/(m-[0-9a-f]+)|" + _RUN + r")/artifacts(?=[/\"?]|$)")
# <exp>: the experiment's name as the service writes it; a GUID (or anything else) is read the same
_TO_STORE = re.compile(r"azureml://experiments/([^/\"?#\\]+)/runs/" + _OWNER + r"/artifacts(?=[/\"?]|$)")
# Models registered from a local folder (local_uploads.py): the container's files, same bytes.
_UPLOAD_TO_AZURE = re.compile(r"mlflow-artifacts:/(?=LocalUpload/[A-Za-z0-9])")
_UPLOAD_TO_STORE = re.compile(r"azureml://artifacts/(?=LocalUpload/[A-Za-z0-9])")


def uri_name(experiment_name: str) -> str:
    """The plugin names a path-style (Databricks) experiment by its last segment
    (``get_aml_experiment_name``); quoted, so that the plugin's URI parsing sees one segment."""
    return quote(experiment_name.rstrip("/").rsplit("/", 1)[-1], safe="")


def to_azure(text: str, owners=None) -> str:
    """``owners``: an experiment_guids.Owners; without it the URI names the experiment's GUID."""
    text = _UPLOAD_TO_AZURE.sub("azureml://artifacts/", text)

    def view(m):
        name = owners.name_of(m[1]) if owners else None
        # fidelity: Azure ML experiment ids -- the service's URI names the experiment
        exp = uri_name(name) if name and uri_name(name) else m[1]
        return f"azureml://experiments/{exp}/runs/{m[2] or m[3]}/artifacts"

    return _TO_AZURE.sub(view, text)


def to_store(text: str, owners=None) -> str:
    # fidelity: Azure ML local uploads -- the version's source is azureml://artifacts/LocalUpload/...
    text = _UPLOAD_TO_STORE.sub("mlflow-artifacts:/", text)

    def store(m):
        exp = (owners.guid_of(m[2] or m[3]) if owners else None) or m[1]
        return f"mlflow-artifacts:/{exp}/" + (f"models/{m[2]}" if m[2] else m[3]) + "/artifacts"

    return _TO_STORE.sub(store, text)


def is_plugin_request(environ) -> bool:
    # fidelity: Azure ML real clients -- the plugin view is per request (HTTPS + plugin User-Agent)
    return (environ.get("wsgi.url_scheme") == "https"
            and PLUGIN_AGENT in environ.get("HTTP_USER_AGENT", "")
            and "/api/2.0/" in environ.get("PATH_INFO", "")
            and "/mlflow-artifacts/" not in environ.get("PATH_INFO", ""))


class ArtifactViewMiddleware:
    def __init__(self, wsgi_app, owners_for=lambda: None):
        self.wsgi_app = wsgi_app
        self.owners_for = owners_for  # () -> experiment_guids.Owners for one request

    def __call__(self, environ, start_response):
        if not is_plugin_request(environ):
            return self.wsgi_app(environ, start_response)
        owners = self.owners_for()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if 0 < length <= MAX_BODY and "json" in environ.get("CONTENT_TYPE", "json"):
            body = to_store(environ["wsgi.input"].read(length).decode("utf-8", "surrogateescape"), owners)
            raw = body.encode("utf-8", "surrogateescape")
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))

        answer = buffered(self.wsgi_app, environ)
        if "json" in answer.content_type:
            answer.replace_body(to_azure(answer.body.decode("utf-8", "surrogateescape"), owners)
                                .encode("utf-8", "surrogateescape"))
        return answer.send(start_response)
