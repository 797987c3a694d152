"""A notebook file as a list of cells: Databricks source format (``.py``) or Jupyter (``.ipynb``).

Databricks exports a Python notebook as ``# Databricks notebook source`` followed by cells separated
by ``# COMMAND ----------``; a magic cell has every line prefixed with ``# MAGIC`` (``%md``,
``%pip``, ``%run``, ``%sh``, ``%sql``...). In an ``.ipynb`` a code cell's first line is the magic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

HEADER = "# Databricks notebook source"
SEPARATOR = re.compile(r"^# COMMAND -{10,}\s*$", re.MULTILINE)
MAGIC_PREFIX = re.compile(r"^# MAGIC ?")
# The magics a cell may start with; anything else starting with % is refused as unsupported.
KINDS = {"md": "markdown", "markdown": "markdown", "pip": "pip", "run": "run", "sh": "sh", "cd": "cd",
         "sql": "sql", "python": "python", "fs": "fs"}
EXTENSIONS = ("", ".py", ".ipynb")


class NotebookError(Exception):
    """The file is no notebook this runner reads."""


@dataclass
class Cell:
    index: int  # 1-based, as the Databricks UI numbers commands
    kind: str  # python | markdown | pip | run | sh | cd | sql | fs | unsupported
    source: str  # the code without the magic line's %kind (for python: the cell's code)
    magic: str = ""  # the magic's name as written (e.g. "scala" for an unsupported one)

    @property
    def first_line(self) -> str:
        lines = [ln for ln in self.source.splitlines() if ln.strip()]
        return lines[0][:80] if lines else ""


def _classify(index: int, text: str) -> Cell:
    stripped = text.strip("\n")
    match = re.match(r"\s*%%?(\w+)[ \t]*(.*)", stripped, re.DOTALL)  # %%sh: Jupyter's cell-magic form
    if not match:
        return Cell(index, "python", stripped)
    magic, rest = match.group(1), match.group(2)
    kind = KINDS.get(magic, "unsupported")
    return Cell(index, kind, rest if kind != "python" else rest.lstrip("\n"), magic)


def _source_cells(text: str) -> list[Cell]:
    body = text.split("\n", 1)[1] if "\n" in text else ""
    cells = []
    for chunk in SEPARATOR.split(body):
        lines = chunk.strip("\n").splitlines()
        if not any(ln.strip() for ln in lines):
            continue
        if all(MAGIC_PREFIX.match(ln) or not ln.strip() for ln in lines):
            lines = [MAGIC_PREFIX.sub("", ln, count=1) for ln in lines]
        cells.append(_classify(len(cells) + 1, "\n".join(lines)))
    return cells


def _ipynb_cells(path: Path) -> list[Cell]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        raw_cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise NotebookError(f"{path}: not a Jupyter notebook ({exc})") from None
    cells = []
    for raw in raw_cells:
        src = raw.get("source", "")
        text = "".join(src) if isinstance(src, list) else str(src)
        if not text.strip():
            continue
        if raw.get("cell_type") != "code":
            cells.append(Cell(len(cells) + 1, "markdown", text))
        else:
            cells.append(_classify(len(cells) + 1, text))
    return cells


def resolve(path: str | Path, relative_to: Path | None = None) -> Path:
    """The notebook file for ``path`` (Databricks paths name notebooks without an extension)."""
    base = Path(path)
    if relative_to is not None and not base.is_absolute():
        base = relative_to / base
    for ext in EXTENSIONS:
        candidate = base.with_name(base.name + ext)
        if candidate.is_file():
            return candidate.resolve()
    raise NotebookError(f"notebook not found: {path}" + (f" (from {relative_to})" if relative_to else ""))


def read_cells(path: Path) -> list[Cell]:
    if path.suffix == ".ipynb":
        return _ipynb_cells(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip("\ufeff").startswith(HEADER):
        return _source_cells(text.lstrip("\ufeff"))
    # A plain Python file (a Databricks "file", not a notebook): one cell.
    return [_classify(1, text)] if text.strip() else []
