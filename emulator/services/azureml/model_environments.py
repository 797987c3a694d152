"""The Python an online deployment's inference server runs in, built from the MLflow model's requirements.

Azure ML builds a deployment's image from the model's environment (``requirements.txt`` /
``conda.yaml`` / ``python_env.yaml``). Here the inference server runs the emulator's own
``deployment_runner`` (it needs the emulator's MLflow, waitress and the emulator package), so:

* **Fast path, no environment:** every requirement's *distribution* is installed in the emulator's
  interpreter (the project's own scikit-learn model): the server runs in that interpreter, as before,
  in seconds. A different *version* than the model pins is used as is and named in the logs
  (MLflow's ``env_manager=local`` does the same): replacing the serving stack's own numpy, pandas
  or MLflow under it would break the server, and a full per-model copy costs minutes per model.
* **Layered environment:** otherwise a venv whose ``.pth`` adds the emulator's site-packages
  *after* its own, into which only the missing requirements are installed (``uv``, else ``pip``),
  constrained to the versions the emulator already has, so nothing it relies on changes.

* **Offline:** when the installer reaches no index at all (connection, DNS or TLS errors), the
  server's own Python serves as on the fast path and the log names what is missing: an offline CI
  machine must not fail every model whose inferred requirements go beyond the emulator's.

Environments live in the directory the launcher hands down (``settings.model_envs_dir``), one per
(emulator interpreter and its packages, missing requirements), reused across deployments and
restarts. A build holds a per-environment file lock (two deployments of one model build it once),
happens in a temporary directory renamed into place at the end (a crash never leaves a half-built
environment that looks finished), and writes its progress into the deployment's log.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

_DONE = "emulator-environment.json"  # written last, before the rename
_SOURCES = ("requirements.txt", "python_env.yaml", "conda.yaml")


class EnvironmentBuildFailed(Exception):
    """The model's requirements could not be installed (the message names them)."""


class IndexUnreachable(Exception):
    """The installer could not reach a package index at all (an offline machine or container)."""


# What pip and uv print when no index answers at all, as opposed to an index that has no such
# package (pip: "No matching distribution found" after these; uv: "was not found in the package registry").
_OFFLINE_MARKERS = (
    "NewConnectionError", "ConnectTimeoutError", "SSLError", "CERTIFICATE_VERIFY_FAILED", "ProxyError",
    "Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
    "Failed to establish a new connection", "Connection refused", "connection refused",
    "Failed to fetch", "error sending request", "dns error", "invalid peer certificate",
)


def index_unreachable(output: list[str]) -> bool:
    return any(marker in line for line in output for marker in _OFFLINE_MARKERS)


def model_requirements(model_dir: Path) -> tuple[list[str], str | None]:
    """(requirement lines, the file they came from) as MLflow wrote them beside the MLmodel file."""
    model_dir = Path(model_dir)
    req = model_dir / "requirements.txt"
    if req.is_file():
        return _requirement_lines(req.read_text()), req.name
    import yaml

    for name in ("python_env.yaml", "conda.yaml"):
        path = model_dir / name
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise EnvironmentBuildFailed(f"the model's {name} is not valid YAML: {exc}") from None
        deps = (doc.get("dependencies") if isinstance(doc, dict) else None) or []
        if name == "conda.yaml":  # the pip list inside conda's dependencies
            deps = [d for item in deps if isinstance(item, dict) for d in item.get("pip", [])]
        return _requirement_lines("\n".join(str(d) for d in deps)), name
    return [], None


def _requirement_lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):  # options (-r, -c, --index-url): not packages
            lines.append(line)
    return lines


def split_requirements(lines: list[str]) -> tuple[list[str], list[str]]:
    """(missing from the emulator's interpreter, present at another version than asked: notes)."""
    from packaging.requirements import InvalidRequirement, Requirement

    missing, notes = [], []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            missing.append(line)  # a URL or path: only the installer can tell
            continue
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            notes.append(f"{line} asked, {req.name} {have} used (the inference server's own)")
    return missing, notes


