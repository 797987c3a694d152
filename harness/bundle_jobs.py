"""A job from a Databricks Asset Bundle's YAML (``resources.jobs.<name>``) run in the emulated workspace.

Only what notebook-task jobs need is read: each job's ``name``, ``parameters`` and ``tasks``
(``task_key``, ``depends_on``, ``run_if``, ``notebook_task.notebook_path`` relative to the YAML file,
``base_parameters``). The bundle's notebooks (every ``.py`` starting with ``# Databricks notebook
source`` and every ``.ipynb`` below the YAML's folder) are uploaded under
``/Users/<user>/.bundle/<bundle>/files`` as ``databricks bundle deploy`` does, so ``%run ./other``
works there too; then ``jobs/create`` + ``jobs/run-now``, and the run is awaited.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath

import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.workspace import ImportFormat, Language

NOTEBOOK_HEADER = b"# Databricks notebook source"
MAX_NOTEBOOKS = 500


class BundleError(Exception):
    """The bundle cannot be read or names no runnable job."""


@dataclass
class Bundle:
    root: Path
    name: str
    jobs: dict[str, dict]


def load(path: str | Path) -> Bundle:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BundleError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{path}: not a bundle (a YAML mapping)")
    found = ((doc.get("resources") or {}).get("jobs")) or {}
    if not isinstance(found, dict) or not found:
        raise BundleError(f"{path}: no resources.jobs")
    name = str((doc.get("bundle") or {}).get("name") or path.parent.resolve().name)
    return Bundle(path.parent.resolve(), name, found)


def _notebooks(root: Path) -> list[Path]:
    found = []
    for file in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in file.relative_to(root).parts) or not file.is_file():
            continue
        if file.suffix == ".ipynb" or (file.suffix == ".py" and file.read_bytes().startswith(NOTEBOOK_HEADER)):
            found.append(file)
    if len(found) > MAX_NOTEBOOKS:
        raise BundleError(f"{root}: more than {MAX_NOTEBOOKS} notebooks")
    return found


def upload(w: WorkspaceClient, bundle: Bundle, user: str) -> str:
    """Upload the bundle's notebooks; the workspace folder they are in."""
    remote_root = f"/Users/{user}/.bundle/{bundle.name}/files"
    for file in _notebooks(bundle.root):
        relative = PurePosixPath(*file.relative_to(bundle.root).parts)
        target = f"{remote_root}/{relative.with_suffix('')}"
        w.workspace.mkdirs(target.rsplit("/", 1)[0])
        if file.suffix == ".ipynb":
            fmt, language = ImportFormat.JUPYTER, None
        else:
            fmt, language = ImportFormat.SOURCE, Language.PYTHON
        w.workspace.import_(target, content=base64.b64encode(file.read_bytes()).decode(), format=fmt,
                            language=language, overwrite=True)
    return remote_root


def job_settings(bundle: Bundle, key: str, remote_root: str) -> dict:
    """The job's settings for jobs/create, notebook paths made absolute in the workspace."""
    spec = bundle.jobs[key]
    if not isinstance(spec, dict) or not isinstance(spec.get("tasks"), list):
        raise BundleError(f"job {key}: no tasks")
    tasks = []
    for task in spec["tasks"]:
        task = dict(task)
        notebook = dict(task.get("notebook_task") or {})
        local = notebook.get("notebook_path")
        if local and not str(local).startswith("/"):
            resolved = (bundle.root / local).resolve()
            if bundle.root not in resolved.parents:
                raise BundleError(f"job {key}: notebook {local} is outside the bundle")
            relative = PurePosixPath(*resolved.relative_to(bundle.root).parts)
            notebook["notebook_path"] = f"{remote_root}/{relative.with_suffix('') if relative.suffix in ('.py', '.ipynb') else relative}"
        if notebook:
            task["notebook_task"] = notebook
        tasks.append(task)
    settings = {"name": spec.get("name") or key, "tasks": tasks}
    if spec.get("parameters"):
        settings["parameters"] = spec["parameters"]
    return settings


def run(w: WorkspaceClient, settings: dict, params: dict[str, str], timeout: timedelta) -> tuple[jobs.Run, dict]:
    """Create the job, run it now, wait; (the finished run, task key -> get-output)."""
    job = w.api_client.do("POST", "/api/2.2/jobs/create", body=settings)
    waiter = w.jobs.run_now(job["job_id"], job_parameters=params or None)
    finished = waiter.result(timeout=timeout)
    outputs = {t.task_key: w.jobs.get_run_output(t.run_id) for t in finished.tasks or []
               if t.state and t.state.life_cycle_state != jobs.RunLifeCycleState.SKIPPED}
    return finished, outputs
