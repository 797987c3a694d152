"""SQLite vs PostgreSQL as the workspaces' MLflow store, 8 and 32 concurrent writers, side by side:
`python -m bench.stores [--quick]` prints one JSON document.

The same emulator (local mode, Azure ML workspace, the vanilla MLflow client over HTTP) runs once
on its SQLite file and once with EMULATOR_POSTGRES_URL on the offline-built PostgreSQL image
(`emulator images build --offline --postgres`), started here through the Docker SDK on a loopback
port. Tracking: N writers each logging `log_metric` calls to a run of their own. Registry: N
writers registering versions of one name (bench.registry). Ratios > 1: PostgreSQL faster.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient

from bench import registry
from emulator.control import launcher
from emulator.control.docker import engine, postgres_image
from emulator.stores import postgres as postgres_store
from harness.workspaces import Emulator


def _progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@contextmanager
def postgres_server():
    """The PostgreSQL image on a free loopback port; yields its server URL."""
    password, port = secrets.token_hex(16), launcher.free_port()
    container = engine.client().containers.run(
        postgres_image.IMAGE, detach=True, remove=True, environment={"EMULATOR_POSTGRES_PASSWORD": password},
        ports={"5432/tcp": ("127.0.0.1", port)}, name=f"emulator-bench-pg-{secrets.token_hex(3)}")
    try:
        url = f"postgresql://emulator:{password}@127.0.0.1:{port}"
        postgres_store.wait_for_server(url, timeout=120)
        yield url
    finally:
        container.stop(timeout=10)


def metric_writers(url: str, writers: int, per_writer: int) -> dict:
    client = MlflowClient(tracking_uri=url)
    exp_id = client.create_experiment(f"bench-writers-{writers}-{secrets.token_hex(3)}")
    runs = [client.create_run(exp_id).info.run_id for _ in range(writers)]

    def write(run_id):
        for step in range(per_writer):
            client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, runs))
    elapsed = time.perf_counter() - started
    points = sum(len(client.get_metric_history(r, "loss")) for r in runs)
    return {"writers": writers, "calls": writers * per_writer, "stored": points, "seconds": round(elapsed, 3),
            "calls_per_s": round(writers * per_writer / elapsed, 1)}


def measure(store: str, work: Path, writer_counts, per_writer: int, registrations: int) -> dict:
    emu = Emulator(work / f"state-{store}").up(timeout=240)
    try:
        aml = emu.azureml
        os.environ["MLFLOW_TRACKING_TOKEN"] = aml.token
        out = {}
        for writers in writer_counts:
            _progress(f"{store}: {writers} metric writers x {per_writer}, {writers} registrars x {registrations}")
            reg = registry.concurrent_registrations(aml.tracking_uri, writers=writers, per_writer=registrations,
                                                    name=f"bench-{writers}")
            reg["registrations_per_s"] = round(reg["registrations"] / reg["seconds"], 1)
            out[str(writers)] = {"tracking": metric_writers(aml.tracking_uri, writers, per_writer), "registry": reg}
        return out
    finally:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        emu.down()


def run(quick: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="emulator-bench-stores-"))
    writer_counts, per_writer, registrations = (8, 32), (10 if quick else 50), (2 if quick else 5)
    os.environ.pop(postgres_store.URL_ENV, None)
    result = {"sqlite": measure("sqlite", work, writer_counts, per_writer, registrations)}
    with postgres_server() as url:
        os.environ[postgres_store.URL_ENV] = url
        try:
            result["postgres"] = measure("postgres", work, writer_counts, per_writer, registrations)
        finally:
            os.environ.pop(postgres_store.URL_ENV, None)
    result["ratio_postgres_over_sqlite"] = {
        n: {"tracking_calls_per_s": round(result["postgres"][n]["tracking"]["calls_per_s"]
                                          / result["sqlite"][n]["tracking"]["calls_per_s"], 2),
            "registrations_per_s": round(result["postgres"][n]["registry"]["registrations_per_s"]
                                         / result["sqlite"][n]["registry"]["registrations_per_s"], 2)}
        for n in map(str, writer_counts)}
    return result


def main(argv=None) -> int:
    import logging

    logging.getLogger("mlflow.store.model_registry.abstract_store").setLevel(logging.WARNING)  # a line per version
    parser = argparse.ArgumentParser(prog="python -m bench.stores")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
