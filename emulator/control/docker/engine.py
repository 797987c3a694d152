"""The Docker engine through its Python SDK (``docker``, the [docker] extra): is it there, which
images it has, and the health and logs of a Compose project's containers.

Compose's own CLI still runs ``up``/``down`` (it owns the project model) and image builds use the
``docker`` CLI (the classic builder); everything that only asks the engine goes through here, so
an engine that cannot be reached is one clear message, not a CLI's stderr.
"""

from __future__ import annotations

import os
from functools import cache

DEFAULT_HOST = "unix:///var/run/docker.sock"


class EngineError(RuntimeError):
    """The engine cannot be reached or used; the message says where it was looked for and what to do."""


# fidelity: Scaling out: PostgreSQL stores
def explain(exc: Exception) -> str:
    where = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        hint = ("permission denied: add your user to the docker group (`sudo usermod -aG docker $USER`, "
                "then log in again) or run as root")
    elif "Connection refused" in text or "No such file" in text or "FileNotFoundError" in text:
        hint = ("nothing answers there. Is dockerd running (`sudo systemctl start docker`, or `dockerd &`)? "
                "Is DOCKER_HOST right?")
    else:
        hint = text.splitlines()[0][:300] if text else type(exc).__name__
    return f"cannot reach the Docker engine at {where}: {hint}"


@cache
def _client_for(host: str | None):
    try:
        import docker
    except ImportError:
        raise EngineError("the docker Python package is missing: pip install 'mlflow-azure-emulator[docker]'") from None
    try:
        client = docker.from_env(timeout=120)  # asks the engine's API version: fails fast if absent
        client.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(explain(exc)) from None
    return client


def client():
    """A client for the engine DOCKER_HOST names (one per host); EngineError if it does not answer."""
    return _client_for(os.environ.get("DOCKER_HOST"))


def _errors():
    import docker

    return docker.errors


def image_attrs(name: str) -> dict | None:
    """The engine's inspect data for image ``name``, or None if it has no such image."""
    try:
        return client().images.get(name).attrs
    except _errors().ImageNotFound:
        return None
    except _errors().DockerException as exc:
        raise EngineError(explain(exc)) from None


def image_id(name: str) -> str | None:
    attrs = image_attrs(name)
    return attrs["Id"] if attrs else None


def image_label(name: str, label: str) -> str | None:
    attrs = image_attrs(name)
    if attrs is None:
        return None
    return ((attrs.get("Config") or {}).get("Labels") or {}).get(label, "")


def containers(project: str, service: str | None = None) -> list:
    """The project's containers (of one service), as Compose labels them."""
    labels = [f"com.docker.compose.project={project}"]
    if service:
        labels.append(f"com.docker.compose.service={service}")
    try:
        return client().containers.list(all=True, filters={"label": labels})
    except _errors().DockerException as exc:
        raise EngineError(explain(exc)) from None


def health(project: str, service: str) -> str:
    """The healthcheck status of the service's container ("starting", "healthy", "unhealthy"), or
    "missing" / "no healthcheck"."""
    found = containers(project, service)
    if not found:
        return "missing"
    state = found[0].attrs.get("State") or {}
    return (state.get("Health") or {}).get("Status", "no healthcheck")


def restart_policies(project: str) -> dict[str, str]:
    """Each container's restart policy ("no", "unless-stopped", ...), by container name."""
    return {c.name: ((c.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
            for c in containers(project)}


def logs(project: str, service: str | None = None, tail: int = 50) -> str:
    """The last ``tail`` lines of each container's output, prefixed by its service as Compose does."""
    out = []
    for container in sorted(containers(project, service), key=lambda c: c.name):
        name = container.labels.get("com.docker.compose.service", container.name)
        try:
            text = container.logs(tail=tail).decode(errors="replace")
        except _errors().DockerException as exc:
            raise EngineError(explain(exc)) from None
        out.extend(f"{name} | {line}" for line in text.splitlines())
    return "\n".join(out)
