"""Azure ML's experiment GUIDs at the HTTP edge of the workspace (experiment_guids.py).

Inside, MLflow's server and the store keep their integer ids; every MLflow API request (query
``experiment_id(s)``, JSON ``experiment_id(s)`` anywhere, artifact URIs, trace locations, the
OTLP ``x-mlflow-experiment-id`` header, the proxied artifact paths ``mlflow-artifacts/artifacts/
<exp>/...``) is read back from GUIDs, and every JSON answer of the MLflow API carries GUIDs.
Run ids the same way, without a look-up (run_guids.py): hyphenated GUIDs outside (run id fields,
run-id tags, ``runs:/`` and artifact URIs, artifact proxy paths, run-id comparisons in search
filters), MLflow's 32 hex digits inside; an error message naming a run names it as it was sent.

An id that names no experiment of the workspace (``"1"`` from a local store, another workspace's
GUID) is not passed on (``"0"``, MLflow's id for "no experiment set", still names the Default one): it is marked on the environ and refused 404 after the token check
(``install``), so an unauthenticated caller still gets its 401 and learns nothing.
"""

from __future__ import annotations

import io
import json
import re
from urllib.parse import parse_qsl, urlencode

from emulator.pipeline.buffered_answer import buffered
from emulator.services.azureml import run_guids
from emulator.services.azureml.experiment_guids import ExperimentGuids

UNKNOWN = "emulator.services.azureml.unknown_experiment"
# MLflow clients send "0" for a run started without an experiment (mlflow.start_run() after only
# set_tracking_uri); the run goes to the workspace's Default experiment.
DEFAULT_EXPERIMENT = "0"
MAX_BODY = 16 * 1024**2  # body_limits' cap for JSON APIs: anything larger is refused there

_MLFLOW_API = re.compile(r"^/(?:ajax-)?api/[23]\.0/(?:preview/)?mlflow/|^/(?:ajax-api/)?graphql$")
_ARTIFACTS = re.compile(r"^/(?:ajax-)?api/2\.0/mlflow-artifacts/(?:artifacts|mpu/[a-z]+)(?=/|$)")
_OTLP = "/v1/traces"
_OTLP_HEADER = "HTTP_X_MLFLOW_EXPERIMENT_ID"

_ID_KEYS = {"experiment_id", "experimentId"}
_LIST_KEYS = {"experiment_ids", "experimentIds"}
_URI_KEYS = {"artifact_uri", "artifact_location", "source", "storage_location", "artifactUri",
             "artifactLocation", "mlflow.artifactLocation"}
_STORE_URI = re.compile(r"^mlflow-artifacts:/(\d+)(?=/|$)")
_GUID_SHAPE = re.compile(r"[0-9a-fA-F-]{36}")
_GUID_URI = re.compile(r"^mlflow-artifacts:/([0-9a-fA-F-]{36})(?=/|$)")

# Not mlflow.rootRunId: a Databricks tag (run_lineage.py) that only mirrored runs carry here, naming
# a Databricks run; the mirror keeps Databricks' tags byte for byte.
_RUN_KEYS = {"run_id", "run_uuid", "runId", "runUuid", "source_run_id", "sourceRunId",
             "mlflow.parentRunId", "mlflow.sourceRun"}
_RUN_LIST_KEYS = {"run_ids", "runIds"}
_RUN_TAGS = {"mlflow.parentRunId", "mlflow.sourceRun"}  # {"key", "value"} pairs
_FILTER_KEYS = {"filter"}
_RUN_URI_IN = re.compile(r"^(?:mlflow-artifacts:/[^/]+/|runs:/)(" + run_guids.GUID_TEXT + r")(?=/|$)")
_RUN_URI_OUT = re.compile(r"^(?:mlflow-artifacts:/[^/]+/|runs:/)([0-9a-f]{32})(?=/|$)")
_RUN_QUERY = ("run_id", "run_uuid", "run_ids")
_GET_ARTIFACT = re.compile(r"^/(?:ajax-api/2\.0/mlflow/)?get-artifact$")


