"""Named reproductions of registration bugs: each drives the real MLflow client against a workspace
(injecting one fault with a rule, or meeting a refusal the workspace makes on its own, as the
cloud does) and reports what the registry holds afterwards. Each names the service rule it
exercises and the public symptom (a bug report's text) it matches.

``reproduced`` is True when the scenario behaved as documented: for the bug scenarios the bug
appears (so a test can pin it, and a fixed client can be shown not to have it); for the load
scenarios (rate-limit storm, slow registry) the client copes: versions stay contiguous, none lost.

    from harness.fault_scenarios import SCENARIOS, run_scenario
    outcome = run_scenario("duplicate_version_after_lost_response", emulator.services.databricks)
    assert outcome.reproduced, outcome.summary()
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness import faults, mlflow_uris

REGISTRY_CREATE = "*/api/2.0/mlflow/model-versions/create"
UC_CREATE = "*/api/2.0/mlflow/unity-catalog/model-versions/create"
UC_SCHEMA = "main.default"
# The Databricks workspace registry's status_message for a source with nothing at it (mlflow/mlflow#4630).
SOURCE_MISSING = "Failed registration. The given source path does not exist."


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
    rule: str = ""  # the service's rule, as docs/pages/fidelity.md records it
    symptom: str = ""  # what users saw, from a public bug report


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
    experiment_id: str = ""

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
    return Setup(ws, role, client, f"{scenario}-{tag}", f"{run.info.artifact_uri}/model", run.info.run_id, exp_id)


def _duplicate_after_lost_response(s: Setup):
    from harness.checks.registry import verify_registry_versions

    s.client.create_registered_model(s.name)
    description = f"one registration {uuid.uuid4().hex[:6]}"
    with faults.inject_fault(s.ws, "POST", REGISTRY_CREATE, body={"name": s.name}, after_commit="status",
                             status=503, times=1) as rule:
        mv = s.register(description)  # one call: the client retries the "failed" create
        hits = rule.hits
    versions = s.versions()
    same = [v.version for v in versions if v.description == description]
    check = verify_registry_versions(s.client, s.name, expected_count=1)
    observed = {"client_calls": 1, "returned_version": mv.version, "versions_in_registry": [v.version for v in versions],
                "versions_with_this_description": same, "fault_hits": hits,
                "registry_check": [d.message for d in check.differences]}
    flagged = any("duplicate of version" in m for m in observed["registry_check"])
    return len(same) == 2 and hits == 1 and flagged, observed


def _missing_source_fails_registration(s: Setup):
    from mlflow.exceptions import MlflowException

    s.client.create_registered_model(s.name)
    error = None
    try:  # a source path with nothing at it (a typo, a model logged elsewhere)
        s.client.create_model_version(s.name, f"{s.source}-nothing-here", run_id=s.run_id)
    except MlflowException as exc:
        error = exc.message.splitlines()[0]
    versions = s.versions()
    observed = {"client_error": error, "registry_after": [(v.version, v.status, v.status_message) for v in versions]}
    failed = [v for v in versions if v.status == "FAILED_REGISTRATION" and v.status_message == SOURCE_MISSING]
    return error is not None and "FAILED_REGISTRATION" in error and SOURCE_MISSING in error and bool(failed), observed


def _unknown_run_is_not_found(s: Setup):
    from mlflow.exceptions import MlflowException

    s.client.create_registered_model(s.name)
    unknown = uuid.uuid4().hex
    error = None
    try:
        s.client.create_model_version(s.name, f"runs:/{unknown}/model", run_id=unknown)
    except MlflowException as exc:
        error = str(exc)
    versions = s.versions()
    observed = {"client_error": error, "versions": [v.version for v in versions]}
    return error == f"RESOURCE_DOES_NOT_EXIST: Run with id={unknown} not found" and not versions, observed


def _file_source_is_refused(s: Setup):
    from mlflow.exceptions import MlflowException

    s.client.create_registered_model(s.name)
    source = "dummy-source"  # what MLflow 2.21's register_prompt sent in the report
    error = None
    try:
        s.client.create_model_version(s.name, source)
    except MlflowException as exc:
        error = str(exc)
    versions = s.versions()
    observed = {"client_error": error, "versions": [v.version for v in versions]}
    expected = ("'Message': 'Model source from file must be in the following format: azureml://artifacts/<origin>/"
                f"<container>/<artifact_prefix>. Provided model source: {source}'")
    return (error is not None and error.startswith("INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': "
                                                   "'ValidationError'") and expected in error and not versions), observed


def _uc_name_in_workspace_registry(s: Setup):
    from mlflow.exceptions import MlflowException

    name = f"main.default.{s.name}"  # a Unity Catalog name, sent to the workspace registry ("databricks")
    error = None
    try:
        s.client.create_model_version(name, s.source, run_id=s.run_id)
    except MlflowException as exc:
        error = str(exc)
    stored = s.client.search_registered_models(f"name = '{name}'")
    observed = {"client_error": error, "registered_models": [m.name for m in stored]}
    expected = (f"INVALID_PARAMETER_VALUE: Invalid name '{name}'. A workspace registered model name must be a "
                "non-empty UTF-8 string and cannot contain forward slashes(/), periods(.), or colons(:).")
    return bool(error and error.startswith(expected)) and not stored, observed


def _params_past_azureml_limit(s: Setup):
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    run_id = s.client.create_run(s.experiment_id).info.run_id
    error = None
    try:  # what mlflow.log_params sends for 210 params: batches of 100, 100 and 10
        s.client.log_batch(run_id, params=[Param(f"p{i:03d}", str(i)) for i in range(210)])
    except MlflowException as exc:
        error = str(exc)
    stored = len(s.client.get_run(run_id).data.params)
    observed = {"client_error": error, "params_logged": 210, "params_stored": stored}
    expected = ("'Message': 'A field of the entity is over the size limit. FieldName=Parameters, Limit=200, "
                "Size=210.")
    return (bool(error) and error.startswith("INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': "
                                             "'ValidationError'") and expected in error and stored == 200), observed


def _logged_model_metric_quota(s: Setup):
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from sklearn.linear_model import LinearRegression

    X = np.arange(12.0).reshape(4, 3)
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    error = None
    with mlflow_uris.using("databricks", "databricks"):
        with mlflow.start_run(experiment_id=s.experiment_id) as run:
            # 1001 points of one metric at step 0 (the report's repeated backfills); log_model links
            # every point of the run at its step to the new logged model.
            s.client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, 0)
                                                         for i in range(1001)])
            try:
                mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
            except MlflowException as exc:
                error = str(exc)
    observed = {"client_error": error, "metric_points_at_step_0": 1001}
    expected = ("BAD_REQUEST: Unable to log new or update existing logged model metrics for model m-")
    tail = "exceeded maximum allowed number of logged model metrics per logged model: 1000."
    return bool(error) and error.startswith(expected) and tail in error, observed


def _uc_model(s: Setup, name: str, **fault):
    """log_model(registered_model_name=<catalog.schema.model>) to Unity Catalog, optionally under a
    one-shot rule on its model-versions/create; the version as Unity Catalog then reports it."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    X = np.arange(12.0).reshape(4, 3)
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    with contextlib.ExitStack() as stack:
        stack.enter_context(mlflow_uris.using("databricks", "databricks-uc"))
        if fault:
            stack.enter_context(faults.inject_fault(s.ws, "POST", UC_CREATE, body={"name": name}, times=1, **fault))
        with mlflow.start_run(experiment_id=s.experiment_id):
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                            signature=infer_signature(X, model.predict(X)))
    return mlflow.MlflowClient("databricks", "databricks-uc"), str(info.registered_model_version)


