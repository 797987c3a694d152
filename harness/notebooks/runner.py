"""Run a Databricks notebook cell by cell in this Python process, as a Databricks job task would.

``run_notebook(path, params, workspace=..., task_values=...)`` is the entry point (the CLI's
``harness notebook run`` and a jobs service call it). The notebook sees ``dbutils``
(harness.notebooks.dbutils), ``display``/``displayHTML``, ``spark`` (a local SparkSession, started
only when a cell names it) and, with a workspace, the workspace's credentials and MLflow tracking
URI ``databricks`` with the notebook's own experiment, as on Databricks. The run stops at the first
failing cell; ``dbutils.notebook.exit(value)`` ends it successfully with that value.
"""

from __future__ import annotations

import ast
import contextlib
import io
import linecache
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harness.notebooks import pip_magic, source
from harness.notebooks import task_values as tv
from harness.notebooks.dbutils import (
    LocalDbUtils,
    NotebookExit,
    NotebookRunFailed,
    NotebookUtil,
    TaskValues,
    Widgets,
)

OUTPUT_LIMIT = 20_000  # characters of a cell's output kept in the report
USES_SPARK = re.compile(r"\b(spark|sc|sqlContext)\b")


@dataclass
class CellResult:
    notebook: str
    index: int
    kind: str
    first_line: str
    status: str = "not run"  # passed | failed | not run
    seconds: float = 0.0
    output: str = ""
    error: str | None = None
    traceback: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class NotebookResult:
    path: str
    params: dict[str, str]
    cells: list[CellResult] = field(default_factory=list)
    exit_value: str | None = None
    seconds: float = 0.0
    error: str | None = None  # the notebook could not be read or started

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.passed or c.status == "skipped" for c in self.cells)

    @property
    def failed_cell(self) -> CellResult | None:
        return next((c for c in self.cells if c.status == "failed"), None)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "passed": self.passed}


class _Tee(io.TextIOBase):
    """A cell's stdout/stderr: kept for the report and passed on to where output went before."""

    def __init__(self, buffer: io.StringIO, passthrough):
        self.buffer_, self.passthrough = buffer, passthrough

    def write(self, text: str) -> int:
        self.buffer_.write(text)
        if self.passthrough is not None:
            self.passthrough.write(text)
        return len(text)

    def flush(self) -> None:
        if self.passthrough is not None:
            self.passthrough.flush()

    def isatty(self) -> bool:
        return False


class _Spark:
    """One SparkSession for a run and the notebooks it runs, started on first use; with a workspace,
    its tables are the workspace's (harness.spark_tables)."""

    def __init__(self, master: str | None, workspace=None):
        self.master, self.workspace, self.session = master, workspace, None

    def get(self):
        if self.session is None:
            from harness.spark import get_spark, is_cluster, resolve_master

            tables_dir = getattr(self.workspace, "tables_dir", "")
            conf, jar = {}, None
            if tables_dir:
                from harness import spark_tables

                try:
                    jar = spark_tables.catalog_jar(self.workspace.catalog_cache or Path(tables_dir) / "catalog")
                except spark_tables.TablesUnavailable as exc:
                    print(f"note: {exc}; only two-level table names work", file=sys.stderr)
                conf = spark_tables.session_conf(tables_dir, jar, local=not is_cluster(resolve_master(self.master)))
            session = get_spark(self.master, app_name="harness-notebook", **conf)
            if tables_dir:
                self._check_warehouse(session, conf["spark.sql.warehouse.dir"])
                if jar is not None:
                    spark_tables.register_catalogs(
                        session, [*spark_tables.DEFAULT_CATALOGS, *spark_tables.uc_catalogs(self.workspace)])
            self.session = session
        return self.session

    @staticmethod
    def _check_warehouse(session, wanted: str) -> None:
        """A session this process had already started keeps its own warehouse (static settings)."""
        have = session.conf.get("spark.sql.warehouse.dir", "")
        if urlparse(have).path.rstrip("/") != urlparse(wanted).path.rstrip("/"):  # file:/x is file:///x
            print(f"note: this process's SparkSession was started before the notebook: its tables are in {have}, "
                  f"not the workspace's {wanted}", file=sys.stderr)


