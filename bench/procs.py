"""Process helpers for benchmarks: a stock `mlflow server` to compare with, and RSS readings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from emulator import launcher


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(p) for p in fh.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb(pid: int) -> float:
    """Current resident memory of a process and all its descendants, in MiB."""
    return sum(_status_kb(p, "VmRSS") for p in [pid, *_children(pid)]) / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process and its descendants, in MiB."""
    return sum(_status_kb(p, "VmHWM") for p in [pid, *_children(pid)]) / 1024


@contextmanager
def stock_mlflow_server(workdir: Path, workers: int = 1):
    """A stock `mlflow server` on SQLite, the same kind of store the emulator uses."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = launcher.free_port()
    log = open(workdir / "stock.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server",
         "--backend-store-uri", f"sqlite:///{workdir / 'stock.db'}",
         "--artifacts-destination", str(workdir / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while not launcher.healthy(url):
            if proc.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"stock mlflow server did not start; see {workdir / 'stock.log'}")
            time.sleep(0.2)
        yield url, proc.pid, time.monotonic() - started
    finally:
        for pid in [*_children(proc.pid), proc.pid]:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)
        log.close()
