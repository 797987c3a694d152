"""Separate virtualenvs for real client stacks that can't live beside the emulator's own MLflow.

azureml-mlflow 1.62.0.post6 (the newest plugin) requires mlflow-skinny<=3.15.0; beside the
emulator's MLflow 3.17.2 pip silently picks 1.60.0, whose artifact path is broken. So the Azure ML
client stack gets its own venv, built once under ``~/.cache/mlflow-azure-emulator/venvs/<name>-<hash of pins>`` (``$XDG_CACHE_HOME`` is honoured)
(``EMULATOR_CACHE_DIR`` moves it) and reused while the pins and the Python version stay the same.

    python -m harness.client_venvs            # build (or find) every client venv, print its python
    python -m harness.client_venvs azureml-clients   # just the Azure client stack (make azureml-clients)
    python -m harness.client_venvs mlflow-2.9.2      # just that one

Built with uv when it is installed (the ``test`` extra pins it: it resolves and installs a client
stack in seconds where pip takes minutes, and several venvs build side by side), else with pip.
The venv's key is its pins and Python, not the installer: either reuses the other's venvs.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from emulator.control.docker import packaged

# The real Azure client stack the seed's AML-only code imports (pinned: what was measured).
AZUREML_CLIENTS = (
    "mlflow==3.15.0",
    "azureml-mlflow==1.62.0.post6",
    "azureml-core==1.61.0.post4",
    "azure-ai-ml==1.35.2",
    "azure-identity==1.27.0",
    "azure-storage-blob==12.27.1",
    "scikit-learn==1.9.1",
)
# The MLflow clients teams run against Databricks (DBR ML images ship 2.x and 3.x) and Azure ML
# (azureml-mlflow caps MLflow at 3.15): one venv each for the version matrix (tests/clients/).
# 2.x predates numpy 2 and scikit-learn 1.6's pickles; databricks-sdk is what the seed's
# WorkspaceClient().workspace.mkdirs imports (MLflow 2.9 does not depend on it).
_MLFLOW2_DEPS = ("numpy==1.26.4", "pandas==2.2.3", "scikit-learn==1.5.2", "databricks-sdk==0.162.0")
_MLFLOW3_DEPS = ("scikit-learn==1.9.1", "databricks-sdk==0.162.0")
MATRIX = {
    "2.9.2": ("mlflow==2.9.2", "pyarrow==14.0.2", *_MLFLOW2_DEPS),
    "2.16.2": ("mlflow==2.16.2", *_MLFLOW2_DEPS),
    "2.22.5": ("mlflow==2.22.5", *_MLFLOW2_DEPS),
    "3.1.4": ("mlflow==3.1.4", *_MLFLOW3_DEPS),
    "3.10.1": ("mlflow==3.10.1", *_MLFLOW3_DEPS),
    "3.15.0": ("mlflow==3.15.0", *_MLFLOW3_DEPS),
    "3.17.2": ("mlflow==3.17.2", *_MLFLOW3_DEPS),
}
VENVS = {"azureml-clients": AZUREML_CLIENTS, **{f"mlflow-{v}": pins for v, pins in MATRIX.items()}}
CACHE_ENV = packaged.CACHE_ENV
_DONE = ".complete"


class ClientVenvError(RuntimeError):
    """The venv could not be built (pip's output says why)."""


def cache_dir() -> Path:
    # Outside any checkout, so CI's fresh clones and every project on the machine reuse one build.
    return packaged.cache_root()


def venv_dir(name: str, pins: tuple[str, ...] | None = None) -> Path:
    pins = VENVS[name] if pins is None else pins
    key = "\n".join([sys.version.split()[0], *sorted(pins)])
    return cache_dir() / "venvs" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def python(root: Path) -> Path:
    return root / "bin" / "python"


def built(root: Path) -> bool:
    """The venv at root was built to the end (an interrupted build is rebuilt)."""
    return (root / _DONE).exists()


def ensure(name: str, pins: tuple[str, ...] | None = None, log=print) -> Path:
    """The venv's python, building the venv first if needed (safe across concurrent callers)."""
    pins = VENVS[name] if pins is None else pins
    root = venv_dir(name, pins)
    if built(root):
        return python(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if built(root):  # another process built it meanwhile
            return python(root)
        shutil.rmtree(root, ignore_errors=True)  # a half-built one from an interrupted run
        uv = _uv()
        log(f"building the {name} client venv in {root} with {'uv' if uv else 'pip'} "
            "(once; reused while the pins stay the same)")
        # The standard library's venv either way: its pip and setuptools come from ensurepip
        # (MLflow 2.x imports pkg_resources, which newer setuptools releases no longer ship).
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        if uv:
            cmd = [uv, "pip", "install", "--python", str(python(root)), *pins]
        else:
            cmd = [str(python(root)), "-m", "pip", "install", "--disable-pip-version-check",
                   "--progress-bar", "off", *pins]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            tail = []
            for line in proc.stdout:
                tail = (tail + [line.rstrip()])[-40:]
                if line.startswith(("Collecting", "Successfully", "ERROR", "Installed", "error")):
                    log(f"  {name}: {line.rstrip()}")
        if proc.returncode != 0:
            installer = "uv" if uv else "pip"
            raise ClientVenvError(f"{installer} could not build the {name} venv ({' '.join(pins)}):\n" + "\n".join(tail))
        (root / _DONE).write_text("\n".join(pins) + "\n")
    return python(root)


def _uv() -> str | None:
    """uv's executable when the uv package is installed (it ships the binary), else None: pip."""
    try:
        import uv
    except ImportError:
        return None
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(VENVS)
    unknown = [n for n in names if n not in VENVS]
    if unknown:  # before building anything: a typo must not cost the other venvs' builds
        print(f"unknown client venv {', '.join(unknown)}; known: {', '.join(VENVS)}", file=sys.stderr)
        return 2
    # Side by side with uv (its cache is safe for concurrent installs); one at a time with pip.
    with ThreadPoolExecutor(4 if _uv() else 1) as pool:
        for path in pool.map(ensure, names):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