def _uc_pending_after_register(s: Setup):
    name = _uc_name(s)
    client, version = _uc_model(s, name, hold_pending_s=3)
    first = client.get_model_version(name, version).status  # right after register_model returned
    deadline = time.monotonic() + 120
    while (status := client.get_model_version(name, version).status) == "PENDING_REGISTRATION":
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    observed = {"uc_model": name, "version": version, "status_after_register_model": first,
                "status_later": status}
    return first == "PENDING_REGISTRATION" and status == "READY", observed


def _uc_failed_at_finalize(s: Setup):
    name = _uc_name(s)
    message = "Model files failed the workspace's checks."
    client, version = _uc_model(s, name, fail_registration=message)  # returns: the UC client does not poll
    mv = client.get_model_version(name, version)
    observed = {"uc_model": name, "version": version, "register_model_raised": False,
                "status": mv.status, "status_message": mv.status_message}
    return (mv.status, mv.status_message) == ("FAILED_REGISTRATION", message), observed


# MLflow 3.0-3.4 send the model_id of a model logged to another tracking server (mlflow/mlflow#18194);
# 3.5+ clear it (mlflow/mlflow#18244), so the symptom is shown with such a client, in its own venv.
LOCALLY_TRACKED_CLIENT = "mlflow-3.1.4"
LOCALLY_TRACKED = textwrap.dedent(
    """
    import json, sys
    import mlflow, numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression
    X = np.random.default_rng(0).random((20, 3)); model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    mlflow.set_tracking_uri(sys.argv[1])  # a local tracking store
    mlflow.set_registry_uri("databricks-uc")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)))
    try:
        mlflow.register_model(info.model_uri, sys.argv[2])
        result = {"registered": True}
    except mlflow.exceptions.MlflowException as exc:
        result = {"error_code": exc.error_code, "message": exc.message}
    print("RESULT " + json.dumps(dict(result, model_id=info.model_id)))
    """
)


