"""Build the emulator image without a registry: debootstrap base, host-built wheelhouse, docker build.

Every step is skipped when its output is still current, so a second run takes seconds:

1. base image  - ``debootstrap --variant=minbase`` (Debian bookworm, Python 3.11, from the same mirror
   apt uses here) piped into ``docker import``; reused while the image exists.
2. wheelhouse  - ``pip wheel`` on the host of the project's pinned [project] dependencies and its
   build backend; rebuilt when those lists change.
3. image       - ``docker build --build-arg BASE_IMAGE=<base> --build-arg WHEELHOUSE=<dir>``; the
   Dockerfile installs with ``pip install --no-index``. Reused while its build key label matches.

The build context is the source checkout when there is one; from an installed wheel it is a cache
directory holding the packaged Dockerfile and pyproject.toml and a wheel of the installed
distribution (``--build-arg PROJECT_WHEEL``), so no checkout is needed (emulator.control.docker.packaged).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

from emulator.control.docker import engine, packaged

IMAGE = "mlflow-azure-emulator:latest"
BASE_IMAGE = "mlflow-azure-emulator-base:bookworm"
SUITE = "bookworm"  # its python3 is 3.11, the Python the wheelhouse is built for
CONTAINER_PYTHON = (3, 11)
BUILD_KEY_LABEL = "org.mlflow-azure-emulator.build-key"
# What the image installs from the checkout: a change here means a rebuild (of the small layers).
PROJECT_SOURCES = ("pyproject.toml", "README.md", "emulator", "harness")


class BuildError(RuntimeError):
    """A build step failed; the message says which and where its log is."""


def cache_dir(checkout: Path | None) -> Path:
    """Wheelhouse, logs and lock; always inside the build context, so the wheelhouse can be COPYed."""
    if checkout is not None:
        # .dockerignore keeps everything else in it out; gitignored.
        return checkout / ".emulator-cache"
    return packaged.cache_root() / "image-build"  # the build context itself (installed_context)


def project_root() -> Path:
    """The source checkout: the Spark and PostgreSQL images build from its docker/ folder, which the
    wheel does not ship (the emulator image alone builds from an installed package)."""
    root = packaged.checkout_root()
    if root is None or not (root / "docker").is_dir():
        raise BuildError("the Spark and PostgreSQL images build from a source checkout of the project "
                         "(its docker/ folder); the installed package builds the emulator image only")
    return root


@dataclass
class Context:
    """What `docker build` is given: the context directory, and what keys a rebuild."""

    root: Path  # build context: Dockerfile and pyproject.toml at its top
    cache: Path  # inside root
    sources_key: str  # changes when what the image installs of the project changes
    build_args: list[str]


def checkout_context(root: Path) -> Context:
    return Context(root, cache_dir(root), _hash_tree(root, PROJECT_SOURCES), [])


# Only what the Dockerfile reads goes to the daemon: not the logs or a debootstrap rootfs.
_INSTALLED_DOCKERIGNORE = "logs\nrootfs-*\n.lock\n"


def installed_context(cache: Path) -> Context:
    """A context made from the installed package: its shipped files and a wheel of itself."""
    try:
        for name in ("Dockerfile", "pyproject.toml"):
            shutil.copyfile(packaged.shipped_file(name), cache / name)
        wheel, key = packaged.write_wheel(cache / "dist")
    except (packaged.PackagingError, OSError) as exc:
        raise BuildError(str(exc)) from None
    (cache / ".dockerignore").write_text(_INSTALLED_DOCKERIGNORE)
    return Context(cache, cache, key, ["--build-arg", f"PROJECT_WHEEL=dist/{wheel.name}"])


def _echo(message: str) -> None:
    print(message, flush=True)


@dataclass
class Step:
    """One build step: prints its name, a heartbeat while it runs, and its elapsed time."""

    number: int
    total: int
    name: str
    started: float = 0.0

    def __enter__(self) -> Step:
        self.started = time.monotonic()
        _echo(f"[{self.number}/{self.total}] {self.name}")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            _echo(f"      done in {self.elapsed:.1f}s")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def skip(self, why: str) -> None:
        _echo(f"      {why}")


def run_logged(cmd: list[str], log: Path, *, label: str, stdin=None, heartbeat: float = 15.0,
               env=None) -> None:
    """Run ``cmd`` with its output in ``log``; print elapsed time now and then; fail with the log tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=env)
        next_beat = started + heartbeat
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() >= next_beat:
                _echo(f"      ... {label}: {time.monotonic() - started:.0f}s")
                next_beat += heartbeat
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}); log {log}:\n{tail}")


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def docker_image_id(name: str) -> str | None:
    return engine.image_id(name)


def docker_image_label(name: str, label: str) -> str | None:
    return engine.image_label(name, label)


def require_docker() -> None:
    """The engine answers (SDK) and the docker CLI is there (the classic builder and import use it)."""
    try:
        engine.client()
    except engine.EngineError as exc:
        raise BuildError(str(exc)) from None
    if shutil.which("docker") is None:
        raise BuildError("the docker command is missing: install docker.io (`.ci/system-deps.sh docker`)")


