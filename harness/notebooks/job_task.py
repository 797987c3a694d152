"""One notebook task of an emulated Databricks job run, in its own process.

The workspace's Jobs service (emulator.services.databricks.jobs_runner) starts
``python -m harness.notebooks.job_task NOTEBOOK --params JSON --task-values FILE --task-key KEY
--result FILE --user USER`` with the workspace's DATABRICKS_HOST/DATABRICKS_TOKEN (and its Spark
tables' folder, harness.spark_tables) in its environment; the notebook runs as under ``harness notebook run`` and the result (exit value, the
failing cell's error and traceback) is written as JSON to ``--result``. The service cannot import
the harness (layers), so this is the seam between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from emulator import settings
from harness.notebooks import JsonFileTaskValues, run_notebook
from harness.workspaces import DatabricksWorkspace


def _exit_with_parent(parent: int) -> None:
    """End this task if the workspace server that started it (pid ``parent``, passed in: it may be
    gone before this process gets here) is gone: its run cannot report it any more, and an orphaned
    notebook would run on unseen."""

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.notebooks.job_task")
    parser.add_argument("notebook")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--task-values", required=True)
    parser.add_argument("--task-key", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    _exit_with_parent(args.parent_pid or os.getppid())
    workspace = DatabricksWorkspace(url=os.environ["DATABRICKS_HOST"], token=os.environ["DATABRICKS_TOKEN"],
                                    user=args.user, s3_url=os.environ.get("MLFLOW_S3_ENDPOINT_URL", ""),
                                    tables_dir=os.environ.get(settings.SPARK_TABLES_ENV, ""),
                                    catalog_cache=os.environ.get(settings.SPARK_CATALOG_CACHE_ENV, ""))
    result = run_notebook(args.notebook, json.loads(args.params), workspace=workspace,
                          task_values=JsonFileTaskValues(args.task_values), task_key=args.task_key)
    failed = result.failed_cell
    summary = {"passed": result.passed, "exit_value": result.exit_value, "seconds": result.seconds,
               "error": result.error or (failed.error if failed else None),
               "error_trace": failed.traceback if failed else None}
    tmp = Path(args.result + ".tmp")
    tmp.write_text(json.dumps(summary))
    os.replace(tmp, args.result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
