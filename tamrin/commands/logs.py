"""`tamrin logs OUTPUT_DIR [OTHER_DIR ...] [--plot FILE.png] [--csv]`: review one run's logs or compare several.

Without options it prints, for every logged metric, the last value, the best value and the step of the
best (min for losses and error rates, max for accuracy-like metrics; see `summarize_logs`), one column
group per run. `--plot FILE.png` draws each metric against the step, one panel each, runs overlaid;
`--csv` prints the rows themselves (with a `run` column when there are several runs). Each OUTPUT_DIR
may also be a logs dir or a `training_logs.csv`. A run that is still writing can be read at any time:
a half-written last line is skipped.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tamrin.configs import ConfigError
from tamrin.trainer.logs import review as log_review
from tamrin.trainer.logs.logger import load_logs

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["register", "run", "format_summary", "run_names", "check_plot_suffix"]

_MISSING = "-"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "logs",
        help="show a run's metrics (last, best, step of best), compare runs, plot or export them",
        description="Summarise the CSV logs of one run, or of several runs side by side.",
    )
    parser.add_argument(
        "output_dirs",
        nargs="+",
        metavar="OUTPUT_DIR",
        help="a run's output_dir (or its logs dir, or a training_logs.csv); give several to compare them",
    )
    parser.add_argument(
        "--plot", metavar="FILE", default=None, help="draw each metric against the step into FILE (.png, .pdf, ...)"
    )
    parser.add_argument("--csv", action="store_true", help="print the logged rows as CSV instead of the summary")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.plot:
        check_plot_suffix(args.plot)  # before any reading: a typo'd name should not cost the summary first
    names = run_names(args.output_dirs)
    try:
        runs = {name: load_logs(path) for name, path in zip(names, args.output_dirs)}
    except ValueError as error:  # a CSV that is not a tamrin log
        print(f"tamrin logs: error: {error}", file=sys.stderr)
        return 2
    if args.csv:
        _print_csv(runs)
    else:
        print(format_summary({name: log_review.summarize_logs(df) for name, df in runs.items()}, runs))
    if args.plot:
        try:
            figure = log_review.plot_logs(runs)
        except (ImportError, ValueError) as error:
            print(f"tamrin logs: error: cannot plot: {error}", file=sys.stderr)
            return 2
        path = Path(args.plot)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        print(f"Wrote {path}", file=sys.stderr if args.csv else sys.stdout)
    return 0


def check_plot_suffix(plot: str) -> None:
    """`--plot out.txt` failed deep inside matplotlib; name the file and the formats it can write."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return  # plot_logs says how to install it
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(plot).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ConfigError(
            f"`--plot {plot}`: cannot write a plot as {('.' + suffix) if suffix else 'a file without a suffix'}. "
            f"Valid extensions: {', '.join('.' + name for name in formats)}."
        )


def run_names(paths: Sequence[str]) -> list[str]:
    """Short, distinct labels for runs: the paths as given, without a trailing logs dir or CSV name."""
    names = []
    for given in paths:
        path = Path(given)
        if path.suffix == ".csv":
            path = path.parent
        if path.name == "logs" and path.parent != Path("."):
            path = path.parent
        names.append(str(path))
    for index, name in enumerate(names):  # the same run given twice (or two files of one dir)
        if names.count(name) > 1:
            names[index] = f"{name} [{index + 1}]"
    return names


def format_summary(summaries: dict[str, pd.DataFrame], runs: dict[str, pd.DataFrame] | None = None) -> str:
    """The summary table: one row per metric; per run the last value, the best, and its step.

    Args:
        summaries: Run name to the output of `summarize_logs`.
        runs: Run name to its logs, for the one-line description of each run above the table.

    Returns:
        The text to print (no trailing newline).
    """
    metrics = list(dict.fromkeys(metric for summary in summaries.values() for metric in summary.index))
    lines = [_describe(name, df) for name, df in (runs or {}).items()]
    if not metrics:
        return "\n".join([*lines, "No metrics logged yet."])
    objectives: dict[str, str] = {}  # metric -> "minimize" or "maximize"
    for summary in summaries.values():
        for metric in summary.index:
            objective = summary.at[metric, "objective"]
            if isinstance(objective, str):  # None (no direction) may come back as NaN
                objectives.setdefault(metric, objective)
    header = ["metric", "goal"]
    groups = []
    for name in summaries:
        groups.append((name, len(header)))
        header += ["last", "best", "best step"]
    rows = [header]
    for metric in metrics:
        row = [metric, objectives.get(metric) or _MISSING]
        for summary in summaries.values():
            if metric in summary.index:
                entry = summary.loc[metric]
                row += [_number(entry["last"]), _number(entry["best"]), _step(entry["best_step"])]
            else:
                row += [_MISSING] * 3
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    table = []
    if len(summaries) > 1:  # a line of run names, each above its run's three columns
        cells = [" " * (widths[0] + 2 + widths[1])]
        for name, first in groups:
            widths[first] += max(0, len(name) - (sum(widths[first : first + 3]) + 4))  # a long name widens its group
            cells.append(name.center(sum(widths[first : first + 3]) + 4))
        table.append("  ".join(cells).rstrip())
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:])]
        table.append("  ".join(cells).rstrip())
    return "\n".join([*lines, "", *table] if lines else table)


def _describe(name: str, df: pd.DataFrame) -> str:
    if df.empty:
        return f"{name}: no rows logged yet"
    epoch = df["epoch"].dropna() if "epoch" in df.columns else None
    epoch_text = f", epoch {epoch.iloc[-1]:.4g}" if epoch is not None and not epoch.empty else ""
    return f"{name}: {len(df)} logged steps, last step {int(df['step'].iloc[-1])}{epoch_text}"


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    return f"{float(value):.6g}"


def _step(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):  # pandas' <NA> for a metric without a direction
        return _MISSING


def _print_csv(runs: dict[str, pd.DataFrame]) -> None:
    import pandas as pd  # pandas: ~0.25 s to import; only --csv needs it here

    if len(runs) == 1:
        frame = next(iter(runs.values()))
    else:
        frame = pd.concat([df.assign(run=name) for name, df in runs.items()], ignore_index=True)
        frame = frame[["run", *(column for column in frame.columns if column != "run")]]
    frame.to_csv(sys.stdout, index=False, lineterminator="\n")
