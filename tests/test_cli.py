"""The command line: exit codes and messages a user sees."""

from __future__ import annotations

import subprocess
import sys

from tamrin.cli import main


def test_dry_run_prints_the_resolved_default_recipe(capsys):
    assert main(["train", "--dry-run", "trainer.batch_size=7"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 7" in out
    assert "task: image2text" in out


def test_bad_override_exits_2_with_the_message_and_no_traceback(capsys):
    assert main(["train", "--dry-run", "trainer.batch_size=zero"]) == 2
    err = capsys.readouterr().err
    assert "`batch_size='zero'` has the wrong type" in err
    assert "Traceback" not in err


def test_unknown_section_suggests_the_closest(capsys):
    assert main(["train", "--dry-run", "trainr.batch_size=3"]) == 2
    assert "unknown section `trainr`. Did you mean `trainer`?" in capsys.readouterr().err


def test_unknown_recipe_lists_packaged_ones(capsys):
    assert main(["train", "no_such_recipe", "--dry-run"]) == 2
    assert "Packaged recipes: default" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "tamrin", "train", "--dry-run", "trainer.learning_rate=-1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "`learning_rate=-1.0` is out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_recipe_callbacks_are_validated_by_name(capsys):
    assert main(["train", "--dry-run", "callbacks=[learning_rate_monitr]"]) == 2
    assert "Unknown callback 'learning_rate_monitr' in the recipe. Did you mean `learning_rate_monitor`?" in (
        capsys.readouterr().err
    )
    assert main(["train", "--dry-run", "callbacks=[{name: curriculum, scores: length}, gradient_norm_logger]"]) == 0
