"""The documentation stays true to the code: the site builds with --strict (a broken link or
anchor fails), the README stays short, and every code block a reader would copy is exercised.

* ```bash blocks: each `emulator ...` / `harness ...` call is parsed by the real click CLIs, down
  to the subcommand, so a renamed command or option fails here.
* ```python blocks carry a marker on the line before the fence, an HTML comment the page does not
  show: ``<!-- docs-test: KIND[; given NAME, ...] -->``, where KIND is
    - ``run databricks`` / ``run azureml`` / ``run linked``: executed in a subprocess with the
      environment of the running workspace(s) (linked: both, linked for the block);
    - ``pytest``: written to a test file and run by pytest with the plugin, on the same workspaces;
    - ``compile: <why>``: compiled only, for code this venv cannot run (the real Azure client
      stack lives in a venv of its own, see harness.client_venvs) or a quote of the seed notebook.
  ``given`` names the notebook's own variables the block uses (a trained model, the workspace's
  ids), defined before it as the notebook defines them in earlier cells.
  Every python block, whatever its kind, must compile, and its imports of emulator/harness
  modules must resolve.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# bench/README.md is included into the site's Benchmarks page.
DOCS = [README, *sorted((ROOT / "docs" / "pages").glob("*.md")), ROOT / "bench" / "README.md"]
README_MAX_LINES = 250
# A hang guard only: nothing here depends on how long a block takes.
SUBPROCESS_TIMEOUT = 600

MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<spec>.*?)\s*-->$")
RUN_KINDS = ("run databricks", "run azureml", "run linked")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        return (self.marker or "").split(";")[0].split(":")[0].strip()

    @property
    def given(self) -> list[str]:
        for part in (self.marker or "").split(";")[1:]:
            part = part.strip()
            if part.startswith("given "):
                return [name.strip() for name in part[len("given "):].split(",") if name.strip()]
        return []


def blocks(path: Path) -> list[Block]:
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        before = [line.strip() for line in lines[max(0, start - 3):start] if line.strip()]
        marker = MARKER.match(before[-1]) if before else None
        found.append(Block(path, start + 1, fence.group(1), "\n".join(body) + "\n",
                           marker.group("spec") if marker else None))
        i += 1
    return found


ALL_BLOCKS = [block for path in DOCS for block in blocks(path)]
PYTHON = [b for b in ALL_BLOCKS if b.lang == "python"]
BASH = [b for b in ALL_BLOCKS if b.lang == "bash"]


# --- the site and the README -------------------------------------------------------------------

def test_site_builds_strict(tmp_path):
    """Broken links, missing anchors, pages left out of the nav and a missing include all fail."""
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "docs/mkdocs.yml", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "fidelity" / "index.html").is_file()


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/pages/"


def test_every_python_block_says_how_it_is_tested():
    for block in PYTHON:
        assert block.kind in (*RUN_KINDS, "pytest", "compile"), \
            f"{block.id}: mark the block with <!-- docs-test: ... --> (see tests/test_docs.py)"
        if block.kind == "compile":
            assert block.marker.partition(":")[2].strip(), \
                f"{block.id}: a compile-only block says why it cannot run"


# --- ```bash: emulator and harness calls against the real CLIs -----------------------------------

def _lift_substitutions(line: str) -> tuple[str, list[str]]:
    """`$(...)` replaced by a word; the inner command lines returned to be checked as well."""
    inner, out, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2:j - 1])
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def _commands(line: str):
    """The simple commands of a shell line, as word lists (pipes, lists and redirections split off)."""
    line, inner = _lift_substitutions(line)
    for sub in inner:
        yield from _commands(sub)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words, skip = [], False
    for word in lexer:
        if skip:
            skip = False
        elif word in ("&&", "||", ";", "|", "&", "(", ")"):
            yield words
            words = []
        elif word in (">", ">>", "<", ">&", "&>", "<<"):
            skip = True  # the redirection's target
        else:
            words.append(word)
    yield words


def _logical_lines(code: str):
    """Lines joined over `\\` continuations and over quotes left open (a multi-line `python -c '...'`)."""
    pending, joiner = "", ""
    for raw in code.splitlines():
        pending = f"{pending}{joiner}{raw}" if pending else raw
        if pending.endswith("\\"):
            pending, joiner = pending[:-1], ""
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # No closing quotation: the string goes on
            joiner = "\n"
            continue
        yield pending
        pending, joiner = "", ""
    if pending:
        yield pending


def cli_calls():
    calls = []
    for block in BASH:
        for offset, line in enumerate(_logical_lines(block.code)):
            for n, words in enumerate(w for w in _commands(line) if w):
                while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                    words = words[1:]  # FOO=bar emulator ...
                if words and os.path.basename(words[0]) in ("emulator", "harness"):
                    # `[--json]` in the docs marks an optional part: check it as given.
                    args = [w.strip("[]") for w in words[1:] if w.strip("[]")]
                    calls.append(pytest.param(os.path.basename(words[0]), args, id=f"{block.id}+{offset}.{n}"))
    return calls


CLI_CALLS = cli_calls()


def test_the_docs_show_cli_calls():
    """The parser below finds the calls it is meant to check (a guard against it finding none)."""
    assert len(CLI_CALLS) > 30
    assert {call.values[0] for call in CLI_CALLS} == {"emulator", "harness"}


def _parse_with_click(group: click.Command, prog: str, args: list[str]) -> None:
    """Parse as click would before running: unknown commands, unknown options, missing or extra
    arguments and bad values raise; nothing is executed."""
    ctx = group.make_context(prog, list(args), resilient_parsing=False)
    command = group
    while isinstance(command, click.Group):
        protected = getattr(ctx, "_protected_args", None)  # click >= 8.2
        rest = [*(ctx.protected_args if protected is None else protected), *ctx.args]
        if not rest:
            raise click.UsageError(f"`{ctx.command_path}` needs a command")
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)


@pytest.mark.parametrize("prog, args", CLI_CALLS)
def test_cli_call_parses(prog, args):
    from emulator.control.cli import main as emulator_main
    from harness.cli import main as harness_main

    group = {"emulator": emulator_main, "harness": harness_main}[prog]
    try:
        _parse_with_click(group, prog, args)
    except click.BadParameter as exc:
        path = exc.param is not None and isinstance(exc.param.type, click.Path) and exc.param.type.exists
        if not path:  # a file the reader makes first (`> journal.json`) is theirs, not the docs'
            pytest.fail(f"`{prog} {shlex.join(args)}`: {exc.format_message()}")
    except click.ClickException as exc:
        pytest.fail(f"`{prog} {shlex.join(args)}`: {exc.format_message()}")


# --- ```python ---------------------------------------------------------------------------------

@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_python_block_compiles_and_its_project_imports_resolve(block):
    tree = ast.parse(compile(block.code, block.id, "exec", flags=ast.PyCF_ONLY_AST))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in targets:
            if module.split(".")[0] not in ("emulator", "harness"):
                continue  # third-party: may live only in the client venv
            imported = importlib.import_module(module)
            if name and not hasattr(imported, name):
                importlib.import_module(f"{module}.{name}")  # a submodule, else ImportError


# The seed notebook's own variables, as its earlier cells define them.
MODEL = """\
import pandas as pd
from sklearn.linear_model import LinearRegression
X = pd.DataFrame({"Input_column1": [1.0, 2.0, 3.0, 4.0], "Input_column2": [0.5, 0.1, 0.9, 0.3],
                  "Input_column3": [2.0, 1.0, 0.0, 1.0]})
