"""Process helpers for benchmarks: a stock `mlflow server` to compare with, and RSS readings."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from emulator.control import launcher


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


def first_answer(url: str, token: str | None, path: str = "/api/2.0/mlflow/experiments/search",
                 timeout: float = 180.0, alive=lambda: True) -> float:
    """Poll an authenticated store-backed API call until it answers 200; returns when (monotonic).
    /health alone is not the figure users wait for: the first real answer is."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = requests.get(f"{url}{path}", params={"max_results": 1}, headers=headers, timeout=60)
            if answer.status_code == 200:
                return time.monotonic()
        except requests.RequestException:
            pass
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{url}{path} gave no 200 answer within {timeout:.0f}s")
        time.sleep(0.05)


class StockServer:
    """A stock `mlflow server` on SQLite, the same kind of store the emulator uses, on a new store."""

    def __init__(self, workdir: Path, workers: int = 1):
        self.workdir, self.workers = workdir, workers
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> dict:
        """Launch, then time both /health and the first 200 API answer (seconds from launch)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        port = launcher.free_port()
        self._log = open(self.workdir / "stock.log", "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{self.workdir / 'stock.db'}",
             "--artifacts-destination", str(self.workdir / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(self.workers)],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        self.url = f"http://127.0.0.1:{port}"
        alive = lambda: self.proc.poll() is None  # noqa: E731
        try:
            while not launcher.healthy(self.url):
                if not alive() or time.monotonic() - started > 180:
                    raise RuntimeError(f"stock mlflow server did not start; see {self.workdir / 'stock.log'}")
                time.sleep(0.05)
            healthy = time.monotonic() - started
            answered = first_answer(self.url, None, alive=alive) - started
        except BaseException:
            self.stop()
            raise
        return {"healthy_s": round(healthy, 3), "first_answer_s": round(answered, 3)}

    def stop(self) -> float:
        """SIGTERM the server and its workers; returns the seconds until it has exited."""
        started = time.monotonic()
        for pid in [*_children(self.proc.pid), self.proc.pid]:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=60)
        self._log.close()
        return time.monotonic() - started

