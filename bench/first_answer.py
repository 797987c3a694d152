"""Start-up to first answer: `emulator up` on a new state dir until an authenticated API call of
each workspace answers 200, against a stock `mlflow server` on a new store (issue 16: <= 0.5x),
in interleaved rounds (the order rotates) so machine load falls on all alike. Two emulator
figures: cold (a new process imports MLflow's server: a session's first `emulator up`) and warm
(forked from a ready prefork zygote, emulator.control.prefork_zygote: the second and later ups of
a pytest session; issue 33: <= 0.3x).

``python -m bench.first_answer [--rounds N]`` prints the figures alone (JSON)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import StockServer, first_answer
from emulator import settings
from emulator.control import launcher, prefork_zygote_client
from harness.workspaces import Emulator


def emulator_up(state_dir: Path, zygote: str | None = None) -> tuple[Emulator, dict]:
    """`emulator up` as users run it (the CLI, free ports), then each workspace's first answer.
    Returns the running emulator (the caller takes it down) and the timings from launch.
    ``zygote``: the socket of a ready prefork zygote (warm), else none whatever the environment says (cold)."""
    ports = {role: launcher.free_port() for role in settings.ROLES}
    env = {**os.environ, **{settings.PORT_ENV[role]: str(port) for role, port in ports.items()},
           prefork_zygote_client.ENV: zygote or "off"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "emulator.control.cli", "up", "--state-dir", str(state_dir)],
                          env=env, capture_output=True, text=True)
    up_s = time.monotonic() - started
    emu = Emulator(state_dir, ports=ports)
    if done.returncode != 0:
        emu.down()
        raise RuntimeError(f"emulator up failed: {done.stderr[-2000:]}")
    try:
        db, aml = emu.databricks, emu.azureml
        answered = {"databricks": first_answer(db.url, db.token) - started,
                    "azureml": first_answer(aml.tracking_uri, aml.token) - started}
    except BaseException:
        emu.down()
        raise
    return emu, {"up_returned_s": round(up_s, 3),
                 **{f"{role}_first_answer_s": round(s, 3) for role, s in answered.items()},
                 "both_first_answer_s": round(max(answered.values()), 3)}


def interleaved(work: Path, rounds: int, progress=lambda msg: None) -> tuple[Emulator, StockServer, dict]:
    """``rounds`` start-ups of each (cold emulator, warm emulator, stock), on new state dirs and
    stores, the order rotating; returns the last round's cold emulator and stock server still
    running (the caller stops them) and the figures: per round, and the medians the targets compare."""
    emu_rounds, warm_rounds, stock_rounds = [], [], []
    emu = stock = None
    zygote = prefork_zygote_client.start()  # what a pytest session runs (harness.pytest_plugin)
    try:
        if not zygote.ready():
            raise RuntimeError(f"the prefork zygote did not answer: see {zygote.folder}/zygote.log")
        for n in range(rounds):
            if emu is not None:  # the previous round's: only the last round's stay up
                emu.down()
                stock.stop()
            kinds = ("emulator", "stock", "warm")
            for which in kinds[n % 3:] + kinds[:n % 3]:
                if which == "emulator":
                    emu, figures = emulator_up(work / f"state-{n}")
                    emu_rounds.append(figures)
                elif which == "warm":
                    warm, figures = emulator_up(work / f"warm-{n}", zygote.socket)
                    warm.down()
                    warm_rounds.append(figures)
                else:
                    stock = StockServer(work / f"stock-{n}")
                    stock_rounds.append(stock.start())
            progress(f"start-up round {n + 1}/{rounds}: emulator {emu_rounds[-1]['both_first_answer_s']:.2f} s "
                     f"(warm {warm_rounds[-1]['both_first_answer_s']:.2f} s), "
                     f"stock {stock_rounds[-1]['first_answer_s']:.2f} s")
    except BaseException:
        if emu is not None:
            emu.down()
        if stock is not None and stock.proc is not None and stock.proc.poll() is None:
            stock.stop()
        raise
    finally:
        zygote.stop()

    def median(rows: list[dict], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 3)

    figures = {
        "rounds": rounds,
        "emulator": {**{key: median(emu_rounds, key) for key in emu_rounds[0]}, "per_round": emu_rounds},
        "emulator_warm": {**{key: median(warm_rounds, key) for key in warm_rounds[0]}, "per_round": warm_rounds},
        "stock": {**{key: median(stock_rounds, key) for key in stock_rounds[0]}, "per_round": stock_rounds},
    }
    return emu, stock, figures


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.first_answer", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    emu, stock, figures = interleaved(Path(tempfile.mkdtemp(prefix="emulator-bench-")), args.rounds,
                                      lambda msg: print(msg, file=sys.stderr, flush=True))
    emu.down()
    stock.stop()
    stock_s = figures["stock"]["first_answer_s"]
    figures["load_average"] = {"at_start": [round(x, 2) for x in load], "at_end": [round(x, 2) for x in os.getloadavg()]}
    figures["ratios"] = {"cold": round(figures["emulator"]["both_first_answer_s"] / stock_s, 2),
                         "warm": round(figures["emulator_warm"]["both_first_answer_s"] / stock_s, 2)}
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
