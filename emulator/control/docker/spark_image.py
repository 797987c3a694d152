"""The Spark standalone image for ``emulator up --docker --spark``, built offline like the emulator's.

1. base       - ``debootstrap --variant=minbase --include=openjdk-17-jre-headless,python3,...``: Debian's
                own JRE and the same bookworm Python as the emulator image; reused while it exists.
2. wheels     - ``pip wheel`` on the host of the project's [spark] extra (PySpark, scikit-learn,
                pandas), for the container's Python; rebuilt when that list changes.
3. image      - ``docker/spark/Dockerfile``: the emulator's dependency venv (same MLflow) copied onto
                the base, plus the wheels. Reused while its build key label matches.

The venv comes from the emulator image's dependency stage (tagged by images.build_image); when that
is missing, the emulator image is built first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import tomllib

from emulator.control.docker import images

IMAGE = "mlflow-azure-emulator-spark:latest"
BASE_IMAGE = "mlflow-azure-emulator-spark-base:bookworm"
PACKAGES = ("openjdk-17-jre-headless", "python3", "python3-venv", "ca-certificates")
EXTRA = "spark"  # pyproject's optional dependencies the executors need beside MLflow


def spark_requirements(root: Path) -> list[str]:
    with open(root / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["project"]["optional-dependencies"][EXTRA])


DEPS_IMAGE = f"{images.IMAGE.rsplit(':', 1)[0]}-deps:latest"  # images.build_image tags it


def _context(root: Path, cache: Path, wheelhouse: Path) -> Path:
    """A small build context: the Dockerfile, the start script and (hard links to) the wheels."""
    context = cache / "spark-context"
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(root / "docker" / "spark", context)
    (context / "wheels").mkdir()
    for wheel in wheelhouse.glob("*.whl"):
        try:
            os.link(wheel, context / "wheels" / wheel.name)
        except OSError:  # another file system
            shutil.copy2(wheel, context / "wheels" / wheel.name)
    (context / "wheels" / "requirements.txt").write_text("\n".join(spark_requirements(root)) + "\n")
    return context


def build(image: str = IMAGE, force: bool = False) -> dict:
    """Build (or reuse) the Spark image; returns names and step timings."""
    timings: dict[str, float] = {}
    if not images.docker_image_id(DEPS_IMAGE):
        timings.update(images.build(offline=True)["seconds"])
    root = images.project_root()
    cache = images.cache_dir(root)
    with images._lock(cache):
        with images.Step(1, 3, f"spark base image ({BASE_IMAGE})") as step:
            base = images.build_base(cache, BASE_IMAGE, step, packages=PACKAGES)
        timings["spark_base"] = step.elapsed
        with images.Step(2, 3, "spark wheelhouse") as step:
            wheelhouse = cache / "wheelhouse-spark"
            wanted = spark_requirements(root)
            key = _wheelhouse(wheelhouse, wanted, step, cache)
        timings["spark_wheelhouse"] = step.elapsed
        with images.Step(3, 3, f"spark image {image}") as step:
            deps = DEPS_IMAGE
            build_key = images.folder_key(f"{images.docker_image_id(base)}|{images.docker_image_id(deps)}|{key}",
                                          root / "docker" / "spark")
            if not images.image_current(image, build_key, step, force):
                context = _context(root, cache, wheelhouse)
                try:
                    images.classic_build(image, build_key, context,
                                         ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"DEPS_IMAGE={deps}"],
                                         cache / "logs" / "spark-image.log", label="docker build (spark)")
                finally:
                    shutil.rmtree(context, ignore_errors=True)
        timings["spark_image"] = step.elapsed
    return {"image": image, "base_image": base, "deps_image": DEPS_IMAGE, "seconds": timings}


def _wheelhouse(wheelhouse: Path, wanted: list[str], step: images.Step, cache: Path) -> str:
    """Wheels of the [spark] extra and what it needs, for the container's Python (as images does)."""
    import sys

    key = hashlib.sha256(("\n".join(wanted) + f"\npy{images.CONTAINER_PYTHON}").encode()).hexdigest()[:16]
    if images._stamp(wheelhouse / ".key") == key:
        step.skip(f"reusing {wheelhouse} ({len(list(wheelhouse.glob('*.whl')))} wheels)")
        return key
    wheelhouse.mkdir(parents=True, exist_ok=True)
    (wheelhouse / ".key").unlink(missing_ok=True)
    log = cache / "logs" / "wheelhouse-spark.log"
    if sys.version_info[:2] != images.CONTAINER_PYTHON:
        raise images.BuildError(f"the Spark wheelhouse is built with the host's Python, which must be "
                                f"{images.CONTAINER_PYTHON[0]}.{images.CONTAINER_PYTHON[1]} (PySpark is an sdist)")
    images.run_logged([*images._pip(sys.executable), "wheel", "--wheel-dir", str(wheelhouse), *wanted], log,
                      label="pip wheel (spark)")
    (wheelhouse / ".key").write_text(key)
    return key
