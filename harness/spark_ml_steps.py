"""The seed's Spark ML flavour as `harness check` steps: log + register (v1, v2), registry
increments, dual tracking (the mirrored Spark model loads from Azure ML and predicts the same),
and the seed's scoring line in each form (positional, struct, result_type=ArrayType(FloatType())).

Each step is (label, function returning a CheckResult); the steps share the scenario's runs, so a
step whose input failed is reported as not run rather than raising."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import scenarios
from harness.checks.result import CheckResult, first_line_error

# The explanation the seed's positional line must get on a Spark ML model logged without a signature.
NO_SIGNATURE_MARK = "logged without a signature"
SPARK_ML_UDF_PARTITIONS = 2
MODEL_NAME = "seed-model-spark"
SCENARIO_TIMEOUT_S = 1800  # a busy machine; about 20 s on a quiet one


class BackgroundScenario:
    """The scenario (fit, two ``log_model``; then the multi-output model) in a process of its own,
    started with the check so that it runs while the scikit-learn and Azure ML steps do: on 2 cores
    the two halves overlap (most of the scenario is JVMs MLflow starts). Not a thread: MLflow's
    tracking URI and active experiment are process-wide and the Azure ML steps set them. The process
    gets its own local Spark session; its output goes to ``log_path``; it ends with this process
    (PR_SET_PDEATHSIG, set by the thread that starts it, here the check's main thread) if not before.
    Its answers come one by one: ``result()`` as soon as the runs are logged, ``multi_output_model()``
    when that model is."""

    def __init__(self, url: str, token: str, user: str, log_path: Path, model_name: str = MODEL_NAME):
        self._done: dict | None = None
        fd, out = tempfile.mkstemp(prefix="harness-spark-ml-", suffix=".json")
        os.close(fd)
        self.out = Path(out)
        self._log = open(log_path, "w")
        # The token through the environment, as the seed's notebook has it: not on a command line.
        env = {**os.environ, "DATABRICKS_HOST": url, "DATABRICKS_TOKEN": token}
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.spark_ml_steps", "scenario", user, model_name,
                                      str(self.out)], env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_end_with_parent)

    def _answer(self, *wanted: str) -> dict:
        """What the process has written, once one of `wanted` (or its error) is among it or the
        process has ended: the runs come as soon as the scenario has them, before the multi-output
        model, which the check needs only steps later."""
        if self._done is not None:
            return self._done
        deadline = time.monotonic() + SCENARIO_TIMEOUT_S
        while True:
            ended = self.proc.poll() is not None  # before reading: an ended process has written all
            answer = self._written()
            if ended:
                self._done = answer
            if ended or "error" in answer or any(key in answer for key in wanted):
                return answer
            if time.monotonic() >= deadline:
                self.stop()
                raise TimeoutError(f"the Spark ML scenario gave no {' or '.join(wanted)} in {SCENARIO_TIMEOUT_S} s")
            time.sleep(0.05)  # a condition-based wait; the deadline is the patience

    def _written(self) -> dict:
        answer: dict = {}
        for line in self.out.read_text().splitlines():
            try:
                answer.update(json.loads(line))
            except json.JSONDecodeError:  # the line being written
                break
        return answer

    def multi_output_model(self) -> str:
        """The runs:/ URI of the two-output model the process logged after the scenario."""
        answer = self._answer("multi_output_model", "multi_output_error")
        if "multi_output_model" not in answer:
            raise RuntimeError(answer.get("multi_output_error") or answer.get("error") or "no multi-output model")
        return answer["multi_output_model"]

    def result(self) -> scenarios.SparkMLRuns:
        answer = self._answer("runs")
        if "runs" not in answer:
            raise RuntimeError(answer.get("error") or f"the Spark ML scenario's process exited {self.proc.returncode} "
                                                      f"with no result (its output: {self._log.name})")
        runs = answer["runs"]
        return scenarios.SparkMLRuns(**{**runs, "plain": scenarios.SeedRun(**runs["plain"]),
                                        "signed": scenarios.SeedRun(**runs["signed"])})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.out.unlink(missing_ok=True)


def _end_with_parent() -> None:
    """In the child, before exec: SIGTERM when the check's process dies (Linux), so a killed check
    leaves no scenario behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _scenario_process(user: str, model_name: str, out: str) -> None:
    """``python -m harness.spark_ml_steps scenario USER MODEL OUT``: BackgroundScenario's child. It
    writes a JSON line as each answer is ready: the runs (or the error), then the multi-output model."""
    from harness.spark import get_spark

    with open(out, "a") as sink:
        def say(**answer) -> None:
            sink.write(json.dumps(answer) + "\n")
            sink.flush()

        try:
            session = get_spark("local[*]", app_name="mlflow-harness-spark-ml")
            runs = scenarios.run_spark_ml_scenario(os.environ["DATABRICKS_HOST"], os.environ["DATABRICKS_TOKEN"],
                                                   user, session, model_name=model_name)
        except Exception as exc:
            say(error=first_line_error(exc))
            return
        say(runs=dataclasses.asdict(runs))
        # The multi-output model's check needs one too: logged here, in the scenario's experiment.
        try:
            say(multi_output_model=scenarios.log_multi_output_model())
        except Exception as exc:
            say(multi_output_error=first_line_error(exc))


def _not_run(name: str, why: str) -> CheckResult:
    return CheckResult(name, error=f"not run: {why}")


def expected_failure(result: CheckResult, name: str, mark: str, why: str) -> CheckResult:
    """The seed's line fails on a real cluster; passing means the harness saw that failure and explained it."""
    out = CheckResult(name, subject=result.subject, compared=result.compared, timings=result.timings,
                      details={**result.details, "expected_failure": why})
    explained = [str(d) for d in result.differences if mark in d.message]
    if explained:
        out.notes.append(f"as on a real cluster, this fails: {explained[0]}")
    elif result.passed:
        out.differ("udf", f"expected to fail as on Databricks ({why}), but it scored without error")
    else:
        out.differ("udf", f"failed without the expected explanation ({why}): "
                          + "; ".join(str(d) for d in result.differences[:2]) + (result.error or ""))
    return out


def mirrored_model_predicts(databricks, azureml, aml_tracking_uri: str, run_id: str, data) -> CheckResult:
    """The Azure ML mirror of a run's Spark model loads from Azure ML and predicts what the Databricks copy does."""
    import mlflow

    from harness.checks.dual_logging import find_mirror

    result = CheckResult("mirrored_model", subject=f"runs:/{run_id}/model (databricks) vs its azureml mirror")
    source = databricks.get_run(run_id)
    exp = databricks.get_experiment(source.info.experiment_id)
    mirror, why = find_mirror(source, exp.name, azureml)
    if mirror is None:
        result.differ("mirror run", why)
        return result
    with tempfile.TemporaryDirectory(prefix="harness-mirrored-model-") as tmp:
        path = scenarios.mirrored_model_path(aml_tracking_uri, mirror.info.run_id, tmp)
        got = np.asarray(mlflow.pyfunc.load_model(path).predict(data), dtype="float64")
    want = np.asarray(mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(data), dtype="float64")
    result.compared.update(rows=len(data), azureml_run_id=mirror.info.run_id)
    bad = int((~np.isclose(got, want, rtol=1e-9, atol=1e-9)).sum())
    if bad:
        result.differ("predictions", f"{bad} of {len(data)} rows differ between the azureml and databricks copies")
    return result


def spark_ml_steps(session, databricks, azureml, aml_tracking_uri: str, user: str, url: str, token: str,
                   linked: bool, stamp: str, rows: int = 200, registrations: int = 3,
                   mirror_timeout: float = 30.0, model_name: str = MODEL_NAME,
                   background: BackgroundScenario | None = None) -> list:
    """The steps, in order. `databricks` / `azureml` are MlflowClients for each workspace. With
    `background`, the scenario step takes that process's runs instead of running it here."""
    from pyspark.sql.types import ArrayType, FloatType

    from harness.checks import (
        check_dual_logging,
        check_registry_increments,
        check_udf_scoring,
    )
    from harness.checks.registry import verify_registry_versions

    state: dict = {}
    rows = min(rows, 200)  # a Spark ML UDF starts a JVM in each worker: keep its jobs small
    data = scenarios.training_data(rows, seed=5)[0][scenarios.SPARK_FEATURES]

    def scenario():
        res = CheckResult("seed_scenario[spark ML]", subject="mlflow.spark.log_model(..., registered_model_name=...)")
        t = time.perf_counter()
        try:
            if background is not None:
                runs = background.result()
                res.notes.append("ran in a process of its own, beside the steps before it")
            else:
                runs = scenarios.run_spark_ml_scenario(url, token, user, session, model_name=model_name)
            state["runs"] = runs
            res.compared.update(runs=2, versions=runs.versions)
            res.details.update(plain_run=runs.plain.run_id, signed_run=runs.signed.run_id, model=model_name)
            # Where the time goes: the fit, and each log_model (its pip-requirement inference loads the
            # model in a subprocess with a Spark session, hence a JVM, of its own).
            res.timings.update(fit=runs.plain.timings["fit"], log_model_plain=runs.plain.timings["log_model"],
                               log_model_signed=runs.signed.timings["log_model"])
            first = runs.versions[0]
            if first is None or runs.versions != [first, first + 1]:
                res.differ("registered versions", f"two log_model calls registered {runs.versions}, expected "
                                                  "consecutive versions (1, 2 for a new name)")
        except Exception as exc:
            res.error = first_line_error(exc)
        res.timings["total"] = time.perf_counter() - t
        return res

    def versions():
        if "runs" not in state:
            return _not_run("registry_versions[spark ML model]", "the Spark ML scenario failed")
        res = verify_registry_versions(databricks, model_name)
        res.name = "registry_versions[spark ML model]"
        return res

    def increments():
        runs = state.get("runs")
        if runs is None or not runs.signed.registered_source:
            return _not_run("registry_increments[databricks, spark ML]", "no registered Spark ML model")
        res = check_registry_increments(databricks, f"harness-spark-{stamp}", runs.signed.registered_source,
                                        run_id=runs.signed.run_id, model_id=runs.signed.model_id,
                                        registrations=registrations)
        res.name = "registry_increments[databricks, spark ML]"
        return res

    def dual():
        runs = state.get("runs")
        if runs is None:
            return _not_run("dual_logging[spark ML]", "the Spark ML scenario failed")
        deadline = time.monotonic() + (mirror_timeout if linked else 0)
        while True:
            res = check_dual_logging(databricks, azureml, run_id=runs.signed.run_id)
            if res.passed or time.monotonic() >= deadline:
                break
            time.sleep(0.2)  # brisk: the deadline is the patience, each poll period only adds wait
        res.name = "dual_logging[spark ML]"
        if not linked:
            res.notes.append("the workspaces are not linked (`emulator link`): nothing is mirrored")
        elif res.passed:
            loaded = mirrored_model_predicts(databricks, azureml, aml_tracking_uri, runs.signed.run_id, data)
            res.differences.extend(loaded.differences)
            res.compared["mirrored_model_rows"] = loaded.compared.get("rows")
            if loaded.passed:
                res.notes.append("the mirrored Spark model loads from Azure ML and predicts as the Databricks one")
        return res

    def udf(name, pick, **kwargs):
        def step():
            runs = state.get("runs")
            if runs is None:
                return _not_run(name, "the Spark ML scenario failed")
            # Two tasks, one per idle worker the check's session keeps (harness.cli.CHECK_SPARK_CONF):
            # both workers start their model-loading JVM side by side in the first of these checks,
            # and every later one finds a warm worker whichever the pool hands out.
            res = check_udf_scoring(session, pick(runs), data, partitions=SPARK_ML_UDF_PARTITIONS, **kwargs)
            res.name = name
            return res
        return step

    def seed_line_without_signature():
        res = udf("udf", lambda r: r.plain.model_uri, positional=True)()
        if res.error and res.error.startswith("not run"):
            res.name = "udf_scoring[spark ML, no signature, seed's line]"
            return res
        return expected_failure(res, "udf_scoring[spark ML, no signature, seed's line]", NO_SIGNATURE_MARK,
                                "positional columns reach a model without signature as 0, 1, ...")

    def multi_output():
        try:
            state["multi"] = state.get("multi") or (background.multi_output_model() if background is not None
                                                     else scenarios.log_multi_output_model())
        except Exception as exc:
            return CheckResult("udf_scoring[multi-output, ArrayType(FloatType())]",
                               error=f"{type(exc).__name__}: {exc}")
        res = check_udf_scoring(session, state["multi"], scenarios.training_data(rows, seed=6)[0],
                                positional=True, result_type=ArrayType(FloatType()), partitions=1)
        res.name = "udf_scoring[multi-output, ArrayType(FloatType())]"
        return res

    return [
        ("seed scenario, Spark ML flavour (databricks)", scenario),
        (f"registry versions of {model_name!r} (databricks)", versions),
        ("registry increments, databricks, Spark ML model", increments),
        ("dual logging, Spark ML run (mirrored model loads from azureml)", dual),
        # The Spark ML model loads in the Python worker through a local Spark session of its own (a
        # JVM: most of these checks' time); a reused worker keeps it. A UDF that raises ends its
        # worker, so the check that is expected to fail comes last and the others reuse the JVMs.
        ("UDF: struct(*cols), Spark ML without signature",
         udf("udf_scoring[spark ML, no signature, struct]", lambda r: r.plain.model_uri)),
        ("UDF: the seed's positional line, Spark ML with signature",
         udf("udf_scoring[spark ML, signature, seed's line]", lambda r: r.signed.model_uri, positional=True)),
        ("UDF: result_type=ArrayType(FloatType()), multi-output model", multi_output),
        ("UDF: the seed's positional line, Spark ML without signature", seed_line_without_signature),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["scenario"] and len(sys.argv) == 5:
    _scenario_process(*sys.argv[2:])
