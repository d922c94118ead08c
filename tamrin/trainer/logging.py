"""CSV and TensorBoard logs of one run: writing, reading back, summarising and plotting.

A run's logs live in ``{output_dir}/logs/``: ``training_logs.csv`` (one row per global step; columns ``step``,
``epoch``, then one per metric key such as ``train.loss`` or ``evaluation.f1``) and TensorBoard event files.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["CSV_FILENAME", "TrainingLogger", "load_logs", "plot_logs", "summarize_logs"]

CSV_FILENAME = "training_logs.csv"
_FIXED_COLUMNS = ("step", "epoch")
# Direction of "best" for metric names (the part after the last "."), used by `summarize_logs`.
_MINIMIZE = {"loss", "cer", "wer", "mse", "mae", "rmse", "perplexity", "ppl"}
_MAXIMIZE = {"accuracy", "acc", "f1", "precision", "recall", "bleu", "sacrebleu", "r2", "auc", "exact_match"}
_MAXIMIZE_PREFIXES = ("rouge", "f1_", "accuracy_", "precision_", "recall_")


class TrainingLogger:
    """Writes one run's metrics to ``{logs_dir}/training_logs.csv`` and to TensorBoard.

    Writing is O(1) per row: the CSV stays open in append mode and is flushed after every :meth:`log`
    call, so a crash loses nothing that was logged. The whole file is rewritten only when noted below.

    * **One row per step.** Consecutive :meth:`log` calls for the same step (train loss, then the
      evaluation at that step) are merged into the last CSV row: the logger remembers the byte offset
      where that row starts, truncates the file there and appends the merged row, which costs one row,
      not one file. Each call is on disk right away, so there is no buffered row to lose in a crash.
      A step that comes back later, after other steps, gets its own row; :func:`load_logs` merges rows
      that share a step (last value per column wins).
    * **Header widening.** A key that is not yet a column is added at the end of the header; the file
      is rewritten once, atomically, with empty cells for earlier rows. Pass the keys known up front as
      ``columns`` so this stays rare.
    * **Resume.** With ``resume_step=s``, rows with ``step > s`` are dropped (the file is rewritten
      once) and TensorBoard is opened with ``purge_step=s + 1``, so redone steps replace the old ones
      instead of repeating them. With ``resume_step=None`` the CSV starts empty, and earlier event files
      in ``logs_dir`` are hidden from TensorBoard with ``purge_step=0``.
    * **Repair.** When a resumed CSV ends with a damaged line (a crash cut it short: too few fields,
      a value that does not parse, or no final newline), that line alone is dropped with a warning.

    Args:
        logs_dir: Folder for the CSV and the event files; created when missing.
        columns: Metric keys known up front (e.g. ``["train.loss", "learning_rate", "evaluation.loss"]``).
        resume_step: The global step of the checkpoint being resumed, or None for a new run.
        enabled: False on non-main processes: every method is a no-op and nothing is created.
    """

    def __init__(
        self,
        logs_dir: str | os.PathLike[str],
        *,
        columns: list[str] | None = None,
        resume_step: int | None = None,
        enabled: bool = True,
    ) -> None:
        self.logs_dir = Path(logs_dir)
        self.csv_path = self.logs_dir / CSV_FILENAME
        self.enabled = enabled
        self._file: Any = None
        self._writer: Any = None
        self._header: list[str] = []
        self._size = 0  # tracked by hand: tell() is unreliable after truncating an append-mode file
        self._last_row: dict[str, str] | None = None
        self._last_row_offset = 0
        if not enabled:
            return
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        header, rows = list(_FIXED_COLUMNS), []
        if resume_step is not None and self.csv_path.exists():
            loaded = _read_rows(self.csv_path, repair=True)
            if loaded is not None:
                header, rows = loaded
                step_index = header.index("step")
                rows = [row for row in rows if float(row[step_index]) <= resume_step]
        for key in columns or []:
            _check_key(key)
        self._write_file(_unique([*header, *_FIXED_COLUMNS, *(columns or [])]), rows)
        self._writer = _open_summary_writer(self.logs_dir, resume_step)

    def log(self, logs: Mapping[str, Any], step: int, epoch: float | None = None) -> None:
        """Write the metrics of one step: a CSV row (merged with the last one if it is the same step)
        and one TensorBoard scalar per key.

        Args:
            logs: Metric key to value: a python number, a numpy scalar or a 0-d tensor. None is skipped.
            step: The global step the values belong to.
            epoch: The epoch, written to the ``epoch`` column: a whole epoch as an integer (``2``), a
                fractional one as a float (``0.25``).

        Raises:
            ValueError: A key is ``step`` or ``epoch`` (pass those as arguments) or a value is not a number.
            RuntimeError: The logger was closed.
        """
        if not self.enabled:
            return
        if self._file is None:
            raise RuntimeError(f"TrainingLogger for {self.csv_path} is closed; create a new one to log more")
        values = {key: _to_float(key, value) for key, value in logs.items() if value is not None}
        new_keys = [key for key in values if key not in self._header]
        if new_keys:
            self._write_file([*self._header, *new_keys], None)
        step = int(step)
        fields = {key: repr(value) for key, value in values.items()}
        if epoch is not None:
            fields["epoch"] = _format_epoch(epoch)
        if self._last_row is not None and self._last_row["step"] == str(step):
            # Replace the last row in place: a crash right here loses only this step's earlier values.
            fields = {**self._last_row, **fields}
            self._file.truncate(self._last_row_offset)
            self._size = self._last_row_offset
        else:
            fields["step"] = str(step)
        self._append_row(fields)
        for key, value in values.items():
            self._writer.add_scalar(_tensorboard_tag(key), value, step)

    def flush(self) -> None:
        """Push buffered TensorBoard events (and the CSV, already flushed per row) to disk."""
        if self._file is not None:
            self._file.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close both writers. Calling it again does nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TrainingLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _append_row(self, fields: dict[str, str]) -> None:
        data = (",".join(fields.get(column, "") for column in self._header) + "\n").encode()
        self._last_row_offset = self._size
        self._file.write(data)
        # Flushed per row so that a crash loses nothing; a full fsync per row would be too slow.
        self._file.flush()
        self._size += len(data)
        self._last_row = fields

    def _write_file(self, header: list[str], rows: list[list[str]] | None) -> None:
        """Rewrite the CSV atomically with ``header``; ``rows=None`` keeps (and pads) the rows on disk."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if rows is None:
            loaded = _read_rows(self.csv_path, repair=False)
            rows = loaded[1] if loaded is not None else []
        rows = [row + [""] * (len(header) - len(row)) for row in rows]
        header_line = io.StringIO()
        csv.writer(header_line, lineterminator="\n").writerow(header)
        lines = [header_line.getvalue().encode()] + [(",".join(row) + "\n").encode() for row in rows]
        tmp_path = self.csv_path.with_name(self.csv_path.name + ".tmp")
        with open(tmp_path, "wb") as tmp:
            tmp.writelines(lines)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, self.csv_path)
        self._header = header
        self._size = sum(len(line) for line in lines)
        self._last_row_offset = self._size - len(lines[-1])
        self._last_row = dict(zip(header, rows[-1], strict=True)) if rows else None
        self._file = open(self.csv_path, "ab")  # noqa: SIM115 - open for the logger's lifetime