model = LinearRegression().fit(X, [1.0, 2.0, 3.5, 4.0])
"""


def _given(names: list[str], emulator) -> str:
    aml = emulator.azureml
    values = {"workspace_name": aml.workspace_name, "subscription_id": aml.subscription_id,
              "resource_group": aml.resource_group, "aml_tracking_uri": aml.tracking_uri, "loss": 0.25}
    lines = []
    for name in names:
        if name in ("model", "X"):
            if MODEL not in lines:
                lines.append(MODEL)
        elif name in values:
            lines.append(f"{name} = {values[name]!r}\n")
        else:
            raise AssertionError(f"no value for the given name {name!r}: add it to tests/test_docs.py")
    return "".join(lines)


def _client_env(*workspaces) -> dict[str, str]:
    """This process's environment without anything that points a client elsewhere, plus the workspaces'."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "DATABRICKS_", "AZUREML_", "EMULATOR_"))}
    for ws in workspaces:
        env.update(ws.env)
    return env


def _fresh(emulator) -> None:
    from emulator.control.live_reset import request_reset

    for ws in (emulator.databricks, emulator.azureml):
        request_reset(ws.url, ws.token)


def _show(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"


@pytest.mark.parametrize("block", [b for b in PYTHON if b.kind in RUN_KINDS], ids=lambda b: b.id)
def test_python_block_runs(block, emulator, tmp_path):
    from harness import links

    _fresh(emulator)  # each block starts from an empty workspace, as a reader's first try does
    role = block.kind.split()[1]
    workspaces = {"databricks": [emulator.databricks], "azureml": [emulator.azureml],
                  "linked": [emulator.databricks, emulator.azureml]}[role]
    script = tmp_path / "block.py"
    script.write_text(_given(block.given, emulator) + block.code)
    if role == "linked":
        links.link(emulator.databricks, emulator.azureml)
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_client_env(*workspaces),
                              capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    finally:
        if role == "linked":
            links.unlink(emulator.databricks)
    assert done.returncode == 0, f"{block.id}:\n{_show(done)}"


def _unique(blocks_: list[Block]) -> list[Block]:
    seen, out = set(), []
    for block in blocks_:  # the README repeats a page's example: run it once
        if block.code not in seen:
            seen.add(block.code)
            out.append(block)
    return out


@pytest.mark.parametrize("block", _unique([b for b in PYTHON if b.kind == "pytest"]), ids=lambda b: b.id)
def test_pytest_example_passes(block, emulator, tmp_path):
    """As a user's suite would run it: the plugin's fixtures, here on the module's running
    workspaces (a state dir whose workspaces run is used and left running)."""
    _fresh(emulator)
    (tmp_path / "test_example.py").write_text(block.code)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py",
         "--emulator-state-dir", str(emulator.state.root)],
        cwd=tmp_path, env=_client_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, f"{block.id}:\n{_show(done)}"
    assert re.search(r"\b\d+ passed\b", done.stdout) and " failed" not in done.stdout, done.stdout


def test_marker_helpers_read_what_the_pages_write():
    block = Block(README, 1, "python", "", "run azureml; given workspace_name, loss")
    assert (block.kind, block.given) == ("run azureml", ["workspace_name", "loss"])
    assert Block(README, 1, "python", "", "compile: needs the client venv").kind == "compile"
    line = 'eval "$(emulator status --json | python3 -c \'print(1)\')"  # comment'
    assert [w for w in _commands(line) if w] == [["emulator", "status", "--json"], ["python3", "-c", "print(1)"],
                                                  ["eval", "SUBSTITUTED"]]
    assert list(_logical_lines("a \\\n  b\nc 'x\ny'\n")) == ["a   b", "c 'x\ny'"]
    with pytest.raises(click.UsageError):
        from emulator.control.cli import main
        _parse_with_click(main, "emulator", ["status", "--no-such-option"])