class _Request:
    """One request's translation: memoised store look-ups, and the first id that names nothing."""

    def __init__(self, guids_for):
        self.guids: ExperimentGuids = guids_for()
        self.unknown: str | None = None
        self.runs_sent: dict[str, str] = {}  # store hex -> the GUID the client sent

    def run_in(self, value):
        found = run_guids.internal(value)
        if found is not value:
            self.runs_sent[found] = value
        return found

    @staticmethod
    def run_out(value):
        # fidelity: Azure ML experiment ids -- run ids: answers name runs by hyphenated GUID
        return run_guids.external(value)

    def filter_in(self, value):
        return run_guids.internal_filter(value, self.runs_sent)

    def inward(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            return value  # MLflow's own validation answers wrong types and missing values
        if str(value) == DEFAULT_EXPERIMENT:
            # fidelity: Azure ML experiment ids -- "0" still names the Default experiment
            return value
        found = self.guids.internal(str(value))
        if found is None:
            self.unknown = self.unknown or str(value)
            return value
        return found

    def outward(self, value):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return self.guids.external(str(value)) or value
        return value

    def uri_in(self, uri):
        m = _GUID_URI.match(uri) if isinstance(uri, str) else None
        uri = uri[: m.start(1)] + self.inward(m[1]) + uri[m.end(1):] if m else uri
        r = _RUN_URI_IN.match(uri) if isinstance(uri, str) else None
        return uri[: r.start(1)] + self.run_in(r[1]) + uri[r.end(1):] if r else uri

    def uri_out(self, uri):
        return external_run_uri(external_uri(uri, self.guids))

    def message_out(self, message):
        """An error message names a run as the client sent it (e.g. ``Run with id=<GUID> not found``)."""
        for hex_id, sent in self.runs_sent.items():
            message = message.replace(hex_id, sent)
        return message


def external_uri(uri: str, guids: ExperimentGuids) -> str:
    """A store URI (``mlflow-artifacts:/<int>/...``) as clients see it, for answers built outside
    the MLflow API (ARM model assets)."""
    m = _STORE_URI.match(uri) if isinstance(uri, str) else None
    found = guids.external(m[1]) if m else None
    return uri[: m.start(1)] + found + uri[m.end(1):] if found else uri


def external_run_uri(uri: str) -> str:
    """A store URI's run segment (``runs:/<hex>/...``, ``mlflow-artifacts:/<exp>/<hex>/...``) as
    clients see it, for answers built outside the MLflow API (ARM model assets)."""
    r = _RUN_URI_OUT.match(uri) if isinstance(uri, str) else None
    return uri[: r.start(1)] + run_guids.external(r[1]) + uri[r.end(1):] if r else uri


def _walk(value, ids, uris, runs, filters=None):
    """``value`` with experiment ids mapped by ``ids``, artifact URIs by ``uris``, run ids by
    ``runs`` and search filters (requests only) by ``filters``."""
    if isinstance(value, list):
        return [_walk(v, ids, uris, runs, filters) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, v in value.items():
        if key in _ID_KEYS:
            out[key] = ids(v)
        elif key in _LIST_KEYS and isinstance(v, list):
            out[key] = [ids(x) for x in v]
        elif key in _URI_KEYS:
            out[key] = uris(v)
        elif key in _RUN_KEYS:
            out[key] = runs(v)
        elif key in _RUN_LIST_KEYS and isinstance(v, list):
            out[key] = [runs(x) for x in v]
        elif key in _FILTER_KEYS and filters is not None and isinstance(v, str):
            out[key] = filters(v)
        else:
            out[key] = _walk(v, ids, uris, runs, filters)
    # V2 trace tags are [{"key": "mlflow.artifactLocation", "value": ...}]
    if out.get("key") == "mlflow.artifactLocation" and "value" in out:
        out["value"] = uris(out["value"])
    # run tags naming a run: [{"key": "mlflow.parentRunId", "value": <run id>}], set-tag bodies
    if out.get("key") in _RUN_TAGS and "value" in out:
        out["value"] = runs(out["value"])
    return out


def _run_segment_in(tail: str, req: _Request) -> str:
    """``<run>/artifacts/...`` after an artifact path's experiment: the run's GUID as the store's hex."""
    run, sep, rest = tail.partition("/")
    return req.run_in(run) + sep + rest


class ExperimentIdView:
    def __init__(self, wsgi_app, guids_for):
        self.wsgi_app = wsgi_app
        self.guids_for = guids_for  # () -> ExperimentGuids reading the store (one per request)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if _MLFLOW_API.match(path):
            req = _Request(self.guids_for)
            self._query(environ, req, ("experiment_id", "experiment_ids"))
            self._body(environ, req)
            self._mark(environ, req)
            if "artifact" in path:  # file downloads and listings: no ids in them, not buffered
                return self.wsgi_app(environ, start_response)
            return self._answer(environ, start_response, req)
        if _ARTIFACTS.match(path):
            req = _Request(self.guids_for)
            # fidelity: Azure ML experiment ids -- artifact paths start with the experiment's GUID
            environ["PATH_INFO"] = self._artifact_path(path, _ARTIFACTS.match(path).end(), req)
            self._query(environ, req, ("path",), artifact=True)
            self._mark(environ, req)
        elif _GET_ARTIFACT.match(path):  # the UI's file downloads: ?run_uuid=<GUID>&path=
            self._query(environ, _Request(self.guids_for), ())
        elif path == _OTLP and environ.get(_OTLP_HEADER):
            req = _Request(self.guids_for)
            environ[_OTLP_HEADER] = req.inward(environ[_OTLP_HEADER])
            self._mark(environ, req)
        return self.wsgi_app(environ, start_response)

    @staticmethod
    def _mark(environ, req: _Request) -> None:
        if req.unknown is not None:
            environ[UNKNOWN] = req.unknown

    @staticmethod
    def _artifact_path(path: str, start: int, req: _Request) -> str:
        first, sep, tail = path[start:].lstrip("/").partition("/")
        if first.isdigit():
            req.unknown = req.unknown or first  # only GUIDs name experiments from outside
            return path
        if not _GUID_SHAPE.fullmatch(first):
            return path  # LocalUpload/... and other roots
        return path[:start] + "/" + req.inward(first) + sep + _run_segment_in(tail, req)

    def _query(self, environ, req: _Request, keys, artifact: bool = False) -> None:
        query = environ.get("QUERY_STRING", "")
        run_keys = () if artifact else _RUN_QUERY + tuple(_FILTER_KEYS)
        if not query or not any(k + "=" in query for k in keys + run_keys):
            return
        pairs = parse_qsl(query, keep_blank_values=True)
        mapped = []
        for k, v in pairs:
            if k in keys and artifact:
                first, sep, tail = v.partition("/")
                if first.isdigit():
                    req.unknown = req.unknown or first
                elif _GUID_SHAPE.fullmatch(first):
                    v = req.inward(first) + sep + _run_segment_in(tail, req)
            elif k in keys and v:
                v = req.inward(v)
            elif k in _RUN_QUERY and not artifact:
                # fidelity: Azure ML experiment ids -- run ids: a GUID (or the store's 32 hex) names the run
                v = req.run_in(v)
            elif k in _FILTER_KEYS and not artifact:
                v = req.filter_in(v)
            mapped.append((k, v))
        if mapped != pairs:
            environ["QUERY_STRING"] = urlencode(mapped)

    @staticmethod
    def _body(environ, req: _Request) -> None:
        if "json" not in environ.get("CONTENT_TYPE", ""):
            return
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if not 0 < length <= MAX_BODY:
            return
        raw = environ["wsgi.input"].read(length)
        try:
            body = json.loads(raw)
            mapped = (_walk(body, req.inward, req.uri_in, req.run_in, req.filter_in)
                      if isinstance(body, (dict, list)) else body)
        except (ValueError, RecursionError):  # MLflow's own parsing answers it 400
            body = mapped = None
        if mapped != body:
            raw = json.dumps(mapped).encode()
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))

    def _answer(self, environ, start_response, req: _Request):
        answer = buffered(self.wsgi_app, environ)
        if "json" in answer.content_type and answer.body:
            try:
                parsed = json.loads(answer.body)
                # fidelity: Azure ML experiment ids -- answers name experiments by GUID
                mapped = (_walk(parsed, req.outward, req.uri_out, req.run_out)
                          if isinstance(parsed, (dict, list)) else parsed)
                if isinstance(mapped, dict) and "error_code" in mapped and isinstance(mapped.get("message"), str):
                    mapped["message"] = req.message_out(mapped["message"])
            except (ValueError, RecursionError):
                parsed = mapped = None
            if mapped != parsed:
                answer.replace_body(json.dumps(mapped).encode())
        return answer.send(start_response)
