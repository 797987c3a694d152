"""Where ``dbutils.jobs.taskValues`` keeps values between the tasks of one job run.

A store maps task key -> {key: JSON value}. The runner takes any object with ``get(task_key, key)``
(raising ``KeyError`` when absent) and ``set(task_key, key, value)``: the CLI passes a JSON file
between runs (``JsonFileTaskValues``); a jobs service can pass its own run's store.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

MAX_VALUE_BYTES = 48 * 1024  # Databricks: a task value's JSON is at most 48 KiB


class TaskValuesStore(Protocol):
    def get(self, task_key: str, key: str) -> Any: ...

    def set(self, task_key: str, key: str, value: Any) -> None: ...


class MemoryTaskValues:
    def __init__(self, values: dict | None = None):
        self.values: dict[str, dict[str, Any]] = values or {}
        self._lock = threading.Lock()

    def get(self, task_key: str, key: str) -> Any:
        with self._lock:
            return self.values[task_key][key]

    def set(self, task_key: str, key: str, value: Any) -> None:
        with self._lock:
            self.values.setdefault(task_key, {})[key] = value
            self._saved()

    def _saved(self) -> None:
        pass


class JsonFileTaskValues(MemoryTaskValues):
    """A JSON file ``{"task_key": {"key": value}}``, read at start and rewritten on every set."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        values = json.loads(self.path.read_text()) if self.path.is_file() and self.path.stat().st_size else {}
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise ValueError(f"{self.path}: task values must be a JSON object of objects, per task key")
        super().__init__(values)

    def _saved(self) -> None:
        # Write then rename: a crash mid-write never leaves half a store for the next task.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(self.values, out, indent=1)
        os.replace(tmp, self.path)


def checked(value: Any) -> Any:
    """The value as a later task reads it back (JSON round trip), or TypeError/ValueError as Databricks refuses it."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Task value must be JSON-serializable: {exc}") from None
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"Task value is {len(text.encode())} bytes as JSON; the limit is {MAX_VALUE_BYTES}.")
    return json.loads(text)
