"""Tests for `tamrin logs` (tamrin/commands/logs.py) and the `tamrin.load_logs` / `tamrin.plot_logs` exports."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

import tamrin
from tamrin.cli import main
from tamrin.trainer.logs import logger as tamrin_logging
from tamrin.trainer.logs import review as log_review
from tamrin.trainer.logs.logger import CSV_FILENAME, TrainingLogger, load_logs

COLUMNS = ["train.loss", "learning_rate", "evaluation.loss", "evaluation.f1"]


def _write_run(output_dir: Path, *, steps: int = 20, offset: float = 0.0) -> Path:
    """Train loss 1/step + offset, lr 1e-3; an evaluation every 5 steps whose f1 peaks at step 10."""
    with TrainingLogger(output_dir / "logs", columns=COLUMNS) as logger:
        for step in range(1, steps + 1):
            logger.log({"train.loss": offset + 1 / step, "learning_rate": 1e-3}, step=step, epoch=step / 10)
            if step % 5 == 0:
                f1 = 0.9 - abs(step - 10) / 100 - offset
                logger.log({"evaluation.loss": offset + 2 / step, "evaluation.f1": f1}, step=step)
    return output_dir


def _table_rows(out: str) -> dict[str, list[str]]:
    """Metric name -> the cells after it, from the printed summary table."""
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] in COLUMNS:
            rows[cells[0]] = cells[1:]
    return rows


def test_summary_has_last_best_and_step_of_best(tmp_path, capsys):
    run = _write_run(tmp_path / "run")

    assert main(["logs", str(run)]) == 0

    out = capsys.readouterr().out
    assert "20 logged steps, last step 20, epoch 2" in out
    assert "last" in out and "best step" in out
    rows = _table_rows(out)
    # goal, last, best, best step
    assert rows["train.loss"] == ["min", "0.05", "0.05", "20"]
    assert rows["evaluation.f1"] == ["max", "0.8", "0.9", "10"]
    assert rows["evaluation.loss"] == ["min", "0.1", "0.1", "20"]
    assert rows["learning_rate"] == ["-", "0.001", "-", "-"]  # no direction: no best


def test_several_runs_side_by_side(tmp_path, capsys):
    first = _write_run(tmp_path / "first")
    second = _write_run(tmp_path / "second", steps=10, offset=0.1)

    assert main(["logs", str(first), str(second)]) == 0

    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if str(first) in line and str(second) in line)
    assert header.index(str(first)) < header.index(str(second))
    rows = _table_rows(out)
    assert rows["evaluation.f1"] == ["max", "0.8", "0.9", "10", "0.8", "0.8", "10"]
    assert rows["train.loss"][4:] == ["0.2", "0.2", "10"]


def test_metric_missing_from_one_run_shows_dashes(tmp_path, capsys):
    first = _write_run(tmp_path / "first")
    with TrainingLogger(tmp_path / "other" / "logs", columns=["train.loss"]) as logger:
        logger.log({"train.loss": 0.5}, step=1)

    assert main(["logs", str(first), str(tmp_path / "other")]) == 0

    rows = _table_rows(capsys.readouterr().out)
    assert rows["evaluation.f1"][4:] == ["-", "-", "-"]
    assert rows["train.loss"][4:] == ["0.5", "0.5", "1"]


def test_accepts_a_logs_dir_or_the_csv_itself(tmp_path, capsys):
    run = _write_run(tmp_path / "run")
    for path in (run / "logs", run / "logs" / CSV_FILENAME):
        assert main(["logs", str(path)]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].startswith(f"{run}: 20 logged steps")  # named after the run, not its logs dir
        assert _table_rows(out)["evaluation.f1"] == ["max", "0.8", "0.9", "10"]


def test_csv_prints_the_rows(tmp_path, capsys):
    run = _write_run(tmp_path / "run")

    assert main(["logs", str(run), "--csv"]) == 0

    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    pd.testing.assert_frame_equal(printed, load_logs(run), check_dtype=False)


def test_csv_of_several_runs_has_a_run_column(tmp_path, capsys):
    first = _write_run(tmp_path / "first", steps=5)
    second = _write_run(tmp_path / "second", steps=3)

    assert main(["logs", str(first), str(second), "--csv"]) == 0

    printed = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(printed.columns[:3]) == ["run", "step", "epoch"]
    assert printed["run"].tolist() == [str(first)] * 5 + [str(second)] * 3
    assert printed["step"].tolist() == [1, 2, 3, 4, 5, 1, 2, 3]


def test_reads_a_run_that_is_still_writing(tmp_path, capsys):
    logger = TrainingLogger(tmp_path / "live" / "logs", columns=COLUMNS)
    try:
        logger.log({"train.loss": 0.5, "learning_rate": 1e-3}, step=1)
        logger.log({"train.loss": 0.25, "learning_rate": 1e-3}, step=2)
        with open(logger.csv_path, "ab") as csv_file:  # a row that is half written right now
            csv_file.write(b"3,0.3,0.12")

        assert main(["logs", str(tmp_path / "live")]) == 0
        assert _table_rows(capsys.readouterr().out)["train.loss"] == ["min", "0.25", "0.25", "2"]

        assert main(["logs", str(tmp_path / "live"), "--csv"]) == 0
        assert pd.read_csv(io.StringIO(capsys.readouterr().out))["step"].tolist() == [1, 2]
    finally:
        logger.close()


def test_header_only_log_says_nothing_logged_yet(tmp_path, capsys):
    TrainingLogger(tmp_path / "new" / "logs", columns=COLUMNS).close()

    assert main(["logs", str(tmp_path / "new")]) == 0

    assert "no rows logged yet" in capsys.readouterr().out


def test_missing_logs_exit_2_naming_the_paths_tried(tmp_path, capsys):
    assert main(["logs", str(tmp_path / "nowhere")]) == 2

    err = capsys.readouterr().err
    assert err.startswith("tamrin logs: error: no training logs found")
    assert str(tmp_path / "nowhere" / "logs" / CSV_FILENAME) in err


def test_a_csv_that_is_not_a_tamrin_log_exits_2(tmp_path, capsys):
    (tmp_path / CSV_FILENAME).write_text("a,b\n1,2\n")

    assert main(["logs", str(tmp_path)]) == 2

    assert "has no `step` column" in capsys.readouterr().err


def test_plot_writes_a_png_with_one_panel_per_metric(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    first = _write_run(tmp_path / "first")
    second = _write_run(tmp_path / "second", offset=0.1)
    figures = []
    real_plot_logs = log_review.plot_logs

    def recording_plot_logs(*args, **kwargs):
        figures.append(real_plot_logs(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(log_review, "plot_logs", recording_plot_logs)
    target = tmp_path / "plots" / "runs.png"

    assert main(["logs", str(first), str(second), "--plot", str(target)]) == 0

    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Wrote {target}" in capsys.readouterr().out
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == COLUMNS  # train loss, learning rate, then each evaluation metric
    assert all(len(ax.lines) == 2 for ax in axes)  # the two runs overlaid
    assert [line.get_label() for line in axes[0].lines] == [str(first), str(second)]


def test_logs_is_a_listed_sub_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "logs" in capsys.readouterr().out


def test_load_logs_and_plot_logs_are_exported_from_tamrin():
    assert tamrin.load_logs is tamrin_logging.load_logs
    assert tamrin.plot_logs is log_review.plot_logs
    assert {"load_logs", "plot_logs"} <= set(tamrin.__all__)