def display(obj: Any = None, *args, **kwargs) -> None:
    """Databricks' display(): a text rendering here (a Spark DataFrame's first rows, a table, the value)."""
    if obj is None:
        return
    if hasattr(obj, "show") and hasattr(obj, "schema"):  # a Spark DataFrame
        obj.show(20, truncate=False)
    elif hasattr(obj, "to_string"):  # pandas
        print(obj.to_string(max_rows=60))
    else:
        print(repr(obj) if not isinstance(obj, str) else obj)


def displayHTML(html: str) -> None:
    print(html)


class _Run:
    """One notebook's execution (``%run`` notebooks run inside their caller's _Run)."""

    def __init__(self, path: Path, params: dict, workspace, store: tv.TaskValuesStore, task_key: str, in_job: bool,
                 spark: _Spark, pip_install: bool, depth: int):
        self.path, self.params, self.workspace = path, params, workspace
        self.store, self.task_key, self.in_job = store, task_key, in_job
        self.spark, self.pip_install, self.depth = spark, pip_install, depth
        sdk_config = None
        if workspace is not None:
            from databricks.sdk.config import Config

            sdk_config = Config(host=workspace.url, token=workspace.token, retry_timeout_seconds=120)
        self.dbutils = LocalDbUtils(Widgets(params), TaskValues(store, task_key, in_job),
                                    NotebookUtil(self._run_child), sdk_config)
        self.namespace: dict[str, Any] = {
            "__name__": "__main__", "__builtins__": __builtins__, "__file__": str(path),
            "dbutils": self.dbutils, "display": display, "displayHTML": displayHTML,
            "getArgument": self.dbutils.widgets.getArgument,
        }

    # -- dbutils.notebook.run
    def _run_child(self, path: str, timeout_seconds: int, arguments: dict) -> str | None:
        child_path = source.resolve(path, self.path.parent)
        if self.depth >= 20:
            raise NotebookRunFailed(f"dbutils.notebook.run nested too deep at {child_path}")
        with _timeout(timeout_seconds, child_path):
            result = _run(child_path, arguments, self.workspace, self.store, self.task_key, self.in_job, self.spark,
                          self.pip_install, self.depth + 1)
        if not result.passed:
            failed = result.failed_cell
            why = result.error or (f"cell {failed.index} failed: {failed.error}" if failed else "failed")
            raise NotebookRunFailed(f"Notebook {path} failed: {why}")
        return result.exit_value

    # -- cells
    def run_cells(self, path: Path, cells: list[source.Cell], results: list[CellResult], passthrough,
                  progress=None) -> None:
        """Run ``cells`` of ``path`` into ``results``; NotebookExit propagates (the notebook ended).
        ``progress(result, done)`` is told when each cell starts (done=False) and ends."""
        failed = None
        for cell in cells:
            res = CellResult(str(path), cell.index, cell.kind, cell.first_line)
            results.append(res)
            if failed is not None:
                res.error = f"not run: cell {failed.index} failed"
                continue
            if progress:
                progress(res, False)
            buffer = io.StringIO()
            tee = _Tee(buffer, passthrough)
            started = time.perf_counter()
            try:
                with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                    self._cell(path, cell)
                res.status = "passed"
            except NotebookExit:
                res.status = "passed"
                raise
            except (Exception, SystemExit) as exc:  # noqa: BLE001  (any error, sys.exit too, fails the cell)
                res.status, failed = "failed", res
                res.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500] if str(exc) else type(exc).__name__
                res.traceback = _cell_traceback(exc)
            finally:
                res.seconds = time.perf_counter() - started
                res.output = buffer.getvalue()[-OUTPUT_LIMIT:]
                if progress:
                    progress(res, True)

    def _cell(self, path: Path, cell: source.Cell) -> None:
        kind = cell.kind
        if kind == "markdown":
            return
        if kind in ("python", "sql") and (kind == "sql" or USES_SPARK.search(cell.source)):
            self._ensure_spark()
        if kind == "python":
            _exec_python(cell.source, f"{path} [cell {cell.index}]", self.namespace)
        elif kind == "sql":
            display(self.namespace["spark"].sql(cell.source))
        elif kind == "pip":
            print(pip_magic.run(cell.source, Path.cwd(), self.pip_install), end="")
        elif kind == "run":
            self._percent_run(path, cell.source)
        elif kind == "sh":
            done = subprocess.run(["bash", "-c", cell.source], capture_output=True, text=True, check=False)
            print(done.stdout, end="")
            print(done.stderr, end="", file=sys.stderr)
            if done.returncode != 0:
                raise RuntimeError(f"%sh exited with status {done.returncode}")
        elif kind == "cd":
            os.chdir(os.path.expanduser(cell.source.strip() or "~"))
        elif kind == "fs":
            command, *args = shlex.split(cell.source)
            display(getattr(self.dbutils.fs, command)(*args))
        else:
            raise NotImplementedError(f"%{cell.magic} cells are not supported by the local runner "
                                      "(Python, %sql, %md, %pip, %run, %sh, %cd and %fs are)")

    def _ensure_spark(self) -> None:
        if "spark" not in self.namespace:
            session = self.spark.get()
            self.namespace.update(spark=session, sc=session.sparkContext)

    def _percent_run(self, path: Path, text: str) -> None:
        """``%run ./other [$name="value" ...]``: the other notebook's cells in this namespace."""
        words = shlex.split(text)
        if not words:
            raise ValueError("%run needs a notebook path")
        args = {}
        for word in words[1:]:
            name, sep, value = word.lstrip("$").partition("=")
            if not word.startswith("$") or not sep:
                raise ValueError(f"%run arguments are $name=value, got {word!r}")
            args[name] = value
        child = source.resolve(words[0], path.parent)
        results: list[CellResult] = []
        saved = self.dbutils.widgets
        if args:  # the included notebook's widgets take these values
            self.dbutils.widgets = Widgets(args)
        try:
            self.run_cells(child, source.read_cells(child), results, passthrough=sys.stdout)
        finally:
            self.dbutils.widgets = saved
        failed = next((r for r in results if r.status == "failed"), None)
        if failed:
            print(failed.traceback, file=sys.stderr)
            raise NotebookRunFailed(f"%run {words[0]}: cell {failed.index} failed: {failed.error}")


