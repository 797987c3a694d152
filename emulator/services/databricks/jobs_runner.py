"""Executes a job run: its notebook tasks one after another in dependency order, each in a child
process (``python -m harness.notebooks.job_task``), from one background thread per run.

The service may not import the harness (layers), so a task is a subprocess: it gets the run's
notebooks exported to a private folder (``<state>/job-runs/``) (the folder of each task's notebook, so ``%run ./x``
works), a scrubbed environment holding only this workspace's address and token, and one task-values
JSON file shared by the run's tasks. Cancel kills the running child's process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from emulator.services.databricks.jobs_store import JobsStore, now_ms
from emulator.services.databricks.workspace_objects import WorkspaceObjects
from emulator.services.databricks.workspace_tree import parent_of

TASK_MODULE = "harness.notebooks.job_task"
# What a task's process inherits: how to find Python and its packages, the locale. No EMULATOR_*
# setting (they name the state dir), no cloud credentials (as deployment_pool.model_env).
TASK_ENV_KEPT = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "JAVA_HOME",
                 "SPARK_HOME", "EMULATOR_SPARK_MASTER", "SPARK_MASTER")
FAILED_RESULTS = ("FAILED", "TIMEDOUT", "CANCELED", "UPSTREAM_FAILED", "UPSTREAM_CANCELED")
OUTPUT_LIMIT = 5 * 1024 * 1024  # fidelity: Jobs API — get-output returns the first 5 MB


def state(life: str, result: str | None = None, message: str = "", cancelled: bool = False) -> dict:
    """The run's ``state`` (legacy) and ``status`` (newer SDKs) fields."""
    doc = {"state": {"life_cycle_state": life, "state_message": message, "user_cancelled_or_timedout": cancelled}}
    v2 = {"SKIPPED": "TERMINATED", "INTERNAL_ERROR": "TERMINATED"}.get(life, life)
    doc["status"] = {"state": v2}
    if result is not None:
        doc["state"]["result_state"] = result
        code, kind = {"SUCCESS": ("SUCCESS", "SUCCESS"), "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
                      "CANCELED": ("USER_CANCELED", "SUCCESS"), "EXCLUDED": ("SKIPPED", "SUCCESS"),
                      "UPSTREAM_FAILED": ("SKIPPED", "SUCCESS"), "UPSTREAM_CANCELED": ("SKIPPED", "SUCCESS"),
                      }.get(result, ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"))
        doc["status"]["termination_details"] = {"code": code, "type": kind, "message": message}
    return doc


def run_if_met(run_if: str, upstream: list[str]) -> bool:
    """Whether a task runs, given its dependencies' result states (Databricks' ``run_if``)."""
    ok = [r in ("SUCCESS", "SUCCESS_WITH_FAILURES") for r in upstream]
    failed = [r in ("FAILED", "TIMEDOUT", "UPSTREAM_FAILED") for r in upstream]
    return {
        "ALL_SUCCESS": all(ok),
        "ALL_DONE": True,
        "NONE_FAILED": not any(failed) and any(r not in ("EXCLUDED",) for r in upstream),
        "AT_LEAST_ONE_SUCCESS": any(ok),
        "AT_LEAST_ONE_FAILED": any(failed),
        "ALL_FAILED": all(failed),
    }.get(run_if, all(ok))


def dependency_order(tasks: list[dict]) -> list[dict]:
    """Tasks sorted so each comes after what it depends on (validated acyclic at create)."""
    done: list[str] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if all(d["task_key"] in done for d in t.get("depends_on") or [])]
        if not ready:
            raise ValueError("cycle")
        for t in ready:
            done.append(t["task_key"])
            pending.remove(t)
    by_key = {t["task_key"]: t for t in tasks}
    return [by_key[k] for k in done]


