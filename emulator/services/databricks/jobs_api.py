"""The Jobs API (2.1 and 2.2, which the databricks-sdk calls) for notebook tasks.

``jobs/create|get|list|delete|reset|update``, ``jobs/run-now``, ``jobs/runs/submit|get|get-output|
list|cancel|delete``. Jobs and runs live in ``jobs_store`` (SQLite, emptied by a reset); runs are
executed by ``jobs_runner``. Only notebook tasks run, in dependency order, on this machine: job
clusters, libraries, schedules and notifications are kept as given but have no effect.
"""

from __future__ import annotations

import re

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError
from emulator.services.databricks.jobs_runner import RunExecutor, dependency_order, state
from emulator.services.databricks.jobs_store import JobsStore, now_ms
from emulator.services.databricks.workspace_tree import normalize

VERSIONS = ("2.1", "2.2")
TASK_TYPES = ("notebook_task", "spark_python_task", "python_wheel_task", "spark_jar_task", "spark_submit_task",
              "pipeline_task", "sql_task", "dbt_task", "run_job_task", "condition_task", "for_each_task",
              "clean_rooms_notebook_task", "dashboard_task", "power_bi_task", "gen_ai_compute_task")
TASK_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")
RUN_IFS = ("ALL_SUCCESS", "ALL_DONE", "NONE_FAILED", "AT_LEAST_ONE_SUCCESS", "AT_LEAST_ONE_FAILED", "ALL_FAILED")


def _bad(message: str) -> EmulatorError:
    return EmulatorError("INVALID_PARAMETER_VALUE", message, 400)


def _job_missing(job_id) -> EmulatorError:
    # fidelity: Jobs API — the SDK maps exactly this (400, "Job .* does not exist") to ResourceDoesNotExist
    return _bad(f"Job {job_id} does not exist.")


def _run_missing(run_id) -> EmulatorError:
    # fidelity: Jobs API — the SDK maps this (400, "Run .* does not exist") to ResourceDoesNotExist
    return _bad(f"Run {run_id} does not exist.")


def _id(source, field: str) -> int:
    value = source.get(field)
    if value is None or value == "":
        raise _bad(f"Missing required field: {field}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _bad(f"Invalid value for {field}: {value!r} is not an integer.") from None
    if isinstance(value, bool) or not 0 <= number < 2**63:
        raise _bad(f"Invalid value for {field}: {value!r}.")
    return number


def validate_tasks(tasks) -> list[dict]:
    """The tasks of a job or one-off run: notebook tasks only, unique keys, known acyclic dependencies."""
    if not isinstance(tasks, list) or not tasks:
        raise _bad("A job must have at least one task.")
    keys = set()
    for task in tasks:
        if not isinstance(task, dict):
            raise _bad("Each task must be an object.")
        key = task.get("task_key")
        if not isinstance(key, str) or not TASK_KEY.fullmatch(key):
            raise _bad("Each task needs a task_key of at most 100 alphanumerics, dashes and underscores.")
        if key in keys:
            raise _bad(f"Task key {key} is used by more than one task.")
        keys.add(key)
        kinds = [t for t in TASK_TYPES if task.get(t) is not None]
        if kinds and kinds != ["notebook_task"]:
            # fidelity: Jobs API — only notebook tasks run
            raise _bad(f"Task {key} is a {kinds[0]}: the Databricks emulator runs notebook_task tasks only.")
        notebook = task.get("notebook_task")
        if not isinstance(notebook, dict):
            raise _bad(f"Task {key} must define a notebook_task.")
        if (notebook.get("source") or "WORKSPACE") != "WORKSPACE":
            raise _bad(f"Task {key}: notebooks from {notebook['source']} are not supported by the Databricks "
                       f"emulator (WORKSPACE only).")
        notebook["notebook_path"] = normalize(notebook.get("notebook_path"), "notebook path")
        base = notebook.get("base_parameters") or {}
        if not isinstance(base, dict) or not all(isinstance(v, str) for v in base.values()):
            raise _bad(f"Task {key}: base_parameters must map names to strings.")
        if task.get("run_if") is not None and task["run_if"] not in RUN_IFS:
            raise _bad(f"Task {key}: invalid run_if {task['run_if']!r}.")
    for task in tasks:
        deps = task.get("depends_on") or []
        if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
            raise _bad(f"Task {task['task_key']}: depends_on must be a list of {{\"task_key\": ...}}.")
        for dep in deps:
            if dep.get("task_key") not in keys:
                raise _bad(f"Task {task['task_key']} depends on {dep.get('task_key')}, which is not a task of this job.")
    try:
        dependency_order(tasks)
    except ValueError:
        raise _bad("The task dependencies form a cycle.") from None
    return tasks


def _parameters(settings: dict) -> list[dict]:
    params = settings.get("parameters") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                               for p in params):
        raise _bad("parameters must be a list of {\"name\", \"default\"}.")
    return params