def _exec_python(code: str, filename: str, namespace: dict) -> None:
    """Run a cell; a last bare expression is displayed, as a notebook shows it."""
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)  # for tracebacks
    tree = ast.parse(code, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec"), namespace)  # noqa: S102  (running the notebook is the point)
    if last is not None:
        value = eval(compile(last, filename, "eval"), namespace)
        if value is not None:
            namespace["display"](value)


def _cell_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the runner's own frames say nothing about the notebook
    return "".join(traceback.format_exception(type(exc), exc, tb))


@contextlib.contextmanager
def _timeout(seconds: int, path: Path):
    """``dbutils.notebook.run``'s timeout: enforced with SIGALRM on the main thread when no timer runs."""
    usable = (seconds and seconds > 0 and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"Notebook {path} did not finish within {seconds}s (dbutils.notebook.run timeout)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _notebook_process_state(path: Path, run: _Run, experiment: str | None):
    """Working directory and sys.path at the notebook's folder (as on Databricks since DBR 13), the
    workspace's environment, and databricks.sdk.runtime's dbutils; all put back afterwards."""
    saved_cwd, saved_path = os.getcwd(), list(sys.path)
    saved_env = dict(os.environ)
    runtime_saved = None
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))
    if run.workspace is not None:
        os.environ.update(run.workspace.env)
        os.environ["MLFLOW_TRACKING_URI"] = "databricks"
        if experiment and not (saved_env.get("MLFLOW_EXPERIMENT_NAME") or saved_env.get("MLFLOW_EXPERIMENT_ID")):
            os.environ["MLFLOW_EXPERIMENT_NAME"] = experiment  # the notebook's own experiment
    runtime_saved = _patch_runtime(run)
    try:
        yield
    finally:
        _restore_runtime(runtime_saved)
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)


