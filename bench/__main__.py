"""Run every benchmark and print one JSON document: `python -m bench [--quick] [--out FILE]`.

Every comparison is measured side by side in the same run (emulator vs a stock `mlflow server`
on the same kind of SQLite store), and reported as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench import procs, registry, tracking
from emulator import launcher
from emulator.mirror import control
from harness.workspaces import Emulator


def _progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _emulator_pids(emu: Emulator) -> dict[str, int]:
    return {role: launcher.running(emu.state, role).pid for role in ("databricks", "azureml")}


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    calls, points, singles = (20, 1000, 200) if args.quick else (200, 1000, 1000)
    writers, per_writer = 8, 25
    result: dict = {"machine": machine(), "quick": args.quick}
    env = os.environ

    _progress("start-up: emulator (local mode) and stock mlflow server")
    started = time.perf_counter()
    emu = Emulator(work / "state").up()
    emu_start = time.perf_counter() - started
    try:
        pids = _emulator_pids(emu)
        result["memory_idle_mb"] = {role: round(procs.rss_mb(pid), 1) for role, pid in pids.items()}
        db = emu.databricks
        with procs.stock_mlflow_server(work / "stock") as (stock_url, stock_pid, stock_start):
            result["startup"] = {
                "emulator_both_healthy_s": round(emu_start, 2),
                "stock_mlflow_server_healthy_s": round(stock_start, 2),
            }
            result["memory_idle_mb"]["stock_mlflow_server"] = round(procs.rss_mb(stock_pid), 1)

            _progress(f"tracking overhead: log_batch {calls} x {points} points, {singles} log_metric calls")
            emu_batch = tracking.log_batch_load(db.url, db.token, env, calls=calls, points=points,
                                                experiment=f"/Users/{db.user}/bench-batch")
            stock_batch = tracking.log_batch_load(stock_url, None, env, calls=calls, points=points,
                                                  experiment="bench-batch")
            emu_single = tracking.log_metric_load(db.url, db.token, env, calls=singles,
                                                  experiment=f"/Users/{db.user}/bench-single")
            stock_single = tracking.log_metric_load(stock_url, None, env, calls=singles,
                                                    experiment="bench-single")
            _progress("tracking overhead while linked (every write also goes to the outbox)")
            control.link_workspaces(emu.state, db.url)
            linked_batch = tracking.log_batch_load(db.url, db.token, env, calls=calls, points=points,
                                                   experiment=f"/Users/{db.user}/bench-batch-linked")
            linked_single = tracking.log_metric_load(db.url, db.token, env, calls=singles,
                                                     experiment=f"/Users/{db.user}/bench-single-linked")
            control.unlink_workspaces(emu.state, db.url)
            result["tracking"] = {
                "log_batch": {"databricks_emulator": emu_batch, "databricks_emulator_linked": linked_batch,
                              "stock": stock_batch,
                              "ratio_emulator_over_stock": round(emu_batch["seconds"] / stock_batch["seconds"], 2),
                              "ratio_linked_over_stock": round(linked_batch["seconds"] / stock_batch["seconds"], 2)},
                "log_metric": {"databricks_emulator": emu_single, "databricks_emulator_linked": linked_single,
                               "stock": stock_single,
                               "ratio_emulator_over_stock": round(emu_single["seconds"] / stock_single["seconds"], 2),
                               "ratio_linked_over_stock": round(linked_single["seconds"] / stock_single["seconds"], 2)},
            }

            _progress(f"registry: {writers} writers x {per_writer} registrations of one name")
            env["MLFLOW_TRACKING_TOKEN"] = emu.azureml.token
            aml_reg = registry.concurrent_registrations(
                emu.azureml.url, writers=writers, per_writer=per_writer, name="bench-model")
            env.pop("MLFLOW_TRACKING_TOKEN")
            stock_reg = registry.concurrent_registrations(
                stock_url, writers=writers, per_writer=per_writer, name="bench-model")
            result["registry_concurrency"] = {
                "azureml_emulator": aml_reg, "stock": stock_reg,
                "ratio_emulator_over_stock": round(aml_reg["seconds"] / stock_reg["seconds"], 2),
            }
            result["memory_peak_mb"] = {role: round(procs.peak_rss_mb(pid), 1) for role, pid in pids.items()}
            result["memory_peak_mb"]["stock_mlflow_server"] = round(procs.peak_rss_mb(stock_pid), 1)
    finally:
        emu.down()

    from bench import mirror

    lag_points, backlog_points = (100, 2000) if args.quick else (300, 10_000)
    emu = Emulator(work / "mirror-state").up()
    try:
        _progress(f"mirror lag: {lag_points} points at 20/s while linked")
        result["mirror"] = {"lag": mirror.lag(emu, env, points=lag_points, rate_per_s=20)}
        _progress(f"mirror catch-up: {backlog_points} points logged during an Azure ML outage")
        result["mirror"]["catch_up"] = mirror.catch_up(emu, env, points=backlog_points)
    finally:
        emu.down()

    from bench.docker_startup import docker_startup

    _progress("start-up under Docker (image already built)")
    result["startup"]["docker"] = docker_startup(work)

    if not args.skip_spark:
        from bench import udf

        rows = 100_000 if args.quick else 1_000_000
        _progress(f"UDF scoring: spark_udf vs pyfunc.predict on {rows} rows")
        result["udf_scoring"] = udf.udf_vs_pandas(rows, work)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller loads (a smoke run).")
    parser.add_argument("--skip-spark", action="store_true", help="Skip the Spark UDF benchmark.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