def _public(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def install(app: Flask, store: JobsStore, executor: RunExecutor, user: str, public_url: str) -> None:
    def route(path: str, methods: list[str]):
        def wrap(fn):
            for version in VERSIONS:
                app.add_url_rule(f"/api/{version}/jobs/{path}", f"jobs_{version}_{fn.__name__}", fn, methods=methods)
            return fn
        return wrap

    def body() -> dict:
        data = request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            raise _bad("The request body must be a JSON object.")
        return data

    def job_or_404(job_id: int) -> dict:
        job = store.job(job_id)
        if job is None:
            raise _job_missing(job_id)
        return job

    def start_run(job_id: int | None, settings: dict, run_type: str, job_params: dict, notebook_params: dict) -> int:
        defaults = {p["name"]: str(p.get("default", "")) for p in _parameters(settings)}
        unknown = sorted(set(job_params) - set(defaults))
        if job_id is not None and unknown:
            raise _bad(f"Job parameters {unknown} are not defined in the job.")
        values = {**defaults, **job_params}
        tasks = []
        for task in settings["tasks"]:
            notebook = task["notebook_task"]
            # fidelity: Jobs API — job parameters are pushed down to every notebook task and win over
            # its base_parameters; legacy notebook_params override base_parameters too
            params = {**(notebook.get("base_parameters") or {}), **notebook_params, **values}
            tasks.append({"task_key": task["task_key"], "notebook_task": notebook,
                          "depends_on": task.get("depends_on") or [], "run_if": task.get("run_if") or "ALL_SUCCESS",
                          "attempt_number": 0, "_params": params, **state("PENDING")})
        doc = {"job_id": job_id, "creator_user_name": user, "run_type": run_type, "format": "MULTI_TASK",
               "run_name": settings.get("name") or settings.get("run_name") or "Untitled",
               "start_time": now_ms(), "setup_duration": 0, "execution_duration": 0, "cleanup_duration": 0,
               "job_parameters": [{"name": n, "default": defaults.get(n, ""), "value": v} for n, v in values.items()],
               **state("PENDING")}
        if job_id is None:
            doc.pop("job_id")
        run_id, _ = store.add_run(job_id, doc, tasks)
        store.update(run_id, run_page_url=f"{public_url.rstrip('/')}/#job/{job_id or 0}/run/{run_id}")
        executor.start(run_id)
        return run_id

    @route("create", ["POST"])
    def create():
        settings = body()
        validate_tasks(settings.get("tasks"))
        _parameters(settings)
        return jsonify({"job_id": store.create_job(settings, user)})

    @route("get", ["GET"])
    def get():
        job = job_or_404(_id(request.args, "job_id"))
        return jsonify({**job, "run_as_user_name": user})

    @route("list", ["GET"])
    def list_jobs():
        expand = request.args.get("expand_tasks") in ("true", "True")
        name = request.args.get("name")
        jobs = [j for j in store.jobs() if name is None or j["settings"].get("name") == name]
        if not expand:
            jobs = [{**j, "settings": {k: v for k, v in j["settings"].items() if k not in ("tasks", "job_clusters")}}
                    for j in jobs]
        return jsonify({"jobs": jobs, "has_more": False} if jobs else {"has_more": False})

    @route("delete", ["POST"])
    def delete():
        job_id = _id(body(), "job_id")
        job_or_404(job_id)
        for run in store.runs(job_id):
            executor.cancel(run["run_id"])
        store.delete_job(job_id)
        return jsonify({})

    @route("reset", ["POST"])
    def reset_job():
        data = body()
        job_id = _id(data, "job_id")
        job_or_404(job_id)
        settings = data.get("new_settings")
        if not isinstance(settings, dict):
            raise _bad("Missing required field: new_settings")
        validate_tasks(settings.get("tasks"))
        _parameters(settings)
        store.set_settings(job_id, settings)
        return jsonify({})

    @route("update", ["POST"])
    def update():
        data = body()
        job_id = _id(data, "job_id")
        settings = dict(job_or_404(job_id)["settings"])
        new = data.get("new_settings") or {}
        if not isinstance(new, dict):
            raise _bad("new_settings must be an object.")
        tasks = {t["task_key"]: t for t in settings.get("tasks", [])}
        for task in new.get("tasks") or []:  # fidelity: Jobs API — update merges tasks by task_key
            tasks[task.get("task_key")] = task
        removed = set(data.get("fields_to_remove") or [])
        settings.update({k: v for k, v in new.items() if k != "tasks"})
        settings["tasks"] = [t for k, t in tasks.items() if k not in removed]
        for field in removed:
            settings.pop(field, None)
        validate_tasks(settings["tasks"])
        store.set_settings(job_id, settings)
        return jsonify({})

    @route("run-now", ["POST"])
    def run_now():
        data = body()
        job_id = _id(data, "job_id")
        job = job_or_404(job_id)
        params = {}
        for field in ("job_parameters", "notebook_params"):
            value = data.get(field) or {}
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise _bad(f"{field} must map names to strings.")
            params[field] = value
        for field in ("jar_params", "python_params", "spark_submit_params", "python_named_params", "sql_params",
                      "pipeline_params", "dbt_commands"):
            if data.get(field):
                raise _bad(f"{field} has no effect on notebook tasks: the Databricks emulator runs notebook tasks only.")
        run_id = start_run(job_id, job["settings"], "JOB_RUN", params["job_parameters"], params["notebook_params"])
        return jsonify({"run_id": run_id, "number_in_job": run_id})

    @route("runs/submit", ["POST"])
    def submit():
        data = body()
        validate_tasks(data.get("tasks"))
        run_id = start_run(None, data, "SUBMIT_RUN", {}, {})
        return jsonify({"run_id": run_id})

    def run_or_404(run_id: int) -> dict:
        run = store.run(run_id)
        if run is None:
            raise _run_missing(run_id)
        return run

    def shown(run: dict) -> dict:
        run = _public(run)
        run["tasks"] = [_public(t) for t in run.get("tasks", [])]
        return run

    @route("runs/get", ["GET"])
    def runs_get():
        return jsonify(shown(run_or_404(_id(request.args, "run_id"))))

    @route("runs/get-output", ["GET"])
    def runs_get_output():
        run_id = _id(request.args, "run_id")
        row = store.row(run_id)
        if row is None:
            raise _run_missing(run_id)
        doc, parent, output = row
        if parent is None:
            run = store.run(run_id) or {}
            if len(run.get("tasks", [])) != 1:
                # fidelity: Jobs API — get-output of a multi-task run's id is refused
                raise _bad("Retrieving the output of runs with multiple tasks is not supported. Please retrieve "
                           "the output of each individual task run instead.")
            task = run["tasks"][0]
            doc, output = task, (store.row(task["run_id"]) or ({}, None, None))[2]
        return jsonify({"metadata": _public(doc), **(output or {})})

    @route("runs/list", ["GET"])
    def runs_list():
        job_id = _id(request.args, "job_id") if request.args.get("job_id") else None
        runs = store.runs(job_id)
        if request.args.get("active_only") in ("true", "True"):
            runs = [r for r in runs if r["state"]["life_cycle_state"] in ("PENDING", "RUNNING", "QUEUED")]
        if request.args.get("completed_only") in ("true", "True"):
            runs = [r for r in runs if r["state"]["life_cycle_state"] not in ("PENDING", "RUNNING", "QUEUED")]
        expand = request.args.get("expand_tasks") in ("true", "True")
        runs = [shown(r) if expand else {k: v for k, v in _public(r).items() if k != "tasks"} for r in runs]
        return jsonify({"runs": runs, "has_more": False} if runs else {"has_more": False})

    @route("runs/cancel", ["POST"])
    def runs_cancel():
        run_id = _id(body(), "run_id")
        run_or_404(run_id)
        executor.cancel(run_id)  # asynchronous, as on Databricks: the run ends CANCELED shortly
        return jsonify({})

    @route("runs/cancel-all", ["POST"])
    def runs_cancel_all():
        data = body()
        if data.get("job_id") is not None:
            job_id = _id(data, "job_id")
            job_or_404(job_id)
            for run in store.runs(job_id):
                executor.cancel(run["run_id"])
        else:
            executor.cancel_all()
        return jsonify({})

    @route("runs/delete", ["POST"])
    def runs_delete():
        run_id = _id(body(), "run_id")
        run_or_404(run_id)
        if executor.is_active(run_id):
            # fidelity: Jobs API — an active run cannot be deleted (assumed wording)
            raise _bad(f"Run {run_id} is active and cannot be deleted. Cancel it first.")
        store.delete_run(run_id)
        return jsonify({})
