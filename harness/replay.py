"""Replay a request journal against a fresh workspace and report where the outcome differs.

A journal (``GET /__emulator/requests``, ``emulator requests --json``) holds the MLflow tracking and
registry calls a client made, with their bodies. Replaying sends the same calls, in order, to a
fresh workspace: ids the new workspace hands out (experiments, runs, logged models) replace the
recorded ones in later calls, and a call that met a fault when recorded meets the same fault
again (one-shot rule), so a captured registration bug — e.g. the retried ``model-versions/create``
after a lost answer — happens again and becomes a test.

Replayed: JSON calls under ``/api/2.0/mlflow/`` and ``/api/2.0/preview/mlflow/`` whose request
body was recorded whole, and artifact transfers through the Files API and ``mlflow-artifacts``
(their answers compared by status only). An artifact whose bytes the journal did not keep (binary,
or larger than its body limit) is sent as a stand-in of the recorded size: the Databricks registry
copies a version's files server-side and fails the registration when the source holds none, so
the files must exist, while their content is no outcome the replay compares. Not replayed (listed
as skipped): DBFS, other APIs, and JSON bodies larger than the journal kept. A path with dot
segments, empty segments, backslashes or percent-escapes is refused before any of that: ``requests``
would normalise ``/api/2.0/mlflow/../../../__emulator/link`` into an admin call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import requests

from harness import faults

_AZURE_SCOPE = re.compile(
    r"^/mlflow/v[12]\.0/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/[^/]+(?=/|$)", re.IGNORECASE)
API_PREFIXES = ("/api/2.0/mlflow/", "/api/2.0/preview/mlflow/")
ARTIFACT_PREFIXES = ("/api/2.0/fs/files/", "/api/2.0/fs/directories/", "/api/2.0/mlflow-artifacts/artifacts/")
STAND_IN_MAX_BYTES = 256 * 1024 * 1024  # a bigger artifact is skipped rather than held in memory
# Values the server chooses (ids, and the random run name it gives a run created without one).
ID_KEYS = {"run_id", "run_uuid", "experiment_id", "experiment_ids", "model_id", "source_run_id", "run_name"}
# Leaves compared between the recorded and the replayed answer (ids and times differ by design).
# A model version's registration state (``status``, ``status_message``), its stage and aliases are
# outcomes too: a replay that registers the same version but leaves it FAILED_REGISTRATION differs.
OUTCOME_KEYS = {"version", "name", "error_code", "key", "value", "lifecycle_stage", "current_stage",
                "status", "status_message", "stage", "alias", "aliases"}
EFFECT_FIELDS = ("status", "error_code", "message", "retry_after", "delay_s", "drop", "after_commit",
                 "hold_pending_s", "fail_registration")
DROPPED = "dropped"


def load(path) -> list[dict]:
    with open(path) as fh:
        data = json.load(fh)
    entries = data["requests"] if isinstance(data, dict) else data
    return sorted(entries, key=lambda e: e["seq"])


def route(path: str) -> str:
    scoped = _AZURE_SCOPE.match(path)
    return path[scoped.end():] or "/" if scoped else path


def role_of_journal(entries: list[dict]) -> str:
    return "azureml" if any(_AZURE_SCOPE.match(e["path"]) for e in entries) else "databricks"


# The characters MLflow's routes use (names and ids travel in the query or body), and ( ) of Azure resource groups.
_PLAIN_PATH = re.compile(r"^(/[A-Za-z0-9_.~()-]+)+/?$")


def path_problem(path: str) -> str | None:
    """Why ``path`` could reach another route than it names once a client or server normalises it."""
    if not _PLAIN_PATH.match(path):
        return "path has an escape, backslash or empty segment"
    if any(seg in (".", "..") for seg in path.split("/")):
        return "path has a dot segment"
    return None


def why_skipped(entry: dict) -> str | None:
    problem = path_problem(entry["path"])
    if problem:
        return problem
    path = route(entry["path"])
    if path.startswith(ARTIFACT_PREFIXES):
        if entry["request"].get("size", 0) > STAND_IN_MAX_BYTES and "body" not in entry["request"]:
            return f"artifact larger than {STAND_IN_MAX_BYTES} bytes and not recorded"
        return None
    if not path.startswith(API_PREFIXES):
        return "not an MLflow tracking or registry call"
    if entry["request"].get("body_omitted"):
        return f"request body not recorded ({entry['request']['body_omitted']})"
    return None


class IdMap:
    """Recorded id -> the id the replay workspace gave the same object."""

    def __init__(self):
        self.ids: dict[str, str] = {}

    def learn(self, recorded, replayed) -> None:
        if isinstance(recorded, dict) and isinstance(replayed, dict):
            for key in recorded.keys() & replayed.keys():
                old, new = recorded[key], replayed[key]
                if key in ID_KEYS and isinstance(old, str) and isinstance(new, str) and old != new:
                    self.ids[old] = new
                else:
                    self.learn(old, new)
        elif isinstance(recorded, list) and isinstance(replayed, list):
            for old, new in zip(recorded, replayed):
                self.learn(old, new)

    def text(self, value: str) -> str:
        if value in self.ids:
            return self.ids[value]
        if "/" in value:  # artifact URIs name experiment and run ids as path segments
            return "/".join(self.ids.get(seg, seg) for seg in value.split("/"))
        return value

    def apply(self, value):
        if isinstance(value, dict):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        return self.text(value) if isinstance(value, str) else value


def _outcome(body, prefix="") -> dict:
    out = {}
    if isinstance(body, dict):
        for key, value in body.items():
            here = f"{prefix}.{key}" if prefix else key
            if key in OUTCOME_KEYS and not isinstance(value, (dict, list)):
                out[here] = value
            elif key in OUTCOME_KEYS and isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value):
                out[here] = sorted(map(str, value))  # a version's aliases: a set of names
            else:
                out.update(_outcome(value, here))
    elif isinstance(body, list):
        for i, value in enumerate(body):
            out.update(_outcome(value, f"{prefix}[{i}]"))
    return out


def _json(text: str | None):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


@dataclass
class Step:
    seq: int
    method: str
    path: str
    recorded: int | str | None
    replayed: int | str | None
    fault: int | None = None
    differences: list[str] = field(default_factory=list)


@dataclass
class Report:
    role: str
    steps: list[Step] = field(default_factory=list)
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def differing(self) -> list[Step]:
        return [s for s in self.steps if s.differences]

    def summary(self) -> str:
        lines = [f"replayed {len(self.steps)} calls on {self.role} ({len(self.skipped)} skipped): "
                 + (f"{len(self.differing)} differ" if self.differing else "same outcome")]
        for s in self.steps:
            mark = "DIFF" if s.differences else "same"
            fault = f" [fault re-injected: #{s.fault}]" if s.fault else ""
            lines.append(f"  {mark} #{s.seq} {s.method} {s.path}: recorded {s.recorded}, replayed {s.replayed}{fault}")
            lines += [f"       {d}" for d in s.differences]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"role": self.role, "differing": len(self.differing),
                "steps": [s.__dict__ for s in self.steps],
                "skipped": [{"seq": q, "path": p, "why": w} for q, p, w in self.skipped]}


def _recorded_status(entry: dict):
    fault = entry.get("fault") or {}
    if fault.get("drop") or fault.get("after_commit") == "drop":
        return DROPPED
    return entry["status"]


def _request_body(entry: dict, path: str, ids: IdMap) -> dict:
    """The ``requests`` arguments that resend the recorded body (ids remapped in JSON calls)."""
    recorded = entry["request"]
    if path.startswith(ARTIFACT_PREFIXES):
        if "body" in recorded:
            data = recorded["body"].encode()
        else:
            data = bytes(recorded.get("size", 0))  # stand-in: see the module docstring
        headers = {"Content-Type": recorded["content_type"]} if recorded.get("content_type") else {}
        return {"data": data if data or entry["method"] in ("PUT", "POST") else None, "headers": headers}
    body = _json(recorded.get("body"))
    return {"json": ids.apply(body) if body is not None else None}


def replay(entries: list[dict], ws, with_faults: bool = True) -> Report:
    """Send the journal's replayable calls to ``ws`` (a workspace handle: ``url``, ``token``, and
    ``tracking_uri`` for Azure ML) in order; compare each answer with the recorded one."""
    role = "azureml" if hasattr(ws, "tracking_uri") else "databricks"
    base = ws.tracking_uri if role == "azureml" else ws.url
    report, ids = Report(role), IdMap()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ws.token}"
    for entry in entries:
        why = why_skipped(entry)
        if why:
            report.skipped.append((entry["seq"], entry["path"], why))
            continue
        # Logged-model ids travel in the path (``logged-models/<id>``, ``.../<id>/tags``).
        path = ids.text(route(entry["path"]))
        if path_problem(path):  # an id the replay workspace handed out must not make a path reach elsewhere
            report.skipped.append((entry["seq"], entry["path"], f"remapped {path_problem(path)}"))
            continue
        query = [(k, ids.text(v)) for k, v in parse_qsl(entry.get("query") or "", keep_blank_values=True)]
        rule = None
        if with_faults and entry.get("fault"):
            effect = {k: v for k, v in entry["fault"].items() if k in EFFECT_FIELDS and v not in (None, False, 0.0)}
            rule = faults.add_fault(ws, entry["method"], path, times=1, **effect)
        try:
            answer = session.request(entry["method"], f"{base}{path}", params=query, timeout=300,
                                     **_request_body(entry, path, ids))
            status, text = answer.status_code, answer.text
        except requests.ConnectionError:
            status, text = DROPPED, None
        finally:
            if rule is not None:
                rule.remove()
        step = Step(entry["seq"], entry["method"], path, _recorded_status(entry), status, rule.id if rule else None)
        recorded_body, replayed_body = _json(entry["response"].get("body")), _json(text)
        if step.recorded != step.replayed:
            step.differences.append(f"status: recorded {step.recorded}, replayed {step.replayed}")
        # An artifact's content is no outcome (it may be a stand-in): its status is.
        if recorded_body is not None and replayed_body is not None and not path.startswith(ARTIFACT_PREFIXES):
            ids.learn(recorded_body, replayed_body)
            want, got = ids.apply(_outcome(recorded_body)), _outcome(replayed_body)
            for key in sorted(want.keys() | got.keys()):
                if want.get(key) != got.get(key):
                    step.differences.append(f"{key}: recorded {want.get(key)!r}, replayed {got.get(key)!r}")
        report.steps.append(step)
    return report
