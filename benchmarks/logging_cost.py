"""Benchmark: the cost of writing n log rows, tamrin's TrainingLogger against hezar's CSVLogger.

Run ``python benchmarks/logging_cost.py [--peers-python /tmp/peers-venv/bin/python]``.

Each row is what a training log step writes: ``train.loss`` and ``learning_rate`` at a new step.

* ``tamrin``: ``TrainingLogger.log`` (appends one CSV row and flushes it, and writes one TensorBoard
  scalar per key), then ``close()``.
* ``hezar CSVLogger``: hezar's ``CSVLogger.write`` (``pd.concat`` of the whole table with the new row,
  then ``to_csv`` of the whole table), run in the peers' environment (see benchmarks/peers.py).
* ``hezar log``: the same plus hezar's ``write_to_tensorboard`` (what ``hezar.Trainer.log`` does per
  call, without its trainer-state save), so that both sides write a CSV and TensorBoard.

Hezar rewrites the whole file for every row, so a row costs O(rows so far) and n rows O(n^2). Above
``--hezar-full-max`` rows its total is not run but estimated: the table it has after n - 100 rows is
built directly, the last 100 writes are timed (the marginal cost of a row at size n), and the total is
taken as ``n * marginal / 2``, a lower bound (it leaves out the part of a row's cost that does not
grow with n). tamrin's marginal cost is measured the same way (its last 100 rows), so the columns
show whether a row's cost depends on n.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

SIZES = [10**3, 10**4, 10**5]
TAIL = 100  # rows whose time gives the marginal cost of a row at size n


def row(step: int) -> dict[str, float]:
    return {"train.loss": 1.0 / step, "learning_rate": 1e-3 * (1 - step / 10**6)}


def time_tamrin(n: int) -> dict[str, float]:
    from tamrin.trainer.logs.logger import TrainingLogger

    with tempfile.TemporaryDirectory() as logs_dir:
        logger = TrainingLogger(logs_dir, columns=["train.loss", "learning_rate"])
        began = time.perf_counter()
        for step in range(1, n - TAIL + 1):
            logger.log(row(step), step=step, epoch=step / n)
        tail_began = time.perf_counter()
        for step in range(n - TAIL + 1, n + 1):
            logger.log(row(step), step=step, epoch=step / n)
        ended = time.perf_counter()
        logger.close()
        closed = time.perf_counter()
        size = os.path.getsize(Path(logs_dir) / "training_logs.csv")
    return {"total": closed - began, "marginal": (ended - tail_began) / TAIL, "csv_bytes": size, "estimated": False}


def time_hezar(n: int, *, full: bool, tensorboard: bool) -> dict[str, Any]:
    """Runs in the peers' environment: hezar's own CSVLogger (and write_to_tensorboard)."""
    import pandas as pd
    from hezar.trainer.trainer_utils import CSVLogger, write_to_tensorboard
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as logs_dir:
        logger = CSVLogger(logs_dir=logs_dir, csv_filename="training_logs.csv")
        writer = SummaryWriter(log_dir=logs_dir) if tensorboard else None

        def write(step: int) -> None:
            logs = row(step)
            logger.write(logs, step)
            if writer is not None:
                write_to_tensorboard(writer, logs, step)

        began = time.perf_counter()
        if full:
            for step in range(1, n - TAIL + 1):
                write(step)
        else:  # the table hezar would hold after n - TAIL rows, built in one go
            steps = range(1, n - TAIL + 1)
            rows = [row(step) for step in steps]
            logger.df = pd.DataFrame({"step": list(steps), **{key: [r[key] for r in rows] for key in rows[0]}})
        tail_began = time.perf_counter()
        for step in range(n - TAIL + 1, n + 1):
            write(step)
        ended = time.perf_counter()
        if writer is not None:
            writer.close()
        closed = time.perf_counter()
        size = os.path.getsize(logger.save_path)
    marginal = (ended - tail_began) / TAIL
    total = closed - began if full else n * marginal / 2
    return {"total": total, "marginal": marginal, "csv_bytes": size, "estimated": not full}


def hezar_in_peers(python: str, n: int, *, full: bool, tensorboard: bool) -> dict[str, Any]:
    command = [python, __file__, "hezar-worker", str(n)] + (["--full"] if full else [])
    command += ["--tensorboard"] if tensorboard else []
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"error": (completed.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def cell(result: dict[str, Any], key: str) -> str:
    if "error" in result:
        return f"could not run: {result['error']}"
    if key == "total":
        text = fmt_time(result["total"])
        return f">= {text} (est.)" if result["estimated"] else text
    return f"{result['marginal'] * 1e6:.0f} µs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    worker = commands.add_parser("hezar-worker", help="(internal) time hezar's CSVLogger for n rows")
    worker.add_argument("n", type=int)
    worker.add_argument("--full", action="store_true")
    worker.add_argument("--tensorboard", action="store_true")
    parser.add_argument("--peers-python", default="/tmp/peers-venv/bin/python", help="the interpreter with hezar")
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--hezar-full-max", type=int, default=10**3, help="largest n hezar runs in full")
    args = parser.parse_args(argv)
    if args.command == "hezar-worker":
        print(json.dumps(time_hezar(args.n, full=args.full, tensorboard=args.tensorboard)))
        return 0

    print("# Cost of n log rows (train.loss + learning_rate per row)\n")
    print(
        "| rows | tamrin total | tamrin per row at n | hezar CSVLogger total | hezar CSVLogger per row at n "
        "| hezar log (CSV + TB) total | hezar log per row at n |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        ours = time_tamrin(n)
        full = n <= args.hezar_full_max
        csv_only = hezar_in_peers(args.peers_python, n, full=full, tensorboard=False)
        with_tb = hezar_in_peers(args.peers_python, n, full=full, tensorboard=True)
        cells = [f"{n:.0e}", cell(ours, "total"), cell(ours, "marginal")]
        cells += [
            cell(csv_only, "total"),
            cell(csv_only, "marginal"),
            cell(with_tb, "total"),
            cell(with_tb, "marginal"),
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
