"""Named reproductions of registration bugs: each injects one fault with a rule, drives the real
MLflow client against a workspace, and reports what the registry holds afterwards.

``reproduced`` is True when the scenario behaved as documented: for the bug scenarios the bug
appears (so a test can pin it, and a fixed client can be shown not to have it); for the load
scenarios (rate-limit storm, slow registry) the client copes: versions stay contiguous, none lost.

    from harness.fault_scenarios import SCENARIOS, run_scenario
    outcome = run_scenario("duplicate_version_after_lost_response", emulator.services.databricks)
    assert outcome.reproduced, outcome.summary()
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field

from harness import faults

REGISTRY_CREATE = "*/api/2.0/mlflow/model-versions/create"


@dataclass
class Outcome:
    scenario: str
    workspace: str
    reproduced: bool
    bug: str
    expected: str
    observed: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        verdict = "REPRODUCED" if self.reproduced else "NOT REPRODUCED"
        lines = [f"{self.scenario} on {self.workspace}: {verdict} ({self.seconds:.1f}s)", f"  bug: {self.bug}",
                 f"  expected client behaviour: {self.expected}"]
        lines += [f"  {k}: {v}" for k, v in self.observed.items()]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "workspace": self.workspace, "reproduced": self.reproduced,
                "bug": self.bug, "expected": self.expected, "observed": self.observed,
                "seconds": round(self.seconds, 2)}


@dataclass
class Scenario:
    name: str
    bug: str
    expected: str
    roles: tuple[str, ...]
    run: object  # (Setup) -> (reproduced, observed)


@contextlib.contextmanager
def _env(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def role_of(ws) -> str:
    return "azureml" if hasattr(ws, "tracking_uri") else "databricks"


@dataclass
class Setup:
    """A workspace prepared for one scenario: a client, a fresh model name, a registrable source."""

    ws: object
    role: str
    client: object
    name: str
    source: str
    run_id: str

    def register(self, description: str, **kwargs):
        return self.client.create_model_version(self.name, self.source, run_id=self.run_id,
                                                description=description, **kwargs)

    def versions(self) -> list:
        return sorted(self.client.search_model_versions(f"name = '{self.name}'"), key=lambda v: int(v.version))


def _prepare(ws, scenario: str) -> Setup:
    from mlflow import MlflowClient

    role = role_of(ws)
    uri = ws.tracking_uri if role == "azureml" else "databricks"
    client = MlflowClient(uri, uri)
    tag = uuid.uuid4().hex[:8]
    exp_id = client.create_experiment(f"/Shared/fault-scenarios-{scenario}-{tag}")
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "a model's files", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    return Setup(ws, role, client, f"{scenario}-{tag}", f"{run.info.artifact_uri}/model", run.info.run_id)


def _duplicate_after_lost_response(s: Setup):
    s.client.create_registered_model(s.name)
    description = f"one registration {uuid.uuid4().hex[:6]}"
    with faults.inject_fault(s.ws, "POST", REGISTRY_CREATE, body={"name": s.name}, after_commit="status",
                             status=503, times=1) as rule:
        mv = s.register(description)  # one call: the client retries the "failed" create
        hits = rule.hits
    versions = s.versions()
    same = [v.version for v in versions if v.description == description]
    observed = {"client_calls": 1, "returned_version": mv.version, "versions_in_registry": [v.version for v in versions],
                "versions_with_this_description": same, "fault_hits": hits}
    return len(same) == 2 and hits == 1, observed


def _empty_model_after_failed_first_version(s: Setup):
    from mlflow.exceptions import MlflowException

    error = None
    with faults.inject_fault(s.ws, "POST", REGISTRY_CREATE, body={"name": s.name}, status=403,
                             message="Permission denied on the model's source.", times=1):
        try:  # what mlflow.register_model does: the registered model first, then its version
            s.client.create_registered_model(s.name)
            s.register("first version")
        except MlflowException as exc:
            error = f"{exc.error_code}: {exc.message.splitlines()[0]}"
    model = s.client.get_registered_model(s.name)
    versions = s.versions()
    observed = {"client_error": error, "registered_model_exists": model is not None,
                "versions": [v.version for v in versions]}
    return error is not None and model is not None and not versions, observed


def _pending_times_out(s: Setup):
    from mlflow.exceptions import MlflowException

    s.client.create_registered_model(s.name)
    error = None
    started = time.monotonic()
    with faults.inject_fault(s.ws, "POST", REGISTRY_CREATE, body={"name": s.name}, hold_pending_s=10, times=1):
        try:
            s.register("held pending", await_creation_for=3)
        except MlflowException as exc:
            error = exc.message.splitlines()[0]
    waited = time.monotonic() - started
    versions = s.versions()
    observed = {"client_error": error, "waited_s": round(waited, 1),
                "registry_after_timeout": [(v.version, v.status) for v in versions]}
    held = bool(versions) and versions[0].status == "PENDING_REGISTRATION"
    return error is not None and "Exceeded max wait time" in error and held, observed


def _rate_limit_storm(s: Setup):
    from harness.checks.registry import client_target, register_versions

    s.client.create_registered_model(s.name)
    started = time.monotonic()
    with faults.inject_fault(s.ws, "POST", REGISTRY_CREATE, body={"name": s.name}, status=429, retry_after=1,
                             times=12) as rule:
        regs = register_versions(client_target(s.client, s.name, s.source, run_id=s.run_id), 8, concurrency=8)
        hits = rule.hits
    versions = sorted(int(v.version) for v in s.versions())
    observed = {"registrations": 8, "429s_answered": hits, "errors": [r.error for r in regs if r.error],
                "returned_versions": sorted(r.version for r in regs if r.version is not None),
                "versions_in_registry": versions, "seconds": round(time.monotonic() - started, 1)}
    return versions == list(range(1, 9)) and not observed["errors"] and hits == 12, observed


def _slow_registry(s: Setup):
    from harness.checks.registry import client_target, register_versions

    s.client.create_registered_model(s.name)
    was_on = faults.journal_state(s.ws)["enabled"]
    faults.journal(s.ws, True)
    earlier = faults.requests_of(s.ws)
    since = earlier[-1]["seq"] if earlier else 0
    with faults.inject_fault(s.ws, "*", "*/api/2.0/mlflow/model-versions/*", delay_s=2.0) as rule:
        regs = register_versions(client_target(s.client, s.name, s.source, run_id=s.run_id), 4, concurrency=4)
        hits = rule.hits
    calls = [e for e in faults.requests_of(s.ws, since, "/model-versions/") if e.get("fault")]
    faults.journal(s.ws, was_on)
    # Interleaving: how many slow calls were in flight at once (from the journal's start times).
    spans = [(e["time"], e["time"] + e["latency_ms"] / 1000) for e in calls]
    overlap = max((sum(1 for a, b in spans if a <= t < b) for t, _ in spans), default=0)
    versions = sorted(int(v.version) for v in s.versions())
    observed = {"registrations": 4, "slowed_calls": hits, "max_in_flight": overlap,
                "slowest_registration_s": round(max(r.seconds for r in regs), 1),
                "errors": [r.error for r in regs if r.error], "versions_in_registry": versions}
    ok = versions == [1, 2, 3, 4] and not observed["errors"] and overlap >= 2
    return ok and min(r.seconds for r in regs) >= 2.0, observed


SCENARIOS = {s.name: s for s in [
    Scenario("duplicate_version_after_lost_response",
             "model-versions/create is committed but its answer is lost (503 after the write); the client "
             "retries the POST and the registry holds two versions for one registration",
             "a registration is sent once or made idempotent (e.g. look for its own unique description before "
             "retrying); the harness registry check reports the duplicate",
             ("databricks", "azureml"), _duplicate_after_lost_response),
    Scenario("empty_model_after_failed_first_version",
             "registered-models/create succeeds, the first model-versions/create fails: an empty registered "
             "model is left behind",
             "the caller deletes the model it just created when its first version fails (or retries the "
             "version), so no versionless model stays in the registry",
             ("databricks", "azureml"), _empty_model_after_failed_first_version),
    Scenario("pending_version_times_out",
             "the version stays PENDING_REGISTRATION longer than await_registration_for: the client raises "
             "'Exceeded max wait time' although the version exists (and becomes READY later)",
             "after the timeout, poll model-versions/get for that version instead of registering again",
             ("databricks",), _pending_times_out),
    Scenario("rate_limit_storm_concurrent",
             "a 429 storm (Retry-After: 1) during 8 concurrent registrations",
             "the client honours Retry-After and retries: versions 1..8, contiguous, none lost or doubled",
             ("databricks", "azureml"), _rate_limit_storm),
    Scenario("slow_registry",
             "every model-versions call takes 2 s more; concurrent registration jobs interleave",
             "registrations still get contiguous versions; nothing times out at the default client timeouts",
             ("databricks", "azureml"), _slow_registry),
]}


def run_scenario(name: str, ws) -> Outcome:
    """Run one scenario against a workspace handle (``url``, ``token``, ``env``; Azure ML ones have
    ``tracking_uri``). The workspace's fault rules are cleared before and after."""
    scenario = SCENARIOS[name]
    role = role_of(ws)
    if role not in scenario.roles:
        raise ValueError(f"{name} needs a {' or '.join(scenario.roles)} workspace (the behaviour is not {role}'s)")
    started = time.monotonic()
    faults.clear_faults(ws)
    try:
        with _env(ws.env):
            setup = _prepare(ws, name)
            reproduced, observed = scenario.run(setup)
        observed = {"model": setup.name, **observed}
    finally:
        faults.clear_faults(ws)
    return Outcome(name, role, reproduced, scenario.bug, scenario.expected, observed, time.monotonic() - started)