class RunExecutor:
    """Starts runs in background threads; cancels them."""

    def __init__(self, store: JobsStore, objects: WorkspaceObjects, work_root: Path, host_url: str, token: str,
                 user: str, s3_url: str = "", tables: dict[str, str] | None = None):
        self.store, self.objects = store, objects
        # Each run's private folder (exported notebooks, task values, logs), removed when it ends;
        # what a killed server left behind goes at the next start.
        self.work_root = Path(work_root)
        shutil.rmtree(self.work_root, ignore_errors=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        self.env = {"DATABRICKS_HOST": host_url, "DATABRICKS_TOKEN": token}
        if s3_url:
            self.env["MLFLOW_S3_ENDPOINT_URL"] = s3_url
        # The workspace's Spark tables (their folder, not the state dir): tables outlive a task, as on
        # Databricks, so one task's saveAsTable is the next task's spark.table.
        self.env.update(tables or {})
        self.user = user
        self._lock = threading.Lock()
        self._active: dict[int, dict] = {}  # run id -> {"cancel": Event, "proc": Popen | None}
        # Runs a previous server process was executing cannot be resumed (their task processes
        # exited with it, see harness.notebooks.job_task): they end as the service's own failure.
        for run_id in store.unfinished():
            store.update(run_id, end_time=now_ms(),
                         **state("INTERNAL_ERROR", "FAILED", "The run was interrupted: the workspace restarted."))

    def start(self, run_id: int) -> None:
        entry = {"cancel": threading.Event(), "proc": None}
        with self._lock:
            self._active[run_id] = entry
        threading.Thread(target=self._execute, args=(run_id, entry), name=f"job-run-{run_id}", daemon=True).start()

    def is_active(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._active

    def cancel(self, run_id: int) -> None:
        with self._lock:
            entry = self._active.get(run_id)
        if entry is None:
            return
        entry["cancel"].set()
        proc = entry["proc"]
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the notebook's own children (Spark, pip) too
            except ProcessLookupError:
                pass

    def cancel_all(self) -> None:
        with self._lock:
            ids = list(self._active)
        for run_id in ids:
            self.cancel(run_id)

    # -- one run -----------------------------------------------------------------------------
    def _execute(self, run_id: int, entry: dict) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=self.work_root))  # mode 0700: private to this run
        try:
            self._execute_in(run_id, entry, work)
        except Exception as exc:  # noqa: BLE001 - a broken run must end, not hang in RUNNING forever
            self.store.update(run_id, end_time=now_ms(), **state("INTERNAL_ERROR", "FAILED", f"{type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._active.pop(run_id, None)
            shutil.rmtree(work, ignore_errors=True)

    def _execute_in(self, run_id: int, entry: dict, work: Path) -> None:
        doc = self.store.run(run_id)
        if doc is None:
            return
        self.store.update(run_id, **state("RUNNING"))
        notebooks = work / "workspace"
        for folder in {parent_of(t["notebook_task"]["notebook_path"]) for t in doc["tasks"]}:
            self.objects.export_to(folder, notebooks / folder.lstrip("/"))
        values = work / "task-values.json"
        values.write_text("{}")
        results: dict[str, str] = {}
        tasks = dependency_order(doc["tasks"])
        for task in tasks:
            results[task["task_key"]] = self._task(run_id, entry, task, results, notebooks, values, work)
        self._finish(run_id, entry, tasks, results)

    def _task(self, run_id, entry, task, results, notebooks: Path, values: Path, work: Path) -> str:
        key, task_run = task["task_key"], task["run_id"]
        upstream = [results[d["task_key"]] for d in task.get("depends_on") or []]
        if entry["cancel"].is_set():
            self.store.update(task_run, **state("SKIPPED", "CANCELED", "Run cancelled.", cancelled=True))
            return "CANCELED"
        if upstream and not run_if_met(task.get("run_if") or "ALL_SUCCESS", upstream):
            # fidelity: Jobs API — run_if not met: ALL_SUCCESS after a failure is UPSTREAM_FAILED
            if (task.get("run_if") or "ALL_SUCCESS") == "ALL_SUCCESS":
                cancelled = any(r in ("CANCELED", "UPSTREAM_CANCELED") for r in upstream)
                result = "UPSTREAM_CANCELED" if cancelled else "UPSTREAM_FAILED"
                message = "Upstream task(s) were canceled." if cancelled else "Upstream task(s) failed."
            else:
                result, message = "EXCLUDED", f"The run_if condition {task['run_if']} was not met."
            self.store.update(task_run, **state("SKIPPED", result, message))
            return result
        path = task["notebook_task"]["notebook_path"]
        obj = self.objects.get(path)
        if obj is None or obj["object_type"] != "NOTEBOOK":
            message = f"Unable to access the notebook \"{path}\". Either it does not exist, or the identity used " \
                      f"to run this job lacks the required permissions."
            self.store.update(task_run, end_time=now_ms(), **state("INTERNAL_ERROR", "FAILED", message),
                              output={"error": message})
            return "FAILED"
        local = notebooks / (path.lstrip("/") + (".ipynb" if obj["kind"] == "ipynb" else ".py"))
        result_file = work / f"{task_run}.result.json"
        log_file = work / f"{task_run}.log"
        started = now_ms()
        self.store.update(task_run, start_time=started, **state("RUNNING"))
        args = [sys.executable, "-m", TASK_MODULE, str(local), "--params", json.dumps(task["_params"]),
                "--task-values", str(values), "--task-key", key, "--result", str(result_file), "--user", self.user,
                "--parent-pid", str(os.getpid())]
        env = {k: os.environ[k] for k in TASK_ENV_KEPT if k in os.environ}
        env.update(self.env, HOME=str(work), MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1",
                   PYTHONUNBUFFERED="1")
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(args, cwd=local.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            entry["proc"] = proc
            if entry["cancel"].is_set():  # cancelled between the check above and the start
                self.cancel(run_id)
            proc.wait()
            entry["proc"] = None
        ended = now_ms()
        timing = {"start_time": started, "end_time": ended, "setup_duration": 0,
                  "execution_duration": ended - started, "cleanup_duration": 0}
        if entry["cancel"].is_set():
            self.store.update(task_run, **timing, **state("TERMINATED", "CANCELED", "Run cancelled.", cancelled=True),
                              output={"error": "Run cancelled."})
            return "CANCELED"
        summary = json.loads(result_file.read_text()) if result_file.is_file() else {}
        if summary.get("passed"):
            output = {"notebook_output": {"result": summary.get("exit_value"), "truncated": False}}
            if summary.get("exit_value") is None:
                output["notebook_output"] = {}
            self.store.update(task_run, output=output, **timing, **state("TERMINATED", "SUCCESS", ""))
            return "SUCCESS"
        log_tail = log_file.read_bytes()[-OUTPUT_LIMIT:].decode("utf-8", errors="replace")
        error = summary.get("error") or f"The notebook task's process exited with code {proc.returncode}."
        output = {"error": error, "error_trace": summary.get("error_trace") or log_tail}
        # fidelity: Jobs API — a failed notebook task: TERMINATED/FAILED, error + error_trace in get-output
        self.store.update(task_run, output=output, **timing,
                          **state("TERMINATED", "FAILED", "Workload failed, see run output for details"))
        return "FAILED"

    def _finish(self, run_id: int, entry: dict, tasks: list[dict], results: dict[str, str]) -> None:
        ended = now_ms()
        depended = {d["task_key"] for t in tasks for d in t.get("depends_on") or []}
        leaves = [results[t["task_key"]] for t in tasks if t["task_key"] not in depended]
        failed = [t["task_key"] for t in tasks if results[t["task_key"]] in ("FAILED", "TIMEDOUT")]
        if entry["cancel"].is_set():
            final = state("TERMINATED", "CANCELED", "Run cancelled.", cancelled=True)
        elif not failed and not any(r in FAILED_RESULTS for r in results.values()):
            final = state("TERMINATED", "SUCCESS", "")
        elif failed and all(r in ("SUCCESS", "EXCLUDED") for r in leaves):
            final = state("TERMINATED", "SUCCESS_WITH_FAILURES", "Some tasks failed; the leaf tasks succeeded.")
        else:
            key = failed[0] if failed else tasks[0]["task_key"]
            # fidelity: Jobs API — the message Databricks gives a run whose task failed
            final = state("TERMINATED", "FAILED", f"Task {key} failed with message: Workload failed, see run "
                                                  f"output for details. This caused all downstream tasks to get skipped.")
        doc = self.store.run(run_id) or {}
        started = doc.get("start_time", ended)
        self.store.update(run_id, end_time=ended, run_duration=ended - started, setup_duration=0,
                          execution_duration=ended - started, cleanup_duration=0, **final)