# -- step 1: base image --------------------------------------------------------------------------

def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses on this machine (deb822 .sources or one-line sources.list)."""
    candidates = sorted(sources.glob("sources.list.d/*.sources")) + [sources / "sources.list"]
    candidates += sorted(sources.glob("sources.list.d/*.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and SUITE in suites.group(1).split():
                    return uris.group(1).rstrip("/")
        else:
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == SUITE:
                    return m.group(1).rstrip("/")
    raise BuildError(f"no apt source for Debian {SUITE} in {sources}; cannot pick a debootstrap mirror")


BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")


def build_base(cache: Path, name: str, step: Step, packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """``debootstrap --variant=minbase --include=<packages>``, imported as image ``name``."""
    if docker_image_id(name):
        step.skip(f"reusing {name}")
        return name
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise BuildError("debootstrap is missing: install it (`.ci/system-deps.sh docker`)")
    mirror = apt_mirror()
    rootfs = cache / f"rootfs-{re.sub(r'[^A-Za-z0-9]+', '-', name)}"
    sudo = _sudo()
    if rootfs.exists():  # a leftover from an interrupted run
        subprocess.run([*sudo, "rm", "-rf", str(rootfs)], check=True)
    log = cache / "logs" / f"base-{re.sub(r'[^A-Za-z0-9]+', '-', name)}.log"
    _echo(f"      debootstrap {SUITE} from {mirror} (log: {log})")
    try:
        run_logged([*sudo, "debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                    SUITE, str(rootfs), mirror], log, label="debootstrap")
        # Package lists and .debs are dead weight in the image.
        subprocess.run([*sudo, "sh", "-c", f"rm -rf {rootfs}/var/cache/apt/archives/*.deb "
                        f"{rootfs}/var/lib/apt/lists/*"], check=True)
        _echo(f"      docker import -> {name}")
        tar = subprocess.Popen([*sudo, "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            run_logged(["docker", "import", "--change", "ENV LANG=C.UTF-8",
                        "--change", 'CMD ["python3"]', "-", name], log, label="docker import", stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise BuildError(f"tar of {rootfs} failed (exit {tar.returncode})")
    finally:
        subprocess.run([*sudo, "rm", "-rf", str(rootfs)])
    return name


# -- step 2: wheelhouse --------------------------------------------------------------------------

# Extras the image installs too (the Dockerfile reads the same list): MLflow's PostgreSQL driver.
IMAGE_EXTRAS = ("postgres",)


def project_dependencies(root: Path) -> list[str]:
    with open(root / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    extras = [req for extra in IMAGE_EXTRAS for req in project["optional-dependencies"][extra]]
    return list(project["dependencies"]) + extras


def _hash_tree(root: Path, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = root / name
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        for file in files:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check"]


def build_requirements(root: Path) -> list[str]:
    with open(root / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["build-system"]["requires"])


def build_wheelhouse(root: Path, wheelhouse: Path, log: Path, step: Step, python: str = sys.executable) -> str:
    """Wheels of the pinned dependencies (and the build backend) for the container's Python.

    Returns a key that changes when the wanted set changes. The project itself is built from source
    inside the image build, so a source change does not touch the wheelhouse.
    """
    wheelhouse.mkdir(parents=True, exist_ok=True)
    wanted = project_dependencies(root) + build_requirements(root)
    key = hashlib.sha256(("\n".join(wanted) + f"\npy{CONTAINER_PYTHON}").encode()).hexdigest()[:16]
    if _stamp(wheelhouse / ".key") == key:
        step.skip(f"reusing {wheelhouse} ({len(list(wheelhouse.glob('*.whl')))} wheels)")
        return key
    _echo(f"      pip wheel {len(wanted)} requirements and what they need (log: {log})")
    (wheelhouse / ".key").unlink(missing_ok=True)
    if sys.version_info[:2] == CONTAINER_PYTHON:
        run_logged([*_pip(python), "wheel", "--wheel-dir", str(wheelhouse), *wanted], log, label="pip wheel")
    else:
        # Another host Python: fetch binary wheels made for the container's CPython instead.
        tag = f"{CONTAINER_PYTHON[0]}{CONTAINER_PYTHON[1]}"
        run_logged([*_pip(python), "download", "--dest", str(wheelhouse), "--only-binary=:all:",
                    "--python-version", tag, "--implementation", "cp", "--abi", f"cp{tag}",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                    "--platform", "linux_x86_64", "--platform", "any", *wanted], log, label="pip download")
    (wheelhouse / ".key").write_text(key)
    return key


# -- step 3: the image ---------------------------------------------------------------------------

def build_image(ctx: Context, image: str, base: str, wheelhouse: Path | None, wheels_key: str,
                step: Step, force: bool = False) -> str:
    root = ctx.root
    base_id = docker_image_id(base) or base  # an online base is named, not local
    dockerfile = (root / "Dockerfile").read_bytes()
    key = hashlib.sha256(f"{base_id}|{wheels_key}|{ctx.sources_key}|".encode() + dockerfile).hexdigest()[:16]
    if not force and docker_image_label(image, BUILD_KEY_LABEL) == key:
        step.skip(f"reusing {image} (build key {key})")
        return image
    log = ctx.cache / "logs" / "image.log"
    args = ["--build-arg", f"BASE_IMAGE={base}", *ctx.build_args]
    if wheelhouse is not None:
        args += ["--build-arg", f"WHEELHOUSE={wheelhouse.relative_to(root).as_posix()}"]
    env = dict(os.environ, DOCKER_BUILDKIT="0")  # the classic builder: Debian's docker.io has no buildx
    # The dependency stage gets a tag of its own: the classic builder's cache is its images, and a
    # tagged one survives the prune below, so a source change only rebuilds the small layers.
    deps_tag = f"{image.rsplit(':', 1)[0]}-deps:latest"
    _echo(f"      docker build --target deps -t {deps_tag} (log: {log})")
    run_logged(["docker", "build", "--force-rm", *args, "--target", "deps", "-t", deps_tag, str(root)], log,
               label="docker build (dependencies)", env=env)
    _echo(f"      docker build -t {image} FROM {base}")
    run_logged(["docker", "build", "--force-rm", *args, "--label", f"{BUILD_KEY_LABEL}={key}", "-t", image, str(root)],
               log, label="docker build", env=env)
    # Untagged leftovers (the build stage, the images these replaced) would pile up ~1 GB a build.
    for label in ("org.mlflow-azure-emulator.stage=build", BUILD_KEY_LABEL):
        engine.client().images.prune(filters={"label": label})
    return image


def folder_key(prefix: str, folder: Path) -> str:
    """A build key from ``prefix`` (ids of what the image builds on) and every file of ``folder``."""
    digest = hashlib.sha256(prefix.encode())
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def image_current(image: str, key: str, step: Step, force: bool = False) -> bool:
    """True (and the step says it reuses it) if ``image`` carries build key ``key``."""
    if not force and docker_image_label(image, BUILD_KEY_LABEL) == key:
        step.skip(f"reusing {image} (build key {key})")
        return True
    return False


def classic_build(image: str, key: str, context: Path, build_args: list[str], log: Path, label: str) -> None:
    """``docker build`` of ``context`` as ``image``, labelled with its build key, by the classic
    builder (Debian's docker.io has no buildx), its output in ``log``."""
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    run_logged(["docker", "build", "--force-rm", *build_args, "--label", f"{BUILD_KEY_LABEL}={key}",
                "-t", image, str(context)], log, label=label, env=env)


def engine_lock_file() -> Path:
    """One file for every checkout and installed copy on this machine: they share the engine's tags."""
    return packaged.cache_root() / "locks" / "docker-builds.lock"


@contextlib.contextmanager
def _flock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _lock(cache: Path):
    """One build at a time per cache (parallel test sessions share it), and per machine: a build's
    prune of untagged stage images would delete the stage another checkout's build is about to
    COPY from ("invalid from flag value build: No such image"), and both retag the same images.
    Always the cache's lock first, then the machine's, so two builds never wait on each other."""
    cache.mkdir(parents=True, exist_ok=True)
    with _flock(cache / ".lock"), _flock(engine_lock_file()):
        yield


def build(offline: bool = True, image: str = IMAGE, base_image: str | None = None, force: bool = False) -> dict:
    """Build (or reuse) the emulator image; returns what was built and how long each step took.
    (The PostgreSQL and Spark images build on this module: emulator.control.docker.postgres_image,
    spark_image.)"""
    require_docker()
    checkout = packaged.checkout_root()
    cache = cache_dir(checkout)
    timings: dict[str, float] = {}
    with _lock(cache):
        ctx = checkout_context(checkout) if checkout else installed_context(cache)  # fidelity: Emulator-only controls
        total = 3 if offline else 1
        if offline:
            with Step(1, total, f"base image ({base_image or BASE_IMAGE})") as step:
                base = base_image or build_base(cache, BASE_IMAGE, step)
                if base_image:
                    step.skip(f"using the given base image {base_image}")
            timings["base"] = step.elapsed
            with Step(2, total, "wheelhouse") as step:
                wheelhouse = cache / "wheelhouse"
                wheels_key = build_wheelhouse(ctx.root, wheelhouse, cache / "logs" / "wheelhouse.log", step)
            timings["wheelhouse"] = step.elapsed
        else:
            base, wheelhouse, wheels_key = base_image or "python:3.11-slim", None, "online"
        with Step(total, total, f"image {image}") as step:
            build_image(ctx, image, base, wheelhouse, wheels_key, step, force=force)
        timings["image"] = step.elapsed
    return {"image": image, "base_image": base, "context": str(ctx.root), "seconds": timings}