def _format_epoch(epoch: float) -> str:
    """A whole epoch as an integer ("2", as the Trainer logs it), a fractional one as a float ("0.25")."""
    value = float(epoch)
    return str(int(value)) if value.is_integer() else repr(value)


def load_logs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a run's CSV logs back, one row per step.

    Rows that share a step are merged (the last non-empty value of each column wins) and the result
    is sorted by step. A trailing partial line, as left by a run that is still writing or crashed,
    is ignored.

    Args:
        path: An output dir, a logs dir, or the CSV file itself.

    Returns:
        A DataFrame with columns ``step``, ``epoch`` and one per metric.

    Raises:
        FileNotFoundError: No CSV at ``path``; the message lists the paths tried.
        ValueError: The CSV has no ``step`` column.
    """
    import pandas as pd

    csv_path = _resolve_csv_path(Path(path))
    text = csv_path.read_bytes().decode("utf-8", errors="replace")
    text = text[: text.rfind("\n") + 1]  # drop a partial last line; rfind=-1 leaves ""
    df = pd.read_csv(io.StringIO(text or "step,epoch\n"), on_bad_lines="warn")
    if "step" not in df.columns:
        raise ValueError(f"{csv_path} has no `step` column (it has {list(df.columns)}); is it a tamrin log?")
    # Numbers throughout, also for a header-only file (which pandas would read as object columns).
    df = df.apply(pd.to_numeric, errors="coerce").astype("float64").dropna(subset=["step"])
    return df.groupby("step", sort=True).last().reset_index().astype({"step": "int64"})


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
    for name, objective in objectives.items():
        if objective not in ("min", "max"):
            raise ValueError(f"`objectives[{name!r}]={objective!r}` must be 'min' or 'max'")
    df = _with_step_column(df).sort_values("step", kind="stable").reset_index(drop=True)
    records = []
    for column in (c for c in df.columns if c not in _FIXED_COLUMNS):
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
    runs = {name: _with_step_column(df) for name, df in runs.items()}
    available = _unique(c for df in runs.values() for c in df.columns if c not in _FIXED_COLUMNS)
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


def _read_rows(path: Path, *, repair: bool) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows of fields) of a tamrin CSV, None without a complete header; ``repair`` drops a
    damaged last line with a warning (a damaged line elsewhere is always an error)."""
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    # Every row ends with "\n", so the last piece is "" unless a write was cut short.
    numbered = [(number, line.rstrip("\r")) for number, line in enumerate(lines, start=1) if line.strip()]
    partial_number = len(lines) if lines[-1].strip() else None
    if not numbered or numbered[0][0] == partial_number:
        if repair and numbered:
            warnings.warn(f"{path}: line 1 (the header) is cut short; starting the logs afresh", stacklevel=3)
        return None
    header = next(csv.reader([numbered[0][1]]))
    if "step" not in header:
        raise ValueError(f"{path}: the header {header} has no `step` column; move this file away to resume")
    step_index, rows = header.index("step"), []
    for position, (number, line) in enumerate(numbered[1:], start=2):
        fields = next(csv.reader([line]), [])
        if number != partial_number and _valid_row(fields, len(header), step_index):
            rows.append(fields)
        elif repair and position == len(numbered):
            message = f"{path}: dropped damaged line {number} (cut short by a crash?): {line!r}"
            warnings.warn(message, stacklevel=3)
        else:
            raise ValueError(f"{path}: line {number} is damaged: {line!r}; fix or delete it, then resume")
    return header, rows


