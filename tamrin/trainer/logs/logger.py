"""CSV and TensorBoard logs of one run: writing them, and reading them back (review.py summarises and plots).

A run's logs live in ``{output_dir}/logs/``: ``training_logs.csv`` (one row per global step; columns ``step``,
``epoch``, then one per metric key such as ``train.loss`` or ``evaluation.f1``) and TensorBoard event files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CSV_FILENAME",
    "FIXED_COLUMNS",
    "LogWriteError",
    "TrainingLogger",
    "load_logs",
    "unique",
    "with_step_column",
]

CSV_FILENAME = "training_logs.csv"
FIXED_COLUMNS = ("step", "epoch")


class LogWriteError(OSError):
    """Writing the run's logs failed (a full disk, ...); its `errno` is the original error's."""

    def __str__(self) -> str:
        return str(self.strerror)


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
        header, rows = list(FIXED_COLUMNS), cast(list[list[str]], [])
        if resume_step is not None and self.csv_path.exists():
            loaded = _read_rows(self.csv_path, repair=True)
            if loaded is not None:
                header, rows = loaded
                step_index = header.index("step")
                rows = [row for row in rows if float(row[step_index]) <= resume_step]
        for key in columns or []:
            _check_key(key)
        self._write_file(unique([*header, *FIXED_COLUMNS, *(columns or [])]), rows)
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
        with self._tensorboard_errors():
            for key, value in values.items():
                self._writer.add_scalar(_tensorboard_tag(key), value, step)

    def flush(self) -> None:
        """Push buffered TensorBoard events (and the CSV, already flushed per row) to disk."""
        if self._file is not None:
            self._file.flush()
        if self._writer is not None:
            with self._tensorboard_errors():
                self._writer.flush()

    def close(self) -> None:
        """Flush and close both writers. Calling it again does nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with self._tensorboard_errors():
                writer.close()

    @contextlib.contextmanager
    def _tensorboard_errors(self) -> Iterator[None]:
        """TensorBoard writes from a thread and re-raises its bare OSError (a full disk) at a later call:
        name the folder and say what is intact (each CSV row is flushed as it is written)."""
        try:
            yield
        except OSError as err:
            raise LogWriteError(
                err.errno,
                f"Could not write the TensorBoard events in {self.logs_dir}: {err.strerror or err}. The CSV "
                f"({self.csv_path.name}) holds every row logged so far, and the checkpoints already saved are intact. "
                "Free space on that disk, then resume with resume_from_checkpoint=True",
            ) from err

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
    if key in FIXED_COLUMNS:
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


def with_step_column(df: pd.DataFrame) -> pd.DataFrame:
    if "step" in df.columns:
        return df
    if df.index.name == "step":
        return df.reset_index()
    raise ValueError(f"logs need a `step` column; got columns {list(df.columns)}")


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
