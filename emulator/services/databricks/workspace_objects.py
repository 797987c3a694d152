"""Notebooks and files imported into the workspace tree (``workspace/import``), kept in SQLite.

A notebook is stored as its Python source (``# Databricks notebook source`` format) or as the
Jupyter JSON it was imported as; a workspace file as its bytes. Rows live in ``<state>/workspace.db``
next to the folders (``workspace_tree``), so they survive restarts and a workspace reset empties
them. ``export_to`` writes a folder's notebooks as files below a local directory (through
``safe_paths.Storage``) so a job's notebook task can run there, ``%run ./other`` included.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from emulator.stores.safe_paths import Storage, split_segments

SOURCE_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "\n# COMMAND ----------\n"


class WorkspaceObjects:
    def __init__(self, state_dir: Path):
        self.db_path = Path(state_dir) / "workspace.db"
        self._lock = threading.Lock()
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS objects ("
                " path TEXT PRIMARY KEY, object_id INTEGER NOT NULL, object_type TEXT NOT NULL,"
                " kind TEXT NOT NULL, content BLOB NOT NULL, created_ms INTEGER NOT NULL,"
                " modified_ms INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    def get(self, path: str) -> dict | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT path, object_id, object_type, kind, content, created_ms, modified_ms"
                             " FROM objects WHERE path = ?", (path,)).fetchone()
        return _row(row) if row else None

    def put(self, path: str, object_type: str, kind: str, content: bytes) -> None:
        """Insert or replace (the caller checked ``overwrite``); a replaced object keeps its id."""
        now = int(time.time() * 1000)
        with self._lock, closing(self._connect()) as db, db:
            old = db.execute("SELECT object_id, created_ms FROM objects WHERE path = ?", (path,)).fetchone()
            if old:
                object_id, created = old
            else:
                # Ids above the folders' range (workspace_tree starts at 1000).
                object_id = db.execute("SELECT COALESCE(MAX(object_id), 99999999) + 1 FROM objects").fetchone()[0]
                created = now
            db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (path, object_id, object_type, kind, content, created, now))

    def children(self, folder: str) -> list[dict]:
        prefix = "/" if folder == "/" else folder + "/"
        return [o for o in self.below(folder) if "/" not in o["path"][len(prefix):]]

    def below(self, folder: str) -> list[dict]:
        prefix = "/" if folder == "/" else folder + "/"
        with closing(self._connect()) as db:
            rows = db.execute("SELECT path, object_id, object_type, kind, content, created_ms, modified_ms"
                              " FROM objects WHERE substr(path, 1, ?) = ? ORDER BY path",
                              (len(prefix), prefix)).fetchall()
        return [_row(r) for r in rows]

    def delete(self, path: str) -> None:
        """Delete the object at ``path`` and every object below it (a folder's contents)."""
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM objects WHERE path = ? OR substr(path, 1, ?) = ?",
                       (path, len(path) + 1, path + "/"))

    def holds_objects(self) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is not None

    def reset(self) -> None:
        with self._lock, closing(self._connect()) as db, db:
            db.execute("DELETE FROM objects")

    def export_to(self, folder: str, dest: Path) -> None:
        """Write the notebooks below workspace ``folder`` under ``dest`` (``<name>.py`` / ``.ipynb``)."""
        root = Storage(dest)
        prefix = "/" if folder == "/" else folder + "/"
        for obj in self.below(folder):
            relative = obj["path"][len(prefix):]
            if obj["object_type"] == "NOTEBOOK":
                relative += ".ipynb" if obj["kind"] == "ipynb" else ".py"
            target = root.resolve(split_segments(relative))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(obj["content"])


def _row(row) -> dict:
    keys = ("path", "object_id", "object_type", "kind", "content", "created_ms", "modified_ms")
    return dict(zip(keys, row))


def source_of_jupyter(raw: bytes) -> bytes:
    """A Jupyter notebook's code and markdown cells in Databricks' Python source format."""
    notebook = json.loads(raw)
    cells = []
    for cell in notebook.get("cells", []):
        text = cell.get("source", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        if cell.get("cell_type") == "markdown":
            text = "\n".join(["# MAGIC %md"] + [f"# MAGIC {line}".rstrip() for line in text.splitlines()])
        elif cell.get("cell_type") != "code":
            continue
        cells.append(text.strip("\n"))
    return (SOURCE_HEADER + "\n" + CELL_SEPARATOR.join(cells) + "\n").encode()


def jupyter_of_source(raw: bytes) -> bytes:
    """A source-format notebook as Jupyter JSON (one code cell per ``COMMAND`` block)."""
    text = raw.decode("utf-8", errors="replace")
    text = text.removeprefix(SOURCE_HEADER)
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": block.strip("\n")} for block in text.split(CELL_SEPARATOR.strip("\n"))]
    notebook = {"cells": cells, "metadata": {"language_info": {"name": "python"}}, "nbformat": 4,
                "nbformat_minor": 5}
    return json.dumps(notebook, indent=1).encode()
