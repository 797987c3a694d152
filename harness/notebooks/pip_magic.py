"""``%pip install ...`` in a notebook: by default only checked against this Python's packages (what is
missing or of a version the requirement excludes), installed with ``pip`` when the runner is told to."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

# pip options that take a value (skipped when reading the requirements).
_VALUED = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-c", "--constraint",
           "--target", "-t", "--prefix", "--root", "--platform", "--python-version", "--trusted-host"}


class PipMagicError(Exception):
    pass


def _requirement_lines(args: list[str], cwd: Path) -> list[str]:
    found, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("-r", "--requirement"):
            if i + 1 >= len(args):
                raise PipMagicError(f"{arg} needs a file")
            found += _file_lines(cwd / args[i + 1], cwd)
            i += 2
            continue
        if arg.startswith("--requirement="):
            found += _file_lines(cwd / arg.split("=", 1)[1], cwd)
        elif arg in _VALUED:
            i += 1
        elif not arg.startswith("-"):
            found.append(arg)
        i += 1
    return found


def _file_lines(path: Path, cwd: Path) -> list[str]:
    if not path.is_file():
        raise PipMagicError(f"requirements file not found: {path}")
    lines = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        lines += _requirement_lines(shlex.split(line), path.parent) if line.startswith("-") else [line]
    return lines


def missing(args: list[str], cwd: Path) -> list[str]:
    """Each requirement this Python does not satisfy, with why."""
    problems = []
    for line in _requirement_lines(args, cwd):
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{line} (a URL or path: cannot check it without installing; pass --pip-install)")
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{line} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{line} (installed: {version})")
    return problems


def run(line: str, cwd: Path, install: bool) -> str:
    """Handle one ``%pip`` line; returns what to print; raises PipMagicError when the cell fails."""
    args = shlex.split(line)
    if not args or args[0] != "install":
        if args and args[0] in ("list", "freeze", "show"):
            return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                                  check=False, cwd=cwd).stdout
        raise PipMagicError(f"%pip {line.strip()}: only `%pip install` (and list/freeze/show) run here")
    if install:
        done = subprocess.run([sys.executable, "-m", "pip", "install", *args[1:]], capture_output=True, text=True,
                              check=False, cwd=cwd)
        if done.returncode != 0:
            raise PipMagicError(f"pip install failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout
    problems = missing(args[1:], cwd)
    if problems:
        raise PipMagicError("missing from the runner's environment (install them, or run with --pip-install):\n  "
                            + "\n  ".join(problems))
    return "%pip install: every requirement is already satisfied here (checked, nothing installed)\n"
