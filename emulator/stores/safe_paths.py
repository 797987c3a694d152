"""Safe mapping of client-supplied paths (Files API, DBFS) onto folders of the state directory.

Every path a client sends is checked here before anything is read or written: no ``..`` or ``.``
segments (also when percent-encoded), no empty segments (``//`` would make a later part absolute),
no NUL or backslash, and no symlink anywhere below the root. The resolved path must stay inside
the root. Violations raise ``EmulatorError("INVALID_PARAMETER_VALUE", ..., 400)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import unquote

from emulator.errors import EmulatorError

_CHUNK = 1024 * 1024


def bad_path(path: str, why: str) -> EmulatorError:
    return EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid path {path!r}: {why}.", 400)


class UnderAFile(EmulatorError):
    """A write below an existing file (``/a/b/c`` where ``/a/b`` is a file). DBFS's answer
    (``dbfs/mkdirs``: "If a file (not a directory) exists at any prefix of the input path, this call
    throws an exception with RESOURCE_ALREADY_EXISTS"); the Files API maps it to its own code."""

    def __init__(self, shown: str, levels_up: int):
        prefix = shown.rstrip("/").rsplit("/", levels_up)[0] if shown else "a prefix"
        super().__init__(
            "RESOURCE_ALREADY_EXISTS",
            f"A file exists at {prefix}, a prefix of {shown or 'the path'}: nothing can be created below a file.",
            400,
        )


def file_above(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is not a directory, else None."""
    current = path.parent
    while not current.exists() and current != current.parent:
        current = current.parent  # exists() is False below a file (ENOTDIR) too
    return None if current.is_dir() else current


def split_segments(path: str, shown: str | None = None) -> list[str]:
    """The segments of a slash-separated relative path, refusing anything that could escape."""
    shown = path if shown is None else shown
    if "\x00" in path or "\\" in path:
        raise bad_path(shown, "NUL and backslash characters are not allowed")
    segments = path.split("/")
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash names the same folder
    for seg in segments:
        # Decode repeatedly so %2e%2e, %252e%252e, ... are caught whatever the layers of encoding.
        decoded, previous = seg, None
        while decoded != previous:
            previous, decoded = decoded, unquote(decoded)
        if seg == "":
            raise bad_path(shown, "empty path segments ('//') are not allowed")
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded or "\x00" in decoded:
            raise bad_path(shown, "'.' and '..' segments are not allowed")
    return segments


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime_ms: int


class Storage:
    """One root folder; all access goes through ``resolve`` so nothing outside it is touched."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = self.root.resolve()

    def resolve(self, segments: list[str], shown: str = "") -> Path:
        target = self._real_root.joinpath(*segments) if segments else self._real_root
        # No symlinks below the root: neither an escape nor an alias into another workspace's files.
        current = self._real_root
        for seg in segments:
            current = current / seg
            if current.is_symlink():
                raise bad_path(shown or "/".join(segments), "it goes through a symbolic link")
        resolved = target.resolve()
        if resolved != self._real_root and self._real_root not in resolved.parents:
            raise bad_path(shown or "/".join(segments), "it points outside the storage root")
        return target

    # -- reads -------------------------------------------------------------------------------
    @staticmethod
    def entry(path: Path) -> Entry:
        st = path.stat()
        is_dir = path.is_dir()
        return Entry(path.name, is_dir, 0 if is_dir else st.st_size, int(st.st_mtime * 1000))

    @staticmethod
    def list_dir(path: Path) -> list[Entry]:
        entries = []
        for child in sorted(path.iterdir(), key=lambda p: p.name):
            if child.is_symlink() or child.name.startswith(".upload-"):
                continue  # never follow links; hide in-flight uploads
            entries.append(Storage.entry(child))
        return entries

    @staticmethod
    def iter_file(path: Path, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            fh.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = fh.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    # -- writes ------------------------------------------------------------------------------
    @staticmethod
    def check_not_under_file(path: Path, shown: str = "") -> None:
        """Raise UnderAFile (a 4xx, not the OS error's 500) if a prefix of ``path`` is a file."""
        blocker = file_above(path)
        if blocker is not None:
            # fidelity: Databricks workspace
            raise UnderAFile(shown, len(path.parts) - len(blocker.parts))

    def make_dirs(self, path: Path, shown: str = "") -> None:
        self.check_not_under_file(path, shown)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a file appeared on the way meanwhile
            raise UnderAFile(shown, 0) from None

    def write_stream(self, path: Path, stream: BinaryIO, shown: str = "") -> int:
        """Write atomically: a temp file in the same folder, renamed over the target when complete,
        so a failed or concurrent upload never leaves a half-written artifact behind."""
        self.check_not_under_file(path, shown)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # a file appeared on the way meanwhile
            raise UnderAFile(shown, 1) from None
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def append(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "ab") as out:
            out.write(data)

    @staticmethod
    def delete(path: Path, recursive: bool = False) -> None:
        if path.is_dir():
            if recursive:
                shutil.rmtree(path)
            else:
                path.rmdir()
        else:
            path.unlink()

    @staticmethod
    def copy_tree(src: Path, dst: Path) -> None:
        # symlinks=True copies links as links, which resolve() then refuses to serve.
        shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
