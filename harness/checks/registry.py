"""Check 2: model registrations number versions 1, 2, 3, ... with no gaps, duplicates or failures.

Works against either workspace: give an MlflowClient whose registry URI is "databricks" (the
Databricks workspace registry) or the Azure ML tracking URI. Registrations go through the real
client (create_registered_model, tolerating "already exists" as mlflow.register_model does, then
create_model_version); each carries a unique description. A retried create shows up as a
duplicate whatever the client set: the same source, run, logged model and description, created
within the client's retry span (``retried_creates``)."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from harness import mlflow_uris
from harness.checks.result import CheckResult

ALREADY_EXISTS = ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


@dataclass
class Registration:
    index: int  # 1-based, in the order they were started
    description: str
    version: int | None = None
    error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Target:
    """What a registration needs; plain strings so it can be sent to another process."""

    tracking_uri: str
    registry_uri: str
    name: str
    source: str
    run_id: str | None = None
    model_id: str | None = None


def registry_label(client: MlflowClient) -> str:
    """A short name for where the registry is (the Azure ML URI is long)."""
    uri = client._registry_uri or ""
    if uri.startswith("databricks"):
        return f"databricks registry ({uri})"
    if "/mlflow/v2.0/" in uri or uri.startswith("azureml"):
        return "azureml registry"
    return uri


def client_target(client: MlflowClient, name: str, source: str, run_id=None, model_id=None) -> Target:
    return Target(client._tracking_client.tracking_uri, client._registry_uri, name, source, run_id, model_id)


def register_once(target: Target, index: int, description: str, client: MlflowClient | None = None) -> Registration:
    reg = Registration(index, description)
    client = client or MlflowClient(target.tracking_uri, target.registry_uri)
    t = time.perf_counter()
    try:
        try:
            client.create_registered_model(target.name)
        except MlflowException as exc:
            if exc.error_code not in ALREADY_EXISTS:
                raise
        mv = client.create_model_version(
            target.name, target.source, run_id=target.run_id, model_id=target.model_id, description=description
        )
        reg.version = int(mv.version)
    except Exception as exc:
        reg.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    reg.seconds = time.perf_counter() - t
    return reg


def _process_worker(target: Target, index: int, description: str, barrier, queue) -> None:
    import mlflow

    mlflow.set_registry_uri(target.registry_uri)  # a models:/ source resolves in this registry
    client = MlflowClient(target.tracking_uri, target.registry_uri)
    barrier.wait()
    queue.put(register_once(target, index, description, client))


def register_versions(target: Target, count: int, concurrency: int = 1, processes: bool = False) -> list[Registration]:
    """`count` registrations; with concurrency > 1 they are started at once in threads (or processes)."""
    tag = uuid.uuid4().hex[:8]
    descriptions = [f"harness registration {tag} #{i}" for i in range(1, count + 1)]
    if concurrency <= 1:
        return [register_once(target, i, d) for i, d in enumerate(descriptions, 1)]
    out: list[Registration] = []
    for start in range(0, count, concurrency):
        wave = list(enumerate(descriptions[start:start + concurrency], start + 1))
        out.extend(_run_processes(target, wave) if processes else _run_threads(target, wave))
    return sorted(out, key=lambda r: r.index)


def _run_threads(target: Target, wave) -> list[Registration]:
    barrier = threading.Barrier(len(wave))
    results: list[Registration] = []
    lock = threading.Lock()

    def work(index, description):
        client = MlflowClient(target.tracking_uri, target.registry_uri)
        barrier.wait()
        reg = register_once(target, index, description, client)
        with lock:
            results.append(reg)

    threads = [threading.Thread(target=work, args=item, daemon=True) for item in wave]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results


def _run_processes(target: Target, wave) -> list[Registration]:
    ctx = multiprocessing.get_context("spawn")  # no fork: the parent may run Spark/HTTP threads
    barrier, queue = ctx.Barrier(len(wave)), ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(target, i, d, barrier, queue)) for i, d in wave]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return results


def verify_registry_versions(
    client: MlflowClient,
    name: str,
    registrations: list[Registration] | None = None,
    expected_count: int | None = None,
    first_version: int | None = 1,
    sequential: bool = True,
) -> CheckResult:
    """What the registry holds for `name`: versions 1..N, each once, READY, one per registration."""
    result = CheckResult("registry_increments", subject=f"registered model {name!r} in {registry_label(client)}")
    t = time.perf_counter()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions and not registrations:
            _require_model(result, client, name)
        _verify(result, name, versions, registrations or [], expected_count, first_version, sequential)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.timings["verify"] = time.perf_counter() - t
    return result


def _require_model(result: CheckResult, client: MlflowClient, name: str) -> None:
    """No versions to check: a model that is missing (a typo) or empty must not pass vacuously."""
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        result.differ(f"model {name}", f"does not exist in the {registry_label(client)}")
        return
    result.differ(f"model {name}", "has no versions (nothing to verify)")


def _verify(result, name, versions, registrations, expected_count, first_version, sequential) -> None:
    numbers = sorted(int(v.version) for v in versions)
    result.compared["versions"] = len(numbers)
    result.details["versions"] = numbers
    if registrations:
        if expected_count is None:
            expected_count = len(registrations)
        result.compared["registrations"] = len(registrations)
        result.details["returned_versions"] = [r.version for r in registrations]

    for r in registrations:
        if r.error:
            result.differ(f"registration #{r.index}", f"failed: {r.error}")
    returned = Counter(r.version for r in registrations if r.version is not None)
    for version, n in sorted(returned.items()):
        if n > 1:
            who = ", ".join(f"#{r.index}" for r in registrations if r.version == version)
            result.differ(f"version {version}", f"returned to {n} registrations ({who})")
    if registrations and sequential and first_version is not None:
        # Sequential registrations must get first_version, first_version + 1, ...
        for r in registrations:
            want = first_version + r.index - 1
            if r.version is not None and r.version != want:
                why = "a new model name" if r.index == 1 and first_version == 1 else f"registration #{r.index}"
                result.differ(f"registration #{r.index}", f"{why} got version {r.version}, expected {want}",
                              want, r.version)
    elif registrations and first_version is not None and not any(r.error for r in registrations):
        # Concurrent: in any order, but exactly first_version .. first_version + n - 1.
        want = set(range(first_version, first_version + len(registrations)))
        got = {r.version for r in registrations if r.version is not None}
        for v in sorted(want - got):
            result.differ(f"version {v}", "no registration got it (skipped)")
        for v in sorted(got - want):
            result.differ(f"version {v}", f"returned, but {len(registrations)} registrations should get "
                                           f"{min(want)}..{max(want)}")

    counts = Counter(numbers)
    for version, n in sorted(counts.items()):
        if n > 1:
            result.differ(f"version {version}", f"listed {n} times in the registry")
    if numbers:
        if numbers[0] != 1:
            result.differ("version 1", f"missing: versions start at {numbers[0]}")
        present = set(numbers)
        for missing in range(2, numbers[-1]):
            if missing not in present:
                result.differ(f"version {missing}", f"skipped (registry has versions up to {numbers[-1]} without it)")

    for v in versions:
        status = str(v.status)
        if status not in ("READY", "ModelVersionStatus.READY", "1"):
            result.differ(f"version {v.version}", f"status {status}, expected READY")
    for dup, first, why in retried_creates(versions):
        result.differ(f"version {dup}", f"duplicate of version {first} ({why}: a model-versions/create that "
                                        "was sent twice, e.g. a retry)")
    if expected_count is not None and len(numbers) != expected_count:
        result.differ(f"model {name}", f"registry holds {len(numbers)} versions for {expected_count} registrations",
                      expected_count, len(numbers))


# A retry repeats the request within the MLflow client's retry span: with its defaults (7 retries,
# backoff factor 2 capped at 120 s, 120 s request timeout) the last try starts under 20 minutes later.
RETRY_WINDOW_MS = 20 * 60 * 1000


def retried_creates(versions) -> list[tuple[int, int, str]]:
    """(duplicate, first, why) for versions that repeat an earlier one's request: same source, run,
    logged model and description (set or not), created within the client's retry span. Versions a
    client made on purpose differ in one of them (a new logged model per log_model, a description)."""
    by_request = defaultdict(list)
    for v in versions:
        key = (v.source, v.run_id or "", getattr(v, "model_id", None) or "", v.description or "")
        by_request[key].append(v)
    found = []
    for (_, _, _, description), same in by_request.items():
        same.sort(key=lambda v: int(v.version))
        for earlier, later in itertools.pairwise(same):
            gap_ms = (later.creation_timestamp or 0) - (earlier.creation_timestamp or 0)
            if 0 <= gap_ms <= RETRY_WINDOW_MS:
                what = f"same source, run and description {description!r}" if description else \
                    "same source, run and logged model, no description"
                found.append((int(later.version), int(earlier.version), f"{what}, created {gap_ms / 1000:.1f} s later"))
    return sorted(found)


@contextlib.contextmanager
def _models_uri_registry(source: str, registry_uri: str):
    """A ``models:/c.s.m/N`` or ``models:/c.s.m@alias`` source is resolved by the client in the
    process-wide registry (the Unity Catalog store downloads it with only a tracking URI): make that
    the registry being checked while the registrations run."""
    if not str(source).startswith("models:/"):
        yield
        return
    with mlflow_uris.using(registry_uri=registry_uri):
        yield


def check_registry_increments(
    client: MlflowClient,
    name: str,
    source: str,
    run_id: str | None = None,
    model_id: str | None = None,
    registrations: int = 3,
    concurrency: int = 1,
    processes: bool = False,
) -> CheckResult:
    """Register `source` under `name` `registrations` times (concurrently if concurrency > 1), then
    verify the numbering. `name` should be new; an existing name is checked to continue its sequence."""
    existing = client.search_model_versions(f"name = '{name}'")
    target = client_target(client, name, source, run_id, model_id)
    t = time.perf_counter()
    with _models_uri_registry(source, client._registry_uri):
        regs = register_versions(target, registrations, concurrency, processes)
    elapsed = time.perf_counter() - t
    first = max((int(v.version) for v in existing), default=0) + 1
    result = verify_registry_versions(
        client, name, regs, expected_count=len(existing) + registrations, first_version=first,
        sequential=concurrency <= 1,
    )
    if existing:
        result.notes.append(f"{name!r} already had {len(existing)} versions; expected to continue at {first}")
    if concurrency > 1:
        mode = "processes" if processes else "threads"
        result.subject += f", {registrations} registrations, {concurrency} at once ({mode})"
    else:
        result.subject += f", {registrations} sequential registrations"
    result.timings["register"] = elapsed
    result.details["registrations_per_s"] = registrations / elapsed if elapsed else None
    result.details["slowest_registration_s"] = max((r.seconds for r in regs), default=0.0)
    return result