def _base_distributions() -> list[str]:
    """name==version of everything the emulator's interpreter has: the build's constraints."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and dist.version:
            pins[name.lower()] = f"{name}=={dist.version}"
    return sorted(pins.values())


def _base_site_dirs() -> list[str]:
    return [p for p in dict.fromkeys(sys.path)
            if p.endswith(("site-packages", "dist-packages")) and os.path.isdir(p)]


def environment_key(missing: list[str], base: list[str]) -> str:
    # The base's packages are in the key: a layer built over other versions could shadow newer ones.
    text = "\n".join([sys.version, sys.prefix, *sorted(missing), "--", *base])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _python(root: Path) -> Path:
    return root / "bin" / "python"


def _uv() -> str | None:
    try:
        import uv
    except ImportError:
        return shutil.which("uv")
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


def prepare(model_dir: Path, envs_dir: Path, log, timeout: float) -> tuple[str, Path | None]:
    """(python for the inference server, the environment's root or None on the fast path).

    ``log(line)`` writes a line into the deployment's log. Raises EnvironmentBuildFailed.
    """
    lines, source = model_requirements(model_dir)
    if source is None:
        log("Environment: the model declares no requirements; using the inference server's Python.")
        return sys.executable, None
    missing, notes = split_requirements(lines)
    for note in notes:
        log(f"Environment: note: {note}")
    if not missing:
        # fidelity: Online endpoints - model environments (fast path)
        log(f"Environment: all {len(lines)} requirements of the model's {source} are installed in the "
            f"inference server's Python; no environment to build.")
        return sys.executable, None
    base = _base_distributions()
    key = environment_key(missing, base)
    envs_dir = Path(envs_dir)
    root = envs_dir / f"env-{key}"
    if (root / _DONE).is_file():
        log(f"Environment: reusing env-{key} (built before) for {', '.join(missing)}.")
        return str(_python(root)), root
    envs_dir.mkdir(parents=True, exist_ok=True)
    log(f"Environment: {', '.join(missing)} (from the model's {source}) not in the inference server's "
        f"Python; waiting for env-{key}.")
    with open(envs_dir / f".env-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build per environment; the others wait and reuse it
        if (root / _DONE).is_file():
            log(f"Environment: reusing env-{key} (another deployment built it meanwhile).")
            return str(_python(root)), root
        for stale in envs_dir.glob(f".env-{key}.tmp-*"):  # left by a build that crashed
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)  # a directory without its marker is not an environment
        partial = envs_dir / f".env-{key}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            _build(partial, envs_dir, missing, base, log, timeout)
            partial.rename(root)  # atomic: env-<key> is either absent or complete
        except IndexUnreachable:
            # fidelity: Online endpoints - model environments (offline) -- Azure ML always reaches
            # its index; an emulator that cannot (offline CI, a container without egress) serves in
            # its own Python as it did before environments were built, and says so.
            log(f"Environment: no package index could be reached from here (offline?): serving in the "
                f"inference server's own Python without {', '.join(missing)}; a model that imports them "
                f"fails to load.")
            return sys.executable, None
        except (OSError, subprocess.SubprocessError) as exc:  # the venv itself could not be made
            raise EnvironmentBuildFailed(f"could not create the environment for {', '.join(missing)}: {exc}") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return str(_python(root)), root


def _build(partial: Path, envs_dir: Path, missing: list[str], base: list[str], log, timeout: float) -> None:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(partial)], check=True,
                   capture_output=True, timeout=timeout)
    python = _python(partial)
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # After the environment's own site-packages: what it installs comes first, the emulator's
    # packages (MLflow, waitress, the emulator itself) fill in the rest.
    Path(site_packages, "_emulator_base.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in _base_site_dirs()))
    constraints = partial / "emulator-constraints.txt"
    constraints.write_text("\n".join(base) + "\n")
    # The installer may build sdists (their setup.py runs): none of the emulator's tokens or
    # state-dir settings, as for the model's own process.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMULATOR_", "MLFLOW_", "_MLFLOW"))}
    uv = _uv()
    if uv:
        installer = "uv"
        env.setdefault("UV_CACHE_DIR", str(envs_dir / ".cache" / "uv"))  # HOME is the server's private one
        env.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
        cmd = [uv, "pip", "install", "--python", str(python), "-c", str(constraints), *missing]
    else:
        installer = "pip"  # pip sees the emulator's packages through the .pth: installs only the rest
        env.setdefault("PIP_CACHE_DIR", str(envs_dir / ".cache" / "pip"))
        cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
               "--progress-bar", "off", "-c", str(constraints), *missing]
    log(f"Environment: installing {', '.join(missing)} with {installer} "
        "(constrained to the inference server's own package versions)")
    output = _run_logged(cmd, env, log, installer, timeout)
    if output is None:
        raise EnvironmentBuildFailed(f"Installing {', '.join(missing)} with {installer} took more than "
                                     f"{timeout:g} s.")
    code, tail = output
    if code != 0 and index_unreachable(tail):
        raise IndexUnreachable(installer)
    if code != 0:
        named = [m for m in missing if _name(m).lower() in "\n".join(tail).lower()] or missing
        raise EnvironmentBuildFailed(f"{installer} could not install {', '.join(named)}.\n" + "\n".join(tail[-15:]))
    seconds = time.monotonic() - started
    (partial / _DONE).write_text(json.dumps({"requirements": missing, "installer": installer,
                                             "seconds": round(seconds, 1), "built": time.time()}))
    log(f"Environment: built in {seconds:.1f} s ({installer}); kept for later deployments.")


def _name(line: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(line).name
    except InvalidRequirement:
        return line


def _run_logged(cmd: list[str], env: dict, log, prefix: str, timeout: float) -> tuple[int, list[str]] | None:
    """Run ``cmd``, each output line into the log; (exit code, last lines), or None after ``timeout``."""
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=env, text=True, errors="replace") as proc:
        expired = threading.Event()
        timer = threading.Timer(timeout, lambda: (expired.set(), proc.kill()))
        timer.start()
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail = (tail + [line])[-200:]
                    log(f"  {prefix}: {line}")
            proc.wait()
        finally:
            timer.cancel()
    if expired.is_set():
        return None
    return proc.returncode, tail
