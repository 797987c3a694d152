"""What the S3 gate keeps on disk, because moto keeps S3 in memory: every object written through
the gate (write-through, restored into moto at start) and the prefixes of finalized versions."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from urllib.parse import quote, unquote


class ObjectFiles:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self.name_max = os.pathconf(self.root, "PC_NAME_MAX")
        except (OSError, ValueError):
            self.name_max = 255

    @staticmethod
    def _name(key: str) -> str:
        # One quoted file name per key: no key can name a folder or leave the root.
        return quote(key, safe="")

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / "objects" / quote(bucket, safe="") / self._name(key)

    def can_keep(self, key: str) -> bool:
        """Whether ``key``'s file name fits the file system (most allow 255 bytes a name)."""
        return len(self._name(key).encode()) <= self.name_max

    def save(self, bucket: str, key: str, data: bytes) -> None:
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # a failed save leaves nothing half-written behind
            raise

    def remove(self, bucket: str, key: str) -> None:
        self._path(bucket, key).unlink(missing_ok=True)

    def objects(self):
        base = self.root / "objects"
        if not base.is_dir():
            return
        for bucket_dir in base.iterdir():
            for file in bucket_dir.iterdir():
                if not file.name.startswith(".part-"):
                    yield unquote(bucket_dir.name), unquote(file.name), file

    # Sealed prefixes: a finalized version's files are immutable.
    def _sealed_path(self) -> Path:
        return self.root / "sealed.txt"

    def sealed(self) -> set[str]:
        try:
            return {line for line in self._sealed_path().read_text().splitlines() if line}
        except FileNotFoundError:
            return set()

    def seal(self, prefix: str) -> None:
        with self._lock:
            if prefix in self.sealed():
                return
            with open(self._sealed_path(), "a") as fh:
                fh.write(prefix + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def clear(self) -> None:
        import shutil

        with self._lock:
            shutil.rmtree(self.root / "objects", ignore_errors=True)
            self._sealed_path().unlink(missing_ok=True)
