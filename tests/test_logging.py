"""Tests for TrainingLogger, load_logs, summarize_logs and plot_logs (tamrin.trainer.logs.logger)."""

from __future__ import annotations

import builtins
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tamrin.trainer.logs.logger import CSV_FILENAME, TrainingLogger, load_logs
from tamrin.trainer.logs.review import plot_logs, summarize_logs

COLUMNS = ["train.loss", "learning_rate", "evaluation.loss", "evaluation.f1"]


def _run(logs_dir: Path, steps: range, *, resume_step: int | None = None, offset: float = 0.0) -> None:
    """Log a train loss (``offset + 1/step``) and learning rate per step, and an evaluation every 5 steps."""
    with TrainingLogger(logs_dir, columns=COLUMNS, resume_step=resume_step) as logger:
        for step in steps:
            logger.log({"train.loss": offset + 1 / step, "learning_rate": 1e-3}, step=step, epoch=step / 10)
            if step % 5 == 0:
                logger.log({"evaluation.loss": offset + 2 / step, "evaluation.f1": step / 100}, step=step)


def _data_lines(logs_dir: Path) -> list[str]:
    return (logs_dir / CSV_FILENAME).read_text().splitlines()[1:]


def _scalars(logs_dir: Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(logs_dir))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]
    }


def _next_second() -> None:
    # Event file names start with the time in whole seconds; a new second keeps two writers' files in order.
    time.sleep(1.01 - time.time() % 1)