def _patch_runtime(run: _Run):
    """``from databricks.sdk.runtime import dbutils`` in the notebook's modules gets this run's dbutils."""
    if run.workspace is None:
        return None  # importing the module resolves the SDK's default credentials: only with the workspace's
    try:
        from databricks.sdk import runtime
    except Exception:  # noqa: BLE001  (outside DBR the module builds a RemoteDbUtils: it may fail)
        return None
    names = ("dbutils", "display", "displayHTML", "getArgument")
    saved = (runtime, {n: getattr(runtime, n, None) for n in names})
    runtime.dbutils, runtime.display, runtime.displayHTML = run.dbutils, display, displayHTML
    runtime.getArgument = run.dbutils.widgets.getArgument
    return saved


def _restore_runtime(saved) -> None:
    if saved:
        runtime, values = saved
        for name, value in values.items():
            setattr(runtime, name, value)


def _finish_mlflow() -> None:
    """End runs the notebook left active (a job's notebook ends with its process)."""
    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run():
            mlflow.end_run()


def _run(path: Path, params: dict, workspace, store, task_key: str, in_job: bool, spark: _Spark, pip_install: bool,
         depth: int, passthrough=None, progress=None) -> NotebookResult:
    params = {str(k): str(v) for k, v in (params or {}).items()}
    result = NotebookResult(str(path), params)
    started = time.perf_counter()
    try:
        cells = source.read_cells(path)
    except (OSError, UnicodeDecodeError, source.NotebookError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    run = _Run(path, params, workspace, store, task_key, in_job, spark, pip_install, depth)
    experiment = f"/Users/{workspace.user}/{path.stem}" if workspace is not None else None
    saved_uris = None
    if depth == 0 and "mlflow" in sys.modules:
        from harness import mlflow_uris

        saved_uris = mlflow_uris.snapshot()
        if workspace is not None:
            import mlflow
            from mlflow.tracking import fluent

            # The host process's own MLflow state would win over the notebook's variables: a
            # tracking URI it set, and its active experiment (an id of another server).
            mlflow.set_tracking_uri("databricks")
            host_experiment = fluent._active_experiment_id
            if host_experiment is not None and os.environ.get("MLFLOW_EXPERIMENT_ID") == host_experiment:
                del os.environ["MLFLOW_EXPERIMENT_ID"]  # exported by the host's set_experiment; restored below
            fluent._active_experiment_id = None
    try:
        with _notebook_process_state(path, run, experiment):
            try:
                run.run_cells(path, cells, result.cells, passthrough if passthrough is not None else sys.stdout,
                              progress)
            except NotebookExit as exit_:
                result.exit_value = exit_.value
                for cell in cells[len(result.cells):]:
                    result.cells.append(CellResult(str(path), cell.index, cell.kind, cell.first_line, "skipped",
                                                   error=None, output="not run: the notebook exited earlier"))
            if depth == 0:
                _finish_mlflow()
    finally:
        if saved_uris is not None:
            from harness import mlflow_uris

            mlflow_uris.restore(saved_uris)
    result.seconds = time.perf_counter() - started
    return result


def run_notebook(path: str | os.PathLike, params: dict | None = None, *, workspace=None,
                 task_values: tv.TaskValuesStore | None = None, task_key: str | None = None,
                 spark_master: str | None = None, pip_install: bool = False, passthrough=None,
                 progress=None) -> NotebookResult:
    """Run the notebook at ``path`` with job parameters ``params``.

    ``workspace``: a harness.workspaces.DatabricksWorkspace (url, token, user, env) or None (no
    DBFS, secrets or MLflow credentials). ``task_values``: the job run's store; given, the run is a
    job task named ``task_key`` (default: the notebook's name) and ``taskValues.get`` reads the
    store; without it, ``get`` answers its debugValue as outside a job. ``passthrough``: where cell
    output is echoed as it runs (default: stdout; ``io.StringIO()`` to keep it quiet).
    ``progress(cell_result, done)``: called as each of the notebook's own cells starts and ends.
    """
    notebook = source.resolve(path)
    in_job = task_values is not None
    store = task_values if task_values is not None else tv.MemoryTaskValues()
    return _run(notebook, params or {}, workspace, store, task_key or notebook.stem, in_job,
                _Spark(spark_master, workspace),
                pip_install, 0, passthrough, progress)
