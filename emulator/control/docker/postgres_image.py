"""The PostgreSQL image for ``--store postgres``, built offline like the emulator's own.

1. base  - ``debootstrap --variant=minbase --include=postgresql-15``: Debian's own package, from the
   mirror apt uses here (no registry, nothing fetched inside a container); reused while it exists.
2. image - ``docker/postgres/Dockerfile`` FROM that base (a start script, a data directory).
   Reused while its build key label (base id + Dockerfile + script) matches.
"""

from __future__ import annotations

from emulator.control.docker import images

IMAGE = "mlflow-azure-emulator-postgres:latest"
BASE_IMAGE = "mlflow-azure-emulator-postgres-base:bookworm"
PACKAGES = ("postgresql-15", "ca-certificates")  # bookworm's PostgreSQL (pg_isready comes with it)


def build(image: str = IMAGE, force: bool = False, step_offset: int = 0, total: int = 2) -> dict:
    """Build (or reuse) the PostgreSQL image; returns its name and how long each step took."""
    images.require_docker()
    root = images.project_root()
    context = root / "docker" / "postgres"
    cache = images.cache_dir(root)
    timings: dict[str, float] = {}
    with images._lock(cache):
        with images.Step(step_offset + 1, total, f"postgres base image ({BASE_IMAGE})") as step:
            base = images.build_base(cache, BASE_IMAGE, step, packages=PACKAGES)
        timings["postgres_base"] = step.elapsed
        with images.Step(step_offset + 2, total, f"postgres image {image}") as step:
            key = images.folder_key(images.docker_image_id(base) or base, context)
            if not images.image_current(image, key, step, force):
                images.classic_build(image, key, context, ["--build-arg", f"BASE_IMAGE={base}"],
                                     cache / "logs" / "postgres-image.log", label="docker build (postgres)")
        timings["postgres_image"] = step.elapsed
    return {"image": image, "base_image": base, "seconds": timings}
