"""Run the benchmarks: `python -m bench [--quick] [--targets-only] [--json] [--out FILE]`.

Every comparison is measured side by side in the same run (emulator vs a stock `mlflow server`
on the same kind of SQLite store), and reported as a ratio. Prints issue 16's targets as a table
(or, with --json, the whole JSON document); a full run also writes bench/latest.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import (
    first_answer,
    mirror,
    procs,
    records,
    registry,
    report,
    slow_clients,
    tracking,
)
from bench import fresh_workspaces as bench_fresh
from bench import reset as bench_reset
from emulator.control import launcher
from emulator.control import mirror_link as control
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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    calls, points, singles = (5, 1000, 50) if args.quick else (200, 1000, 1000)
    rounds = 1 if args.quick else 5
    reset_rounds = 1 if args.quick else 5
    reset_load = {"runs": 20, "versions": 2} if args.quick else {"runs": 100, "versions": 10}
    writers, per_writer = 8, 25
    result: dict = {"machine": machine(), "quick": args.quick, "load_average_at_start": _load()}
    env = os.environ

    _progress(f"start-up to first answer, {rounds} round(s): `emulator up` on a new state dir and a stock "
              "mlflow server on a new store, the order alternating")
    template_cached = launcher.store_templates_dir().is_dir() and any(launcher.store_templates_dir().iterdir())
    emu, stock, startup = first_answer.interleaved(work, rounds, _progress)
    try:
        startup["emulator"]["store_template_cached"] = template_cached
        result["startup"] = startup
        pids = _emulator_pids(emu)
        result["memory_idle_mb"] = {role: round(procs.rss_mb(pid), 1) for role, pid in pids.items()}
        result["memory_idle_mb"]["stock_mlflow_server"] = round(procs.rss_mb(stock.pid), 1)
        db = emu.databricks

        _progress(f"reset in place of a workspace holding {reset_load['runs']} runs and {reset_load['versions']} "
                  f"model versions, {reset_rounds} round(s)")
        result["reset"] = {"emulator": bench_reset.reset_times(db.url, db.token, env, user=db.user,
                                                               rounds=reset_rounds, **reset_load)}

        _progress("a second pair of workspaces, linked, for the linked figures")
        linked_emu = Emulator(work / "linked-state").up()
        try:
            ldb = linked_emu.databricks
            control.link_workspaces(linked_emu.state, ldb.url)

            targets = {
                "databricks_emulator": tracking.Target(db.url, db.token, f"/Users/{db.user}/"),
                "databricks_emulator_linked": tracking.Target(ldb.url, ldb.token, f"/Users/{ldb.user}/",
                                                              lambda: mirror._backlog(linked_emu) == 0),
                "stock": tracking.Target(stock.url, None, ""),
            }
            _progress(f"tracking overhead, interleaved in {rounds} rounds: log_batch {calls} x {points} points, "
                      f"{singles} log_metric calls, on each of {', '.join(targets)}")
            batch = tracking.interleaved(tracking.BatchLoad, targets, env, calls=calls, rounds=rounds,
                                         experiment="bench-batch")
            single = tracking.interleaved(tracking.MetricLoad, targets, env, calls=singles, rounds=rounds,
                                          experiment="bench-single")
        finally:
            linked_emu.down()
        result["tracking"] = {"interleaved_rounds": rounds}
        for name, figures in (("log_batch", batch), ("log_metric", single)):
            stock_s = figures["stock"]["seconds"]
            result["tracking"][name] = {
                **figures,
                "ratio_emulator_over_stock": round(figures["databricks_emulator"]["seconds"] / stock_s, 2),
                "ratio_linked_over_stock": round(figures["databricks_emulator_linked"]["seconds"] / stock_s, 2),
            }

        held, probes = (100, 5) if args.quick else (500, 30)
        _progress(f"slow clients: {held} unfinished connections on each listener in turn, {probes} x (/health + "
                  "an authenticated call)")
        result["slow_clients"] = slow_clients.measure(emu, held=held, probes=probes)

        if not args.targets_only:
            _progress(f"registry: {writers} writers x {per_writer} registrations of one name")
            env["MLFLOW_TRACKING_TOKEN"] = emu.azureml.token
            aml_reg = registry.concurrent_registrations(
                emu.azureml.url, writers=writers, per_writer=per_writer, name="bench-model")
            env.pop("MLFLOW_TRACKING_TOKEN")
            stock_reg = registry.concurrent_registrations(
                stock.url, writers=writers, per_writer=per_writer, name="bench-model")
            result["registry_concurrency"] = {
                "azureml_emulator": aml_reg, "stock": stock_reg,
                "ratio_emulator_over_stock": round(aml_reg["seconds"] / stock_reg["seconds"], 2),
            }
            result["memory_peak_mb"] = {role: round(procs.peak_rss_mb(pid), 1) for role, pid in pids.items()}
            result["memory_peak_mb"]["stock_mlflow_server"] = round(procs.peak_rss_mb(stock.pid), 1)

        if not args.quick:  # a second stock start-up: seconds, left out of the smoke run
            # What a stock server offers instead of a reset: stop it, start one on a new store.
            _progress("stock server restart on a new store (what it has instead of a reset)")
            stopped_s = stock.stop()
            fresh = procs.StockServer(work / "stock-new")
            restart_s = stopped_s + fresh.start()["first_answer_s"]
            fresh.stop()
            result["reset"]["stock_restart_new_store_s"] = round(restart_s, 3)
            result["reset"]["ratio_emulator_over_stock_restart"] = round(
                result["reset"]["emulator"]["median_s"] / restart_s, 3)
    finally:
        if stock.proc is not None and stock.proc.poll() is None:
            stock.stop()
        emu.down()

    fresh_tests = 10 if args.quick else 50
    _progress(f"fresh_workspaces: set-up and tear-down of {fresh_tests} pytest tests through the plugin")
    result["fresh_workspaces"] = bench_fresh.measure(fresh_tests)
    result["records"] = records.read()

    if not args.targets_only:
        _more(args, work, env, result)
    result["load_average_at_end"] = _load()
    result["targets"] = report.targets(result)
    shutil.rmtree(work, ignore_errors=True)  # kept only when a step failed (its logs are there)
    return result


def _more(args, work: Path, env, result: dict) -> None:
    """The figures without a stock counterpart: mirror lag and catch-up, deployments' model
    environments, Docker start-up, Spark UDF scoring."""
    lag_points, backlog_points = (100, 2000) if args.quick else (300, 10_000)
    emu = Emulator(work / "mirror-state").up()
    try:
        _progress(f"mirror lag: {lag_points} points at 20/s while linked")
        result["mirror"] = {"lag": mirror.lag(emu, env, points=lag_points, rate_per_s=20)}
        _progress(f"mirror catch-up: {backlog_points} points logged during an Azure ML outage")
        result["mirror"]["catch_up"] = mirror.catch_up(emu, env, points=backlog_points)
    finally:
        emu.down()

    from bench import model_envs, online_deploy

    deploy_rounds = 2 if args.quick else 4
    _progress(f"online deployment through azure-ai-ml, {deploy_rounds} rounds (endpoint, deployment, first score)")
    result["online_deployment"] = online_deploy.measure(work, deploy_rounds)

    _progress(f"online deployment of a model needing {model_envs.EXTRA}: first build, then a re-deploy "
              "with the environment cached")
    result["model_environment"] = model_envs.measure(work)

    from bench.docker_startup import docker_startup

    _progress("start-up under Docker (image already built)")
    result["startup"]["docker"] = docker_startup(work)

    if not args.skip_spark:
        from bench import udf

        rows = 100_000 if args.quick else 1_000_000
        _progress(f"UDF scoring: spark_udf vs pyfunc.predict on {rows} rows")
        result["udf_scoring"] = udf.udf_vs_pandas(rows, work)


LATEST = Path(__file__).with_name("latest.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller loads (a smoke run).")
    parser.add_argument("--targets-only", action="store_true",
                        help="Only issue 16's target figures (start-up, reset, tracking overhead).")
    parser.add_argument("--skip-spark", action="store_true", help="Skip the Spark UDF benchmark.")
    parser.add_argument("--json", action="store_true", help="Print the JSON document instead of the table.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here (a full run writes bench/latest.json).")
    args = parser.parse_args(argv)
    result = run(args)
    report.emit(result, args.json, report.table(result["targets"]), args.out or (LATEST if not (args.quick or args.targets_only) else None), _progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
