"""``dbutils`` for a notebook run locally against the emulated workspace.

* ``widgets``            definitions in the notebook, values from the run's parameters (job or CLI)
* ``jobs.taskValues``    a pluggable store shared by the tasks of one job run (harness.notebooks.task_values)
* ``notebook``           ``exit(value)`` ends the notebook; ``run(path, timeout, args)`` runs another one
* ``fs`` / ``secrets``   databricks-sdk's own remote implementation (RemoteDbUtils): DBFS and ``/Volumes``
                         paths over the workspace's DBFS and Files APIs, secrets over its Secrets API
* ``library``            ``restartPython()`` is a no-op that says so
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from harness.notebooks import task_values as tv

_MISSING = object()


class NotebookExit(BaseException):
    """``dbutils.notebook.exit(value)``: a BaseException, so a notebook's ``except Exception`` lets it through."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class InputWidgetNotDefined(Exception):
    """What Databricks raises (com.databricks.dbutils_v1.InputWidgetNotDefined) for an unknown widget."""


class NotebookRunFailed(Exception):
    """``dbutils.notebook.run``: the called notebook failed (Databricks raises WorkflowException)."""


class Widgets:
    def __init__(self, params: dict[str, str]):
        self._params = {str(k): str(v) for k, v in (params or {}).items()}
        self._defaults: dict[str, str] = {}

    def _define(self, name: str, default: str, choices=None, multi: bool = False) -> None:
        default = "" if default is None else str(default)
        if choices is not None:
            choices = [str(c) for c in choices]
            picked = default.split(",") if multi else [default]
            bad = [p for p in picked if p not in choices]
            if bad:
                raise ValueError(f"Default value {bad[0]!r} of widget {name!r} is not among its choices {choices}")
        self._defaults[name] = default

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:
        self._define(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: list, label: str | None = None) -> None:
        self._define(name, defaultValue, choices)

    def combobox(self, name: str, defaultValue: str, choices: list, label: str | None = None) -> None:
        self._define(name, defaultValue)  # a combobox takes any value, its choices are suggestions

    def multiselect(self, name: str, defaultValue: str, choices: list, label: str | None = None) -> None:
        self._define(name, defaultValue, choices, multi=True)

    def get(self, name: str) -> str:
        # A job's parameter wins over the widget's default, as on Databricks.
        if name in self._params:
            return self._params[name]
        if name in self._defaults:
            return self._defaults[name]
        raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def getArgument(self, name: str, defaultValue: str | None = None) -> str | None:
        try:
            return self.get(name)
        except InputWidgetNotDefined:
            return defaultValue

    def getAll(self) -> dict[str, str]:
        return {**self._defaults, **self._params}

    def remove(self, name: str) -> None:
        if self._defaults.pop(name, _MISSING) is _MISSING:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")

    def removeAll(self) -> None:
        self._defaults.clear()


class TaskValues:
    """``in_job``: the run is a job task (a store was given); outside a job ``get`` answers ``debugValue``."""

    def __init__(self, store: tv.TaskValuesStore, task_key: str, in_job: bool):
        self.store, self.task_key, self.in_job = store, task_key, in_job

    def set(self, key: str, value: Any) -> None:
        self.store.set(self.task_key, key, tv.checked(value))

    def get(self, taskKey: str, key: str, default: Any = None, debugValue: Any = None) -> Any:
        if not self.in_job:
            if debugValue is None:
                raise TypeError("Must pass debugValue when calling get outside of a job context. "
                                "debugValue cannot be None.")
            return debugValue
        try:
            return self.store.get(taskKey, key)
        except KeyError:
            if default is None:
                raise ValueError(f"No task value with key {key!r} was set by task {taskKey!r}, and no default "
                                 f"was given.") from None
            return default


class Jobs:
    def __init__(self, task_values: TaskValues):
        self.taskValues = task_values


class NotebookUtil:
    def __init__(self, run_child: Callable[[str, int, dict], str | None]):
        self._run_child = run_child

    def exit(self, value: Any = "") -> None:
        raise NotebookExit("" if value is None else str(value))

    def run(self, path: str, timeout_seconds: int = 0, arguments: dict | None = None) -> str | None:
        return self._run_child(path, timeout_seconds, dict(arguments or {}))


class Library:
    def restartPython(self) -> None:
        print("dbutils.library.restartPython(): no-op in the local runner — the notebook keeps its Python "
              "process; packages installed by %pip are importable already.", file=sys.stderr)


class LocalDbUtils:
    def __init__(self, widgets: Widgets, task_values: TaskValues, notebook: NotebookUtil, sdk_config=None):
        self.widgets = widgets
        self.jobs = Jobs(task_values)
        self.notebook = notebook
        self.library = Library()
        self._sdk_config = sdk_config
        self._remote = None

    def _remote_utils(self, util: str):
        if self._sdk_config is None:
            raise RuntimeError(f"dbutils.{util} needs a workspace: run the notebook against the emulator "
                               "(harness notebook run --state-dir ...)")
        if self._remote is None:
            from databricks.sdk.dbutils import RemoteDbUtils

            self._remote = RemoteDbUtils(self._sdk_config)
        return self._remote

    @property
    def fs(self):
        return self._remote_utils("fs").fs

    @property
    def secrets(self):
        return self._remote_utils("secrets").secrets

    def help(self) -> None:
        print("dbutils (local runner): widgets, jobs.taskValues, notebook.exit/run, fs, secrets, library.restartPython")

    def __repr__(self) -> str:
        return "<dbutils: harness notebook runner>"
