"""Reviewing runs from their logs: the last and best value of each metric, and plots of them against the step."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tamrin.trainer.logs.logger import FIXED_COLUMNS, unique, with_step_column

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["plot_logs", "summarize_logs"]

# Direction of "best" for metric names (the part after the last "."), used by `summarize_logs`.
_MINIMIZE = {"loss", "cer", "wer", "mse", "mae", "rmse", "perplexity", "ppl"}
_MAXIMIZE = {"accuracy", "acc", "f1", "precision", "recall", "bleu", "sacrebleu", "r2", "auc", "exact_match"}
_MAXIMIZE_PREFIXES = ("rouge", "f1_", "accuracy_", "precision_", "recall_")


def summarize_logs(df: pd.DataFrame, objectives: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Last and best value of every metric column.

    "Best" is the minimum for loss-like metrics (loss, cer, wer, mse, mae, ...) and the maximum for
    accuracy, f1, precision, recall, bleu, rouge*, r2, ... (judged on the name after the last ``.``).
    For other names (e.g. ``learning_rate``) best is left empty unless ``objectives`` names them.
    Ties go to the earliest step.

    Args:
        df: Logs as returned by :func:`load_logs`.
        objectives: Column name (``"evaluation.f1"``) or bare metric name (``"f1"``) to ``"min"`` or
            ``"max"``; overrides the defaults.

    Returns:
        One row per metric (index ``metric``) with columns ``last``, ``last_step``, ``best``,
        ``best_step`` and ``objective``.

    Raises:
        ValueError: ``df`` has no ``step`` column, or an objective is not ``"min"`` or ``"max"``.
    """
    import pandas as pd

    objectives = dict(objectives or {})
    for name, given in objectives.items():
        if given not in ("min", "max"):
            raise ValueError(f"`objectives[{name!r}]={given!r}` must be 'min' or 'max'")
    df = with_step_column(df).sort_values("step", kind="stable").reset_index(drop=True)
    records = []
    for column in (c for c in df.columns if c not in FIXED_COLUMNS):
        values = pd.to_numeric(df[column], errors="coerce").dropna()
        objective = _objective(column, objectives)
        empty = dict.fromkeys(("last", "last_step", "best", "best_step"))  # None reads as NaN / <NA>
        record: dict[str, Any] = {"metric": column, **empty, "objective": objective}
        if not values.empty:
            record.update(last=float(values.iloc[-1]), last_step=int(df.at[values.index[-1], "step"]))
            if objective is not None:
                best_index = values.idxmin() if objective == "min" else values.idxmax()
                record.update(best=float(values[best_index]), best_step=int(df.at[best_index, "step"]))
        records.append(record)
    columns = ["metric", "last", "last_step", "best", "best_step", "objective"]
    summary = pd.DataFrame.from_records(records, columns=columns)
    dtypes = {"last": "float64", "last_step": "Int64", "best": "float64", "best_step": "Int64"}
    return summary.astype(dtypes).set_index("metric")


def plot_logs(dfs: Mapping[str, pd.DataFrame] | pd.DataFrame, keys: Iterable[str] | None = None) -> Figure:
    """One panel per metric against step, with several runs overlaid.

    Needs matplotlib (the ``plot`` extra). Without a display, the Agg backend is used.

    Args:
        dfs: One run's logs, or run name to logs (as from :func:`load_logs`).
        keys: Metrics to plot, one panel each. Default: every metric column of any run, in the order
            ``train.*``, ``learning_rate``, ``evaluation.*``, then the rest.

    Returns:
        The matplotlib Figure; save it with ``fig.savefig(path)``.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: No runs, nothing to plot, or a key no run has.
    """
    import pandas as pd

    runs = {"run": dfs} if isinstance(dfs, pd.DataFrame) else dict(dfs)
    if not runs:
        raise ValueError("plot_logs needs at least one run, got an empty mapping")
    runs = {name: with_step_column(df) for name, df in runs.items()}
    available = unique(c for df in runs.values() for c in df.columns if c not in FIXED_COLUMNS)
    if keys is None:
        # A stable sort into groups: train.*, learning_rate, evaluation.*, the rest.
        keys = sorted(available, key=lambda k: (k[:6] != "train.", k != "learning_rate", k[:5] != "eval"))
    else:
        keys = list(keys)
        missing = [key for key in keys if key not in available]
        if missing:
            raise ValueError(f"`keys` {missing} are in no run's logs; available: {available}")
    if not keys:
        raise ValueError("plot_logs found no metric columns to plot")
    plt = _pyplot()
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5 * ncols, 3.5 * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[len(keys) :]:
        fig.delaxes(ax)
    for ax, key in zip(flat, keys, strict=False):  # flat may hold more axes than keys
        for name, df in runs.items():
            if key in df.columns:
                data = df[["step", key]].dropna()
                # Markers keep sparse series (an evaluation every few hundred steps) visible.
                marker = "o" if len(data) <= 30 else None
                ax.plot(data["step"], data[key], label=name, marker=marker, markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _objective(column: str, objectives: Mapping[str, str]) -> str | None:
    name = column.rsplit(".", 1)[-1]
    if column in objectives or name in objectives:
        return objectives.get(column, objectives.get(name))
    lower = name.lower()
    if lower in _MINIMIZE or lower.endswith("loss"):
        return "min"
    if lower in _MAXIMIZE or lower.startswith(_MAXIMIZE_PREFIXES):
        return "max"
    return None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("plot_logs needs matplotlib: `pip install 'tamrin[plot]'`") from error
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("MPLBACKEND")
    if sys.platform.startswith("linux") and not display and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
