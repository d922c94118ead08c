"""The command line: exit codes and messages a user sees."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

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


TINY_PLATES = [
    "dataset.num_samples=64",
    "dataset.eval_num_samples=16",
    "trainer.num_epochs=1",
    "trainer.batch_size=16",
    "trainer.log_steps=2",
    "trainer.progress=none",
    "model.rnn_hidden_size=16",
]


def test_train_then_evaluate_a_run_its_model_its_checkpoint_or_its_recipe(tmp_path, capsys):
    run = tmp_path / "run"
    recipe = [*TINY_PLATES, f"trainer.output_dir={run}"]
    assert main(["train", *recipe]) == 0
    trained = capsys.readouterr().out
    assert "Training finished." in trained and f"model:       {run / 'model'}" in trained
    final_cer = pd.read_csv(run / "logs" / "training_logs.csv")["evaluation.cer"].dropna().iloc[-1]

    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    for target in [str(run), str(run / "model"), str(checkpoint)]:
        assert main(["evaluate", target]) == 0
        printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
        assert float(printed["cer"]) == pytest.approx(final_cer, rel=1e-5), target
    (tmp_path / "recipes").mkdir()
    (run / "recipe.yaml").rename(tmp_path / "recipes" / "plates.yaml")
    assert main(["evaluate", str(tmp_path / "recipes" / "plates.yaml")]) == 0
    assert main(["evaluate", str(run)]) == 2
    assert "No recipe.yaml" in capsys.readouterr().err


def test_the_same_recipe_builds_the_same_initial_model_in_a_fresh_process(tmp_path):
    script = (
        "import hashlib, sys, torch\n"
        "from tamrin.recipes import build_trainer, load_recipe\n"
        "trainer = build_trainer(load_recipe('default', sys.argv[1:]))\n"
        "digest = hashlib.sha256()\n"
        "for value in trainer.unwrapped_model.state_dict().values():\n"
        "    digest.update(value.numpy().tobytes())\n"
        "print(digest.hexdigest())\n"
    )
    args = [sys.executable, "-c", script, *TINY_PLATES, f"trainer.output_dir={tmp_path}"]
    first, second = (subprocess.run(args, capture_output=True, text=True, check=True).stdout for _ in range(2))
    assert first == second and len(first.strip()) == 64


def test_a_refused_fresh_run_leaves_the_earlier_runs_recipe_alone(tmp_path, capsys):
    """Issue 15: recipe.yaml was written before the "holds an earlier run" check, so `tamrin evaluate`
    then rebuilt the wrong data. Nothing is written before every check has passed."""
    common = ["text_classification", f"trainer.output_dir={tmp_path}", "trainer.progress=none", "trainer.num_epochs=1"]
    assert main(["train", *common, "dataset.num_samples=100"]) == 0
    recipe = (tmp_path / "recipe.yaml").read_text()
    assert main(["train", *common, "dataset.num_samples=120"]) == 2
    assert "holds checkpoints of an earlier run" in capsys.readouterr().err
    assert (tmp_path / "recipe.yaml").read_text() == recipe


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.seed=99999999999999999999999", "`seed=99999999999999999999999` is out of range"),
        ("trainer.learning_rate=inf", "`learning_rate=inf` must be finite"),
        ("trainer.num_dataloader_workers=100000", "`num_dataloader_workers=100000` is out of range"),
        ("trainer=5", "the `trainer` section must be a mapping of its fields"),
    ],
)
def test_bad_values_that_used_to_pass_or_crash_exit_2_with_one_message(override, message, capsys):
    """Issue 15: each of these ended in a traceback, or was accepted and failed later."""
    assert main(["train", "--dry-run", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fp8_or_fp16_on_cpu_exits_2(tmp_path, capsys):
    overrides = [f"trainer.output_dir={tmp_path}", "trainer.use_cpu=true", "trainer.mixed_precision=fp8"]
    assert main(["train", "text_classification", *overrides]) == 2
    assert "`mixed_precision='fp8'` is not available on CPU" in capsys.readouterr().err


def test_verify_resume_with_zero_steps_is_refused_not_silently_eight(capsys):
    assert main(["verify-resume", "--steps", "0"]) == 2
    assert "`steps=0` must be >= 2" in capsys.readouterr().err
