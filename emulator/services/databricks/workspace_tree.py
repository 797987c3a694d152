"""The workspace file tree: folders made with the Workspace API, plus MLflow experiments as leaves.

Folders live in a small SQLite table (``<state>/workspace.db``) so they survive restarts. The root,
``/Users``, ``/Shared`` and the token user's home ``/Users/<user>`` always exist, as on Databricks.
Experiments are not stored twice: an experiment named ``/Users/u/folder/exp`` is the object at
that path, read from MLflow's tracking store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

from emulator.errors import EmulatorError
from emulator.stores.safe_paths import split_segments


def normalize(path: str | None, what: str = "path") -> str:
    """Absolute workspace path without a ``/Workspace`` prefix or trailing slash; 400 otherwise."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise EmulatorError(
            "INVALID_PARAMETER_VALUE", f"Path ({path}) is not a valid absolute workspace {what}.", 400
        )
    if path == "/Workspace" or path.startswith("/Workspace/"):
        path = path[len("/Workspace"):] or "/"
    segments = split_segments(path.rstrip("/")[1:]) if path.rstrip("/") else []
    return "/" + "/".join(segments)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class WorkspaceTree:
    def __init__(self, state_dir: Path, user: str):
        self.db_path = Path(state_dir) / "workspace.db"
        self.user = user
        self._lock = threading.Lock()
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS folders ("
                " path TEXT PRIMARY KEY, object_id INTEGER NOT NULL, created_ms INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=30)

    @property
    def builtin(self) -> dict[str, int]:
        return {"/": 0, "/Users": 1, "/Shared": 2, f"/Users/{self.user}": 3}

    def folder_id(self, path: str) -> int | None:
        if path in self.builtin:
            return self.builtin[path]
        with closing(self._connect()) as db:
            row = db.execute("SELECT object_id FROM folders WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    def is_folder(self, path: str) -> bool:
        return self.folder_id(path) is not None

    def mkdirs(self, path: str, is_blocked) -> None:
        """Create ``path`` and missing parents; ``is_blocked(p)`` says whether a non-folder sits at p."""
        chain = []
        current = path
        while current != "/":
            chain.append(current)
            current = parent_of(current)
        with self._lock, closing(self._connect()) as db, db:
            for folder in reversed(chain):
                if folder in self.builtin:
                    continue
                if is_blocked(folder):
                    raise EmulatorError(
                        "RESOURCE_ALREADY_EXISTS", f"Path ({folder}) already exists and is not a directory.", 400
                    )
                next_id = db.execute("SELECT COALESCE(MAX(object_id), 999) + 1 FROM folders").fetchone()[0]
                db.execute(
                    "INSERT OR IGNORE INTO folders (path, object_id, created_ms) VALUES (?, ?, ?)",
                    (folder, next_id, int(time.time() * 1000)),
                )

    def child_folders(self, path: str) -> list[tuple[str, int]]:
        prefix = "/" if path == "/" else path + "/"
        with closing(self._connect()) as db:
            rows = db.execute("SELECT path, object_id FROM folders").fetchall()
        found = {p: i for p, i in rows}
        found.update(self.builtin)
        return sorted(
            (p, i) for p, i in found.items()
            if p != path and p.startswith(prefix) and "/" not in p[len(prefix):]
        )

    def holds_folders(self) -> bool:
        """Folders beyond the built-in ones (what reset deletes)."""
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM folders LIMIT 1").fetchone() is not None

    def reset(self) -> None:
        """Back to a new workspace's tree: only the built-in folders."""
        with self._lock, closing(self._connect()) as db, db:
            # Nothing to delete (a test that made no folder): a read, not a commit and its fsyncs.
            if db.execute("SELECT 1 FROM folders LIMIT 1").fetchone():
                db.execute("DELETE FROM folders")

    def delete_folders(self, path: str) -> None:
        """Delete ``path`` and every folder below it."""
        with self._lock, closing(self._connect()) as db, db:
            db.execute(
                "DELETE FROM folders WHERE path = ? OR substr(path, 1, ?) = ?",
                (path, len(path) + 1, path + "/"),
            )
