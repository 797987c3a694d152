"""Registry under concurrency: N writers registering versions of one model name at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient


def concurrent_registrations(url: str, *, writers: int, per_writer: int, name: str) -> dict:
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    # The server checks that a version's source lies inside the run it names.
    run = client.create_run(client.create_experiment(f"{name}-runs"))
    run_id, source = run.info.run_id, f"{run.info.artifact_uri}/model"
    # Databricks fails the registration of a source with nothing at it.
    client.log_text(run_id, "model files", "model/MLmodel")
    client.create_registered_model(name)
    errors: list[str] = []

    def writer(_):
        versions = []
        for _ in range(per_writer):
            try:
                versions.append(int(client.create_model_version(name, source, run_id=run_id).version))
            except Exception as exc:  # reported, not raised: failures are a result here
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        return versions

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        versions = [v for vs in pool.map(writer, range(writers)) for v in vs]
    elapsed = time.perf_counter() - started
    expected = writers * per_writer
    distinct = sorted(set(versions))
    return {
        "writers": writers,
        "registrations": expected,
        "seconds": round(elapsed, 3),
        "versions_returned": len(versions),
        "distinct": len(distinct),
        "duplicates": len(versions) - len(distinct),
        "contiguous": distinct == list(range(1, len(distinct) + 1)),
        "failed": len(errors),
        "first_errors": errors[:3],
    }