def run_locally_tracked(ws, name: str, workdir) -> dict:
    """The #18194 script with the 3.1 client: log to a local store in ``workdir``, register in UC."""
    from harness import client_venvs
    from harness.replay_script import client_environment

    env = client_environment(ws)  # the script sets its own tracking URI
    python = client_venvs.ensure(LOCALLY_TRACKED_CLIENT, log=lambda line: print(line, file=sys.stderr))
    out = subprocess.run([str(python), "-c", LOCALLY_TRACKED, (Path(workdir) / "mlruns").as_uri(), name], check=False,
                         env=env, cwd=workdir, capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or "RESULT " not in out.stdout:
        return {"script_failed": out.stderr[-2000:]}
    return json.loads(out.stdout.split("RESULT ", 1)[1])


def _uc_unknown_model_id(s: Setup):
    name = _uc_name(s)
    with tempfile.TemporaryDirectory(prefix="scenario-locally-tracked-") as workdir:
        result = run_locally_tracked(s.ws, name, workdir)
    uc = _uc_client()
    observed = {"uc_model": name, "client": LOCALLY_TRACKED_CLIENT, **result,
                "versions": [v.version for v in uc.search_model_versions(f"name = '{name}'")]}
    refused = (result.get("error_code") == "RESOURCE_DOES_NOT_EXIST"
               and f"Logged model with ID '{result.get('model_id')}' does not exist" in result.get("message", ""))
    return refused and not observed["versions"], observed


def _uc_name(s: Setup) -> str:
    return f"{UC_SCHEMA}.{s.name.replace('-', '_')}"  # Unity Catalog names: letters, digits, underscores


def _uc_client():
    from mlflow import MlflowClient

    return MlflowClient("databricks", "databricks-uc")


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
             ("databricks", "azureml"), _duplicate_after_lost_response,
             rule="model-versions/create is not idempotent: each call that reaches the registry makes a version; "
                  "the client retries 5xx answers (fault rule: after_commit=status)",
             symptom="one registration, two versions with the same description (harness verify_registry_versions: "
                     "'duplicate of version 1')"),
    Scenario("empty_model_after_failed_first_version",
             "registered-models/create succeeds, the first model-versions/create fails: an empty registered "
             "model is left behind",
             "the caller deletes the model it just created when its first version fails (or retries the "
             "version), so no versionless model stays in the registry",
             ("databricks", "azureml"), _empty_model_after_failed_first_version,
             rule="register_model makes the registered model, then its version, in two calls (fault rule: 403)",
             symptom="a registered model with no versions after a failed registration"),
    Scenario("pending_version_times_out",
             "the version stays PENDING_REGISTRATION longer than await_registration_for: the client raises "
             "'Exceeded max wait time' although the version exists (and becomes READY later)",
             "after the timeout, poll model-versions/get for that version instead of registering again",
             ("databricks",), _pending_times_out,
             rule="Databricks workspace registry: create answers PENDING_REGISTRATION, the client polls get "
                  "(fault rule: hold_pending_s)",
             symptom="'Exceeded max wait time for model name: ... version: 1 to become READY' while the version exists"),
    Scenario("rate_limit_storm_concurrent",
             "a 429 storm (Retry-After: 1) during 8 concurrent registrations",
             "the client honours Retry-After and retries: versions 1..8, contiguous, none lost or doubled",
             ("databricks", "azureml"), _rate_limit_storm,
             rule="the services throttle with 429 and Retry-After (fault rule)",
             symptom="429 REQUEST_LIMIT_EXCEEDED during parallel registrations"),
    Scenario("slow_registry",
             "every model-versions call takes 2 s more; concurrent registration jobs interleave",
             "registrations still get contiguous versions; nothing times out at the default client timeouts",
             ("databricks", "azureml"), _slow_registry,
             rule="registry calls can be slow (fault rule: delay_s)",
             symptom="slow, interleaved registrations"),
    # Refusals the workspaces make on their own, as the cloud does (no fault rule; docs/pages/fidelity.md).
    Scenario("missing_source_fails_registration",
             "model-versions/create with a source that holds no files: the version is accepted, then ends "
             "FAILED_REGISTRATION and the client raises after polling",
             "register what was logged (check the source's files first); delete the failed version",
             ("databricks",), _missing_source_fails_registration,
             rule="Databricks workspace registry copies a version's files server-side; a source with nothing at "
                  f"it ends FAILED_REGISTRATION \"{SOURCE_MISSING}\" (fidelity: Registration lifecycle)",
             symptom="mlflow/mlflow#4630: 'Model version creation failed for model name: my_model version: 1 "
                     f"with status: FAILED_REGISTRATION and message: {SOURCE_MISSING}' (also #3490)"),
    Scenario("unknown_run_is_not_found",
             "create_model_version from runs:/<id>/model for a run the Azure ML workspace does not hold is "
             "refused at once; nothing is stored",
             "register from a run of the workspace you track to (or from its Databricks-tracked mirror)",
             ("azureml",), _unknown_run_is_not_found,
             rule="Azure ML: model-versions/create from runs:/<unknown run> -> 404 RESOURCE_DOES_NOT_EXIST "
                  "'Run with id=<id> not found' (fidelity: Azure ML workspace)",
             symptom="zenml-io/zenml#4207: 'RestException: RESOURCE_DOES_NOT_EXIST: Run with id=<uuid> not found'"),
    Scenario("file_source_is_refused",
             "create_model_version with a source that is neither run/model based nor an upload of Azure ML's "
             "artifact service (a bare path, file://, s3://, a prompt's placeholder) is refused; nothing is stored",
             "register from runs:/ or models:/, or let azureml-mlflow upload a local directory (file://...)",
             ("azureml",), _file_source_is_refused,
             rule="Azure ML: model-versions/create with a 'from file' source not of the form azureml://artifacts/"
                  "<origin>/<container>/<artifact_prefix> -> 400 ValidationError in the service's error body "
                  "(fidelity: Azure ML registration rules)",
             symptom="mlflow/mlflow#15329: 'RestException: INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': "
                     "'ValidationError', ..., 'Message': 'Model source from file must be in the following format: "
                     "azureml://artifacts/<origin>/<container>/<artifact_prefix>. Provided model source: "
                     "dummy-source', ...}'"),
    Scenario("params_past_azureml_limit",
             "a run gets 210 params (mlflow.log_params of a large config): Azure ML refuses the batch that "
             "takes it past 200; the run keeps the first 200, the client raises",
             "log at most 200 params per run on Azure ML (log a large config as an artifact, e.g. mlflow.log_dict)",
             ("azureml",), _params_past_azureml_limit,
             rule="Azure ML: a run holds at most 200 params; log-parameter/log-batch past that -> 400 ValidationError "
                  "'A field of the entity is over the size limit. FieldName=Parameters, Limit=200, Size=<n>. ...' "
                  "(fidelity: Azure ML run limits)",
             symptom="Azure/azure-sdk-for-python#35685: 'INVALID_PARAMETER_VALUE: Response: {'Error': {'Code': "
                     "'ValidationError', ..., 'Message': 'A field of the entity is over the size limit. "
                     "FieldName=Parameters, Limit=200, Size=210. See https://aka.ms/azure-machine-learning-limits "
                     "for service limits documentation.'' (the same code works with a local MLflow server)"),
    Scenario("logged_model_metric_quota",
             "log_model in a run holding more than 1000 metric points at the model's step: linking them to the "
             "new logged model exceeds the workspace's quota and log_model raises",
             "keep fewer metric points per step, or log the model at a step without metrics (e.g. step=-1)",
             ("databricks",), _logged_model_metric_quota,
             rule="Databricks: a logged model holds at most 1000 metric points; log-batch/log-metric past that -> "
                  "400 BAD_REQUEST 'Unable to log new or update existing logged model metrics for model <id>, "
                  "exceeded maximum allowed number of logged model metrics per logged model: 1000. ...' "
                  "(fidelity: Databricks run limits)",
             symptom="mlflow/mlflow#20715: 'mlflow.exceptions.RestException: BAD_REQUEST: Unable to log new or "
                     "update existing logged model metrics for model m-..., exceeded maximum allowed number of "
                     "logged model metrics per logged model: 1000. To raise this quota please contact the "
                     "Databricks support team.'"),
    Scenario("unity_catalog_name_in_workspace_registry",
             "a three-level Unity Catalog name (catalog.schema.model) is registered with the registry URI "
             "'databricks' (the workspace registry) instead of 'databricks-uc': refused, nothing stored",
             "mlflow.set_registry_uri('databricks-uc') (MLflow >= 2.4.1) before registering or loading UC models",
             ("databricks",), _uc_name_in_workspace_registry,
             rule="Databricks workspace registry: a model name with '/', '.' or ':' -> 400 INVALID_PARAMETER_VALUE "
                  "'Invalid name ... A workspace registered model name must be ...' (fidelity: Databricks workspace)",
             symptom="databricks/mlops-stacks#135: 'RestException: INVALID_PARAMETER_VALUE: Invalid name "
                     "'ml-ops.prometheus-model.staging-prometheus-model'. A workspace registered model name must be "
                     "a non-empty UTF-8 string and cannot contain forward slashes(/), periods(.), or colons(:).'"),
    Scenario("unity_catalog_unknown_model_id",
             "an MLflow 3.0-3.4 client logs a model to a local tracking server and registers it in Unity "
             "Catalog: it sends the local model_id, which the workspace does not hold, and is refused",
             "MLflow 3.5+ (mlflow/mlflow#18244) sends the files and the local run_id without model_id",
             ("databricks",), _uc_unknown_model_id,
             rule="Unity Catalog: model-versions/create with a model_id the workspace does not hold -> 404 "
                  "RESOURCE_DOES_NOT_EXIST 'Logged model with ID ... does not exist in this workspace' "
                  "(fidelity: Unity Catalog model registry)",
             symptom="mlflow/mlflow#18194: 'Cannot register models to databricks-uc registry when logging to a "
                     "local tracking server' (worked with 2.22.1, fails with 3.x)"),
    Scenario("unity_catalog_pending_after_register",
             "a Unity Catalog version stays PENDING_REGISTRATION for a while after finalize: register_model "
             "returns before it is READY (the UC client does not poll)",
             "wait for status READY (poll get_model_version) before using the version",
             ("databricks",), _uc_pending_after_register,
             rule="Unity Catalog versions are PENDING_REGISTRATION until finalize and READY after; a held "
                  "finalize (fault rule hold_pending_s) keeps them pending (fidelity: Unity Catalog model registry)",
             symptom="mlflow/mlflow#20232: 'add_libraries_to_model fails with PENDING_REGISTRATION when model "
                     "version is not yet READY in Unity Catalog'; #10409: register_model 'exits early while the "
                     "model version is still in a PENDING_REGISTRATION state'"),
    Scenario("unity_catalog_failed_at_finalize",
             "a Unity Catalog version ends FAILED_REGISTRATION at finalize: register_model returns it without "
             "raising (the UC client does not poll)",
             "check the returned version's status before using it",
             ("databricks",), _uc_failed_at_finalize,
             rule="Unity Catalog: finalize can end a version FAILED_REGISTRATION with a status_message (fault "
                  "rule fail_registration) and the client raises nothing (fidelity: Unity Catalog model registry)",
             symptom="register_model succeeded, the version is FAILED_REGISTRATION"),
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
