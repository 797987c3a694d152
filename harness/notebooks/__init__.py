"""Users' Databricks notebooks run offline against the emulated workspace (`harness notebook run`).

``run_notebook`` (harness.notebooks.runner) runs one notebook file cell by cell with a local
``dbutils`` (harness.notebooks.dbutils); the task-values store is pluggable
(harness.notebooks.task_values), so a jobs service can run a job's notebook tasks with one store.
"""

from harness.notebooks.runner import CellResult, NotebookResult, run_notebook
from harness.notebooks.task_values import JsonFileTaskValues, MemoryTaskValues

__all__ = ["CellResult", "JsonFileTaskValues", "MemoryTaskValues", "NotebookResult", "run_notebook"]