def test_rows_read_back_equal(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    with TrainingLogger(logs_dir, columns=["train.loss", "learning_rate"]) as logger:
        logger.log({"train.loss": 0.5, "learning_rate": 1e-3}, step=1, epoch=0.1)
        logger.log({"train.loss": torch.tensor(0.25), "learning_rate": np.float32(2e-3)}, step=2, epoch=0.2)
        logger.log({"train.loss": 1, "learning_rate": 3e-3}, step=3, epoch=0.3)

    expected = pd.DataFrame(
        {
            "step": [1, 2, 3],
            "epoch": [0.1, 0.2, 0.3],
            "train.loss": [0.5, 0.25, 1.0],
            "learning_rate": [1e-3, float(np.float32(2e-3)), 3e-3],
        }
    )
    for path in (tmp_path, logs_dir, logs_dir / CSV_FILENAME):
        pd.testing.assert_frame_equal(load_logs(path), expected)


def test_load_logs_missing_file_names_the_paths_tried(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"logs[/\\]training_logs\.csv"):
        load_logs(tmp_path)


def test_column_appearing_later_widens_header_with_nan_before(tmp_path: Path) -> None:
    with TrainingLogger(tmp_path, columns=["train.loss"]) as logger:
        logger.log({"train.loss": 1.0}, step=1)
        logger.log({"train.loss": 0.9}, step=2)
        logger.log({"evaluation.bleu": 0.3}, step=2)  # a new column at the step already written
        logger.log({"train.loss": 0.8}, step=3)

    assert (tmp_path / CSV_FILENAME).read_text().splitlines()[0] == "step,epoch,train.loss,evaluation.bleu"
    df = load_logs(tmp_path)
    assert df["step"].tolist() == [1, 2, 3]
    assert df["train.loss"].tolist() == [1.0, 0.9, 0.8]
    assert math.isnan(df["evaluation.bleu"][0]) and math.isnan(df["evaluation.bleu"][2])
    assert df["evaluation.bleu"][1] == 0.3


def test_same_step_logs_merge_into_one_row(tmp_path: Path) -> None:
    with TrainingLogger(tmp_path, columns=COLUMNS) as logger:
        logger.log({"train.loss": 0.7, "learning_rate": 1e-3}, step=5, epoch=0.5)
        logger.log({"evaluation.loss": 0.6, "evaluation.f1": 0.9}, step=5)
        # On disk at once, not held back until the next step.
        assert _data_lines(tmp_path) == ["5,0.5,0.7,0.001,0.6,0.9"]
        logger.log({"train.loss": 0.65}, step=6, epoch=0.6)

    assert _data_lines(tmp_path) == ["5,0.5,0.7,0.001,0.6,0.9", "6,0.6,0.65,,,"]


def test_load_logs_merges_rows_sharing_a_step_and_ignores_a_partial_line(tmp_path: Path) -> None:
    (tmp_path / CSV_FILENAME).write_text(
        "step,epoch,train.loss,evaluation.f1\n"
        "2,0.2,0.5,\n"
        "1,0.1,0.9,\n"
        "2,,0.4,0.7\n"  # the same step again: non-empty values replace the earlier ones
        "3,0.3,0.3"  # still being written
    )
    df = load_logs(tmp_path)
    assert df["step"].tolist() == [1, 2]
    assert df["epoch"].tolist() == [0.1, 0.2]
    assert df["train.loss"].tolist() == [0.9, 0.4]
    assert df["evaluation.f1"][1] == 0.7


def test_resume_drops_later_rows_and_continues_without_duplicates(tmp_path: Path) -> None:
    _run(tmp_path, range(1, 13))  # crashed at step 12; the last checkpoint is at step 6
    _run(tmp_path, range(7, 16), resume_step=6, offset=100.0)

    steps = [int(line.split(",")[0]) for line in _data_lines(tmp_path)]
    assert steps == list(range(1, 16))
    df = load_logs(tmp_path)
    assert df["step"].is_monotonic_increasing and not df["step"].duplicated().any()
    assert df["train.loss"].tolist() == [1 / s for s in range(1, 7)] + [100 + 1 / s for s in range(7, 16)]
    assert df.set_index("step").loc[10, "evaluation.loss"] == 100 + 2 / 10


def test_resume_purges_redone_steps_from_tensorboard(tmp_path: Path) -> None:
    _run(tmp_path, range(1, 13))
    _next_second()
    _run(tmp_path, range(7, 16), resume_step=6, offset=100.0)

    scalars = _scalars(tmp_path)
    assert set(scalars) == {"train/loss", "train/learning_rate", "evaluation/loss", "evaluation/f1"}
    for tag, events in scalars.items():
        steps = [step for step, _ in events]
        assert len(steps) == len(set(steps)), f"{tag} repeats steps: {steps}"
    assert scalars["train/loss"] == [(s, pytest.approx(1 / s)) for s in range(1, 7)] + [
        (s, pytest.approx(100 + 1 / s)) for s in range(7, 16)
    ]
    assert [step for step, _ in scalars["evaluation/f1"]] == [5, 10, 15]


def test_new_run_in_an_old_logs_dir_starts_afresh(tmp_path: Path) -> None:
    _run(tmp_path, range(1, 11))
    _next_second()
    _run(tmp_path, range(1, 4), offset=100.0)

    assert load_logs(tmp_path)["step"].tolist() == [1, 2, 3]
    assert _scalars(tmp_path)["train/loss"] == [(s, pytest.approx(100 + 1 / s)) for s in range(1, 4)]


@pytest.mark.parametrize(
    "damaged",
    ["6,0.6,0.16", "6,0.6,0.16,0.001\n", "6,0.6,0.16,0.0\x00\x00,,\n", "6,0.6,0.16,0.001,,"],
    ids=["cut-short", "too-few-fields", "unparseable", "no-newline"],
)
def test_damaged_last_line_is_dropped_with_a_warning(tmp_path: Path, damaged: str) -> None:
    _run(tmp_path, range(1, 6))
    with open(tmp_path / CSV_FILENAME, "a") as file:
        file.write(damaged)

    with pytest.warns(UserWarning, match=rf"{CSV_FILENAME}: dropped damaged line 7"):
        logger = TrainingLogger(tmp_path, columns=COLUMNS, resume_step=10)
    with logger:
        logger.log({"train.loss": 0.125}, step=6)

    df = load_logs(tmp_path)
    assert df["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert df["train.loss"].tolist() == [1 / s for s in range(1, 6)] + [0.125]
    assert df["evaluation.f1"][4] == 0.05


def test_damaged_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    (tmp_path / CSV_FILENAME).write_text("step,epoch,train.loss\n1,0.1,0.5\n2,0.2\n3,0.3,0.4\n")
    with pytest.raises(ValueError, match=r"line 3 is damaged"):
        TrainingLogger(tmp_path, resume_step=3)


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    with TrainingLogger(logs_dir, columns=COLUMNS, resume_step=3, enabled=False) as logger:
        logger.log({"train.loss": 0.5}, step=4)
        logger.flush()
    assert not logs_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_log_rejects_reserved_keys_and_non_numbers(tmp_path: Path) -> None:
    with TrainingLogger(tmp_path) as logger:
        with pytest.raises(ValueError, match=r"'step' is reserved"):
            logger.log({"step": 3}, step=3)
        with pytest.raises(ValueError, match=r"logs\['train.loss'\]=.* must be a number"):
            logger.log({"train.loss": torch.ones(3)}, step=3)
    with pytest.raises(RuntimeError, match="closed"):
        logger.log({"train.loss": 1.0}, step=4)


def test_rows_are_appended_never_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = TrainingLogger(tmp_path, columns=COLUMNS)
    csv_path = tmp_path / CSV_FILENAME
    inode = csv_path.stat().st_ino
    rewrites: list[str] = []
    real_open, real_replace = builtins.open, os.replace

    def counting_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wx+") and Path(os.fsdecode(file)).parent == tmp_path:
            rewrites.append(f"open({file}, {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    def counting_replace(src, dst, *args, **kwargs):
        rewrites.append(f"replace({src}, {dst})")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(os, "replace", counting_replace)
    for step in range(1, 301):
        logger.log({"train.loss": 1 / step, "learning_rate": 1e-3}, step=step, epoch=step / 100)
        if step % 50 == 0:
            logger.log({"evaluation.loss": 2 / step}, step=step)
    assert rewrites == []
    assert csv_path.stat().st_ino == inode
    assert len(_data_lines(tmp_path)) == 300

    logger.log({"evaluation.wer": 0.2}, step=300)  # a new column: one rewrite, so the counters do see rewrites
    logger.close()
    assert len([r for r in rewrites if r.startswith("replace")]) == 1
    assert load_logs(tmp_path).set_index("step").loc[300, ["evaluation.loss", "evaluation.wer"]].tolist() == [
        2 / 300,
        0.2,
    ]


def test_writing_time_grows_linearly_with_rows(tmp_path: Path) -> None:
    def seconds_to_write(rows: int, name: str) -> float:
        with TrainingLogger(tmp_path / name, columns=["train.loss"]) as logger:
            start = time.process_time()  # CPU time: a busy neighbour disturbs it far less than wall time
            for step in range(rows):
                logger.log({"train.loss": 0.5}, step=step)
            return time.process_time() - start

    small = min(seconds_to_write(2_000, f"small{i}") for i in range(3))
    large = min(seconds_to_write(20_000, f"large{i}") for i in range(2))  # quadratic writing would give ~100x
    assert large / small < 20, f"2000 rows took {small:.3f}s, 20000 took {large:.3f}s"
    assert len(_data_lines(tmp_path / "large0")) == 20_000


def test_summarize_logs_last_and_best() -> None:
    nan = float("nan")
    df = pd.DataFrame(
        {
            "step": [10, 20, 30, 40],
            "epoch": [0.25, 0.5, 0.75, 1.0],
            "train.loss": [1.0, 0.4, 0.6, 0.5],
            "learning_rate": [1e-3, 8e-4, 6e-4, 4e-4],
            "evaluation.f1": [nan, 0.7, nan, 0.6],
            "evaluation.cer": [nan, 0.3, nan, 0.2],
            "evaluation.custom": [5.0, 1.0, 9.0, nan],
        }
    )
    summary = summarize_logs(df, objectives={"evaluation.custom": "max"})

    assert summary.index.tolist() == [
        "train.loss",
        "learning_rate",
        "evaluation.f1",
        "evaluation.cer",
        "evaluation.custom",
    ]
    row = summary.loc["train.loss"]
    assert (row["last"], row["last_step"], row["best"], row["best_step"], row["objective"]) == (0.5, 40, 0.4, 20, "min")
    row = summary.loc["evaluation.f1"]
    assert (row["last"], row["last_step"], row["best"], row["best_step"], row["objective"]) == (0.6, 40, 0.7, 20, "max")
    row = summary.loc["evaluation.cer"]
    assert (row["best"], row["best_step"], row["objective"]) == (0.2, 40, "min")
    row = summary.loc["evaluation.custom"]
    assert (row["last"], row["last_step"], row["best"], row["best_step"]) == (9.0, 30, 9.0, 30)
    assert summary.loc["learning_rate", "last"] == 4e-4 and pd.isna(summary.loc["learning_rate", "best"])
    assert summarize_logs(df, objectives={"f1": "min"}).loc["evaluation.f1", "best_step"] == 40


def test_summarize_logs_rejects_unknown_objective() -> None:
    with pytest.raises(ValueError, match=r"objectives\['f1'\]='maximise'.* must be 'min' or 'max'"):
        summarize_logs(pd.DataFrame({"step": [1], "evaluation.f1": [0.5]}), objectives={"f1": "maximise"})


def test_plot_logs_one_panel_per_metric(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    _run(tmp_path / "a", range(1, 11))
    _run(tmp_path / "b", range(1, 11), offset=0.5)
    runs = {"a": load_logs(tmp_path / "a"), "b": load_logs(tmp_path / "b")}

    fig = plot_logs(runs)
    try:
        assert [ax.get_title() for ax in fig.axes] == COLUMNS
        assert [text.get_text() for text in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    finally:
        plt.close(fig)
    fig = plot_logs(runs["a"], keys=["evaluation.f1"])
    try:
        assert len(fig.axes) == 1
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=r"\['evaluation.rouge'\] are in no run's logs"):
        plot_logs(runs, keys=["evaluation.rouge"])