def _valid_row(fields: list[str], width: int, step_index: int) -> bool:
    try:
        _ = [float(field) for field in fields if field]
        return len(fields) == width and float(fields[step_index]).is_integer()
    except ValueError:
        return False


def _check_key(key: str) -> None:
    if key in _FIXED_COLUMNS:
        raise ValueError(f"metric key {key!r} is reserved; pass it as the `{key}=` argument of log()")
    if not isinstance(key, str) or not key or "\n" in key or "\r" in key:
        raise ValueError(f"metric key {key!r} must be a non-empty string without line breaks")


def _to_float(key: str, value: Any) -> float:
    _check_key(key)
    try:
        return float(value)  # python numbers, numpy scalars and 0-d tensors alike
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"`logs[{key!r}]={value!r}` must be a number or a 0-d tensor") from error


def _tensorboard_tag(key: str) -> str:
    """``train.loss`` -> ``train/loss``; a key without a prefix goes under ``train/``."""
    prefix, dot, name = key.partition(".")
    return f"{prefix}/{name}" if dot else f"train/{key}"


def _open_summary_writer(logs_dir: Path, resume_step: int | None) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("TrainingLogger writes TensorBoard events: `pip install tensorboard`") from error
    if resume_step is not None:
        purge_step = resume_step + 1
    elif any(logs_dir.glob("events.out.tfevents.*")):
        purge_step = 0  # a new run in an old logs dir: hide the old run's events, as its CSV was emptied
    else:
        purge_step = None
    return SummaryWriter(log_dir=str(logs_dir), purge_step=purge_step)


def _resolve_csv_path(path: Path) -> Path:
    if path.is_file() or path.suffix == ".csv":
        candidates = [path]
    else:
        candidates = [path / CSV_FILENAME, path / "logs" / CSV_FILENAME]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no training logs found; tried: {', '.join(str(c) for c in candidates)}")


def _with_step_column(df: pd.DataFrame) -> pd.DataFrame:
    if "step" in df.columns:
        return df
    if df.index.name == "step":
        return df.reset_index()
    raise ValueError(f"logs need a `step` column; got columns {list(df.columns)}")


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


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
