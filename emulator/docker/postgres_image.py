"""The PostgreSQL image for ``--store postgres``, built offline like the emulator's own.

1. base  - ``debootstrap --variant=minbase --include=postgresql-15``: Debian's own package, from the
   mirror apt uses here (no registry, nothing fetched inside a container); reused while it exists.
2. image - ``docker/postgres/Dockerfile`` FROM that base (a start script, a data directory).
   Reused while its build key label (base id + Dockerfile + script) matches.
"""

from __future__ import annotations

import hashlib
import os

from emulator.docker import images

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
            digest = hashlib.sha256((images.docker_image_id(base) or base).encode())
            for name in sorted(p.name for p in context.iterdir()):
                digest.update(name.encode() + b"\0" + (context / name).read_bytes())
            key = digest.hexdigest()[:16]
            if not force and images.docker_image_label(image, images.BUILD_KEY_LABEL) == key:
                step.skip(f"reusing {image} (build key {key})")
            else:
                env = dict(os.environ, DOCKER_BUILDKIT="0")  # the classic builder, as images.build_image
                images.run_logged(["docker", "build", "--force-rm", "--build-arg", f"BASE_IMAGE={base}",
                                   "--label", f"{images.BUILD_KEY_LABEL}={key}", "-t", image, str(context)],
                                  cache / "logs" / "postgres-image.log", label="docker build (postgres)", env=env)
        timings["postgres_image"] = step.elapsed
    return {"image": image, "base_image": base, "seconds": timings}
