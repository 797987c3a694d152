"""`harness check`: run the seed scenario and every check against the emulator, report, set the exit code.

Exit codes: 0 every check passed; 1 a check failed (the report names each difference);
2 the emulator is not reachable (start it with `emulator up`, or pass --start)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from pathlib import Path

import click

from emulator import settings
from emulator.control import launcher, status
from emulator.control.state import StateDir
from harness import report
from harness.checks.result import CheckResult, first_line_error
from harness.spark import is_cluster, resolve_master

EXIT_OK, EXIT_FAILED, EXIT_NO_EMULATOR = 0, 1, 2
# The check's own session keeps two idle Python workers (the UDF checks' jobs have two partitions;
# the seed's createDataFrame one per core would leave more): the Spark ML UDF checks then find the
# same two workers, and the model-loading JVM each started (harness.spark_ml_steps), whichever the
# pool hands out first.
PYTHON_WORKERS = 2
CHECK_SPARK_CONF = {"spark.python.factory.idleWorkerMaxPoolSize": str(PYTHON_WORKERS)}
SPARK_ML_STEPS = 8  # harness.spark_ml_steps: the seed's Spark ML flavour (needs Spark)


def _local_daemon(master: str | None) -> dict:
    """On a local master the workers fork from a daemon that has MLflow imported (harness.spark_daemon)."""
    return {} if is_cluster(resolve_master(master)) else {"spark.python.daemon.module": "harness.spark_daemon"}


class Progress:
    """One line per step on stderr; on a terminal the line shows the elapsed time while it runs."""

    def __init__(self, total: int, stream=None):
        self.total, self.n = total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    @contextlib.contextmanager
    def step(self, label: str, log: io.StringIO):
        self.n += 1
        prefix = f"[{self.n}/{self.total}] {label}"
        start = time.perf_counter()
        stop = threading.Event()
        outcome: dict = {}

        def tick():
            while not stop.wait(1.0):
                self.stream.write(f"\r{prefix} ... {time.perf_counter() - start:.0f}s")
                self.stream.flush()

        self.stream.write(f"{prefix} ...")
        self.stream.flush()
        ticker = threading.Thread(target=tick, daemon=True) if self.tty else None
        if ticker:
            ticker.start()
        try:
            # The client's own chatter ("Successfully registered model", run links) goes to the log.
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield outcome
        finally:
            stop.set()
            if ticker:
                ticker.join()
            done = f"{outcome.get('verdict', 'done')} ({time.perf_counter() - start:.1f}s)"
            # On a terminal rewrite the ticking line; in a log just finish it.
            self.stream.write(f"\r{prefix} ... {done}\033[K\n" if self.tty else f" {done}\n")
            self.stream.flush()


def _verdict(result: CheckResult) -> str:
    if result.passed:
        return "PASS"
    return "ERROR" if result.error else f"FAIL ({len(result.differences)} differences)"


def _ensure_running(state: StateDir, start: bool) -> list[str]:
    """Roles this command started (to stop them again); exits 2 if the emulator is down and not --start.
    Only servers this state dir started count (status.serving): never another emulator that happens
    to listen on the default ports. Without --start nothing is created."""
    from emulator.control import s3_store

    try:
        info = status.collect(state)
        down = [r for r in settings.ROLES if not info[r]["healthy"]]
    except status.NotRunningHere:
        down = list(settings.ROLES)
    if not down:
        if start and not s3_store.serving(state):
            s3_store.start(state)  # Unity Catalog model files
            return ["s3"]
        return []
    if not start:
        click.secho(
            f"error: the emulator is not running here ({', '.join(down)} down) in {state.root}: "
            "run `emulator up` or pass --start", fg="red", err=True)
        sys.exit(EXIT_NO_EMULATOR)
    started = list(down)
    procs = launcher.start_all(state, [launcher.Launch(role) for role in down])
    state.record_deployment("local")
    launcher.wait_healthy(state, procs, timeout=90)
    if not s3_store.serving(state):
        s3_store.start(state)  # Unity Catalog model files
        started.append("s3")
    return started


@contextlib.contextmanager
def _stderr_to(path: Path):
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, error=f"not run: {why}")


@click.group()
def main():
    """Checks for MLflow dual tracking, registry versions and Spark UDF scoring against the emulator."""


@main.command()
@click.option("--state-dir", envvar=settings.STATE_DIR_ENV, default=settings.DEFAULT_STATE_DIR,
              show_default=True, help="The emulator's state dir (where `emulator up` put it).")
@click.option("--start", is_flag=True, help="Start the emulator if it is not running (stopped again at the end).")
@click.option("--keep-running", is_flag=True, help="With --start: leave the emulator running.")
@click.option("--link", "link_first", is_flag=True,
              help="Link the workspaces first (as `emulator link`); without it an unlinked emulator fails dual_logging.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report here.")
@click.option("--junit-xml", "junit_path", type=click.Path(dir_okay=False), help="Write a JUnit XML report here.")
@click.option("--spark/--no-spark", default=True, show_default=True, help="Run the Spark batch-scoring steps.")
@click.option("--spark-master", default=None,
              help="Spark master, e.g. spark://127.0.0.1:7077 from `emulator up --docker --spark` (the driver runs "
                   "here, executors on the workers). Default: $EMULATOR_SPARK_MASTER, $SPARK_MASTER or local[*].")
@click.option("--registrations", default=3, show_default=True, help="Registrations per registry check.")
@click.option("--concurrency", default=4, show_default=True, help="Registrations at once in the concurrent check.")
@click.option("--rows", default=1000, show_default=True, help="Rows scored in the UDF check.")
@click.option("--mirror-timeout", default=30.0, show_default=True,
              help="Seconds to wait for the Azure ML mirror to catch up (when linked).")
@click.option("--model-name", default="seed-model", show_default=True,
              help="With --registry databricks-uc a name without three levels goes to main.default.")
@click.option("--registry", "registry_uri", type=click.Choice(["databricks", "databricks-uc"]), default="databricks",
              show_default=True, help="The Databricks registry: the seed's workspace registry, or Unity Catalog "
                                      "(MLflow 3's default; model files in the emulator's S3).")
def check(state_dir, start, keep_running, link_first, json_path, junit_path, spark, spark_master, registrations,
          concurrency, rows, mirror_timeout, model_name, registry_uri):
    """Run the seed scenario and all checks; print a table; exit 0 only if every check passed."""
    state = StateDir(state_dir)
    started = _ensure_running(state, start)
    if link_first and not status.collect(state)["linked"]:
        from emulator.control import mirror_link as control

        try:
            control.link_workspaces(state, status.workspace_url(state, "databricks"), None)
        except Exception as exc:
            click.secho(f"error: could not link the workspaces: {exc}", fg="red", err=True)
            sys.exit(EXIT_NO_EMULATOR)
    log = io.StringIO()
    started_at, load_at_start = time.perf_counter(), os.getloadavg()
    try:
        results, info = _run_all(state, log, spark, spark_master, registrations, concurrency, rows,
                                 mirror_timeout, model_name, registry_uri)
    finally:
        if started and not keep_running:
            from emulator.control import s3_store

            for role in started:
                s3_store.stop(state) if role == "s3" else launcher.stop(state, role)
        log_path = state.root / "harness.log"
        with contextlib.suppress(OSError):
            log_path.write_text(log.getvalue())
    click.echo("")
    click.echo(report.table(results))
    # The wall time and the machine's load: `make run` records them for the bench (bench/records.py).
    extra = {"wall_s": round(time.perf_counter() - started_at, 1), "spark": spark,
             "load_average": {"start": [round(x, 2) for x in load_at_start],
                              "end": [round(x, 2) for x in os.getloadavg()]},
             "linked": info["linked"], "state_dir": info["state_dir"],
             "workspaces": {r: {"url": info[r]["url"], "ui": info[r]["url"] + "/"} for r in settings.ROLES}}
    if json_path:
        report.write_json(json_path, results, extra)
        click.echo(f"JSON report: {json_path}")
    if junit_path:
        report.write_junit_xml(junit_path, results)
        click.echo(f"JUnit XML report: {junit_path}")
    click.echo(f"client output: {state.root / 'harness.log'}")
    for role, label in (("databricks", "Databricks"), ("azureml", "Azure ML")):
        click.echo(f"{label} MLflow UI: {info[role]['ui']}")
    if not info["linked"]:
        click.echo("the workspaces are not linked: `emulator link` mirrors Databricks tracking to Azure ML")
    sys.exit(EXIT_OK if all(r.passed for r in results) else EXIT_FAILED)


def uc_name(name: str) -> str:
    """A Unity Catalog name for `name`: three levels (main.default. by default), no dashes."""
    return name if name.count(".") == 2 else "main.default." + name.replace("-", "_").replace(".", "_")


def _run_all(state, log, use_spark, spark_master, registrations, concurrency, rows, mirror_timeout, model_name,
             registry_uri="databricks"):
    from mlflow import MlflowClient

    from harness import scenarios
    from harness.checks import (
        check_dual_logging,
        check_registry_increments,
        check_udf_scoring,
    )
    from harness.checks.registry import verify_registry_versions

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    info = status.collect(state)
    db, aml = info["databricks"], info["azureml"]
    # Both sets of credentials at once: "databricks" reads DATABRICKS_*, the Azure ML URI MLFLOW_TRACKING_TOKEN.
    os.environ.update({"DATABRICKS_HOST": db["url"], "DATABRICKS_TOKEN": db["token"],
                       "MLFLOW_TRACKING_TOKEN": aml["token"], "AZUREML_EMULATOR_URL": aml["url"]})
    uc = registry_uri == "databricks-uc"
    aml_model_name = model_name  # Azure ML's registry has no catalogs: its seed flow keeps the plain name
    if uc:  # model files go to the emulator's S3 with the credentials Unity Catalog hands out
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = db["client_env"]["MLFLOW_S3_ENDPOINT_URL"]
        model_name = uc_name(model_name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    new_name = (lambda kind: uc_name(f"harness_{kind}_{stamp.replace('-', '_')}")) if uc else (
        lambda kind: f"harness-{kind}-{stamp}")
    progress = Progress((9 + SPARK_ML_STEPS) if use_spark else 7)
    results: list[CheckResult] = []
    session = None

    # On a local master the Spark ML scenario runs in a process of its own beside the steps below
    # (harness.spark_ml_steps.BackgroundScenario), started first so that its Python and JVM start
    # while this process's do; on a cluster it waits its turn (a second application would wait for
    # the first one's cores).
    background = None
    if use_spark and not is_cluster(resolve_master(spark_master)):
        from harness.spark_ml_steps import BackgroundScenario

        background = BackgroundScenario(db["url"], db["token"], db["user"], state.root / "harness-spark-ml.log")

    if use_spark:
        with progress.step("start Spark", log) as out:
            try:
                from harness.spark import get_spark

                # The JVM inherits fd 2 when it starts: send its log4j chatter to a file, not the report.
                with _stderr_to(state.root / "spark.log"):
                    session = get_spark(spark_master, **CHECK_SPARK_CONF, **_local_daemon(spark_master))
                out["verdict"] = session.sparkContext.master
            except Exception as exc:
                out["verdict"] = f"failed: {exc}"
                results.append(CheckResult("spark_session", error=f"{type(exc).__name__}: {exc}"))

    if background is not None and (session is None or is_cluster(session.sparkContext.master)):
        background.stop()  # no session for its steps, or an active cluster session getOrCreate reused
        background = None
    if background is not None:
        from harness.spark import start_python_workers

        # While the seed trains: its first spark_udf job then finds its Python workers forked and waiting.
        start_python_workers(session, PYTHON_WORKERS)

    seed_result = CheckResult("seed_scenario", subject=f"seed notebook flow on databricks ({db['url']})")
    seed = None
    with progress.step("seed scenario (databricks)", log) as out:
        t = time.perf_counter()
        try:
            seed = scenarios.run_databricks_scenario(db["url"], db["token"], db["user"], model_name=model_name,
                                                     spark=session, score_rows=rows, registry_uri=registry_uri)
            seed_result.compared.update(epochs=5, scored_rows=seed.scored_rows)
            seed_result.details.update(run_id=seed.run_id, experiment=seed.experiment_name,
                                       model=f"{seed.model_name} v{seed.model_version}", model_uri=seed.model_uri)
            seed_result.timings.update(seed.timings)
        except Exception as exc:
            seed_result.error = first_line_error(exc)
        seed_result.timings["total"] = time.perf_counter() - t
        out["verdict"] = _verdict(seed_result)
    results.append(seed_result)

    databricks = MlflowClient("databricks", registry_uri)
    azureml = MlflowClient(aml["tracking_uri"], aml["tracking_uri"])

    with progress.step("dual logging (databricks run vs azureml mirror)", log) as out:
        if seed is None:
            res = _skipped("dual_logging", "the seed scenario failed")
        else:
            deadline = time.monotonic() + (mirror_timeout if info["linked"] else 0)
            while True:
                res = check_dual_logging(databricks, azureml, run_id=seed.run_id)
                if res.passed or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)  # brisk: the deadline above is the patience, each poll period is wait
            if not info["linked"]:
                res.notes.append("the workspaces are not linked (`emulator link`): nothing is mirrored")
            elif not res.passed:
                mirror = status.collect(state).get("mirror") or {}
                res.notes.append(f"mirror: backlog={mirror.get('backlog')} failed={mirror.get('failed')} "
                                 f"last_error={mirror.get('last_error')}")
        out["verdict"] = _verdict(res)
    results.append(res)

    with progress.step(f"registry versions of {model_name!r} ({registry_uri})", log) as out:
        res = verify_registry_versions(databricks, model_name)
        res.name = "registry_versions[seed model]"
        out["verdict"] = _verdict(res)
    results.append(res)

    for label, conc in (("sequential", 1), (f"{concurrency} at once", concurrency)):
        with progress.step(f"registry increments, {registry_uri}, {label}", log) as out:
            if seed is None or not seed.registered_source:
                res = _skipped("registry_increments", "no registered seed model to register again")
            else:
                res = check_registry_increments(
                    databricks, new_name("seq" if conc == 1 else "conc"), seed.registered_source,
                    run_id=seed.run_id, model_id=seed.model_id, registrations=registrations if conc == 1 else conc,
                    concurrency=conc)
            res.name = f"registry_increments[{registry_uri}, {label}]"
            out["verdict"] = _verdict(res)
        results.append(res)

    aml_seed = None
    with progress.step("registry increments, azureml (seed's AML-only flow)", log) as out:
        try:
            aml_seed = scenarios.run_azureml_scenario(aml["subscription_id"], aml["resource_group"],
                                                      aml["workspace_name"], model_name=aml_model_name)
            res = check_registry_increments(azureml, f"harness-seq-{stamp}", aml_seed.registered_source,
                                            run_id=aml_seed.run_id, model_id=aml_seed.model_id,
                                            registrations=registrations)
        except Exception as exc:
            res = CheckResult("registry_increments", error=f"{type(exc).__name__}: {exc}")
        res.name = "registry_increments[azureml, sequential]"
        out["verdict"] = _verdict(res)
    results.append(res)

    with progress.step("endpoint scoring (online endpoint vs pyfunc predict / spark_udf)", log) as out:
        from harness.checks.endpoint_scoring import run_for_harness

        res = run_for_harness(info, seed, aml_seed, session, rows, stamp)
        out["verdict"] = _verdict(res)
    results.append(res)

    if use_spark:
        with progress.step("UDF batch scoring (spark_udf vs pyfunc predict)", log) as out:
            if session is None or seed is None:
                res = _skipped("udf_scoring", "no Spark session" if session is None else "the seed scenario failed")
            else:
                data, _ = scenarios.training_data(rows, seed=2)
                model_uri = seed.model_uri
                if uc and seed.model_version:
                    # Unity Catalog deploys by alias: score the registered version through models:/c.s.m@alias.
                    databricks.set_registered_model_alias(model_name, "champion", seed.model_version)
                    model_uri = f"models:/{model_name}@champion"
                res = check_udf_scoring(session, model_uri, data, partitions=2)
            out["verdict"] = _verdict(res)
        results.append(res)
        # The seed's Spark ML flavour registers a two-level name in the workspace registry, also
        # when the sklearn flavour was checked against Unity Catalog (--registry databricks-uc).
        workspace_registry = databricks if not uc else MlflowClient("databricks", "databricks")
        results.extend(_run_spark_ml(progress, log, session, workspace_registry, azureml, aml, db, info, stamp,
                                     rows, registrations, mirror_timeout, background))
    return results, status.collect(state)


def _run_spark_ml(progress, log, session, databricks, azureml, aml, db, info, stamp, rows, registrations,
                  mirror_timeout, background=None):
    """The seed's Spark ML flavour (harness.spark_ml_steps), one progress line per step."""
    from harness.spark_ml_steps import spark_ml_steps

    results = []
    steps = spark_ml_steps(session, databricks, azureml, aml["tracking_uri"], db["user"], db["url"], db["token"],
                           info["linked"], stamp, rows=rows, registrations=registrations,
                           mirror_timeout=mirror_timeout, background=background)
    try:
        for label, step in steps:
            with progress.step(label, log) as out:
                if session is None:
                    res = _skipped(label, "no Spark session")
                else:
                    try:
                        res = step()
                    except Exception as exc:
                        res = CheckResult(label, error=f"{type(exc).__name__}: {exc}")
                out["verdict"] = _verdict(res)
            results.append(res)
    finally:
        if background is not None:
            background.stop()
    return results


from harness import cli_faults  # noqa: E402  (`harness scenario ...`, `harness replay`)
from harness.cli_job import job  # noqa: E402  (`harness job run`)
from harness.cli_notebook import notebook  # noqa: E402  (`harness notebook run`)
from harness.cli_run import run_cmd  # noqa: E402  (`harness run`)

cli_faults.register(main)
main.add_command(run_cmd)
main.add_command(notebook)
main.add_command(job)

if __name__ == "__main__":
    main()
