"""Resuming with other data (issue 15, item 1): the checkpoint's preprocessor is restored, a changed
dataset config is refused or warned about by the rule of docs/checkpoints.md.

The scenario that lost accuracy: the text_classification recipe resumed with `num_samples` 320 -> 400
rebuilt its tokenizer from the new rows, which kept its size and changed what token ids mean.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tamrin import Trainer
from tamrin.configs import ConfigError
from tamrin.datasets import build_dataset
from tamrin.preprocessors import TextPreprocessor
from tamrin.recipes import build_trainer, load_recipe, train_from_recipe

SENTENCE = "the plot was dull but the acting was bright"


def _overrides(tmp_path: Path, samples: int, *extra: str) -> list[str]:
    return [
        f"dataset.num_samples={samples}",
        "dataset.eval_num_samples=32",
        "dataset.vocab_size=300",
        "model.embedding_dim=8",
        "model.hidden_size=8",
        "trainer.batch_size=32",
        "trainer.log_steps=2",
        "trainer.save_steps=3",
        f"trainer.output_dir={tmp_path / 'run'}",
        *extra,
    ]


def _first_run(tmp_path: Path) -> Path:
    train_from_recipe(load_recipe("text_classification", _overrides(tmp_path, 320, "trainer.max_steps=3")))
    return tmp_path / "run" / "checkpoints" / "00000003"


def test_a_resume_with_more_rows_keeps_the_checkpoints_tokenizer(tmp_path: Path) -> None:
    checkpoint = _first_run(tmp_path)
    saved = TextPreprocessor.load(checkpoint)
    rebuilt = build_dataset("synthetic_sentiment", num_samples=400, vocab_size=300, max_length=64).preprocessor
    assert rebuilt.tokenizer.encode(SENTENCE) != saved.tokenizer.encode(SENTENCE)  # what a rebuilt tokenizer did

    recipe = load_recipe("text_classification", _overrides(tmp_path, 400, "trainer.max_steps=6",
                                                           "trainer.resume_from_checkpoint=true"))  # fmt: skip
    with pytest.warns(UserWarning, match=r"other rows than it was trained on \(num_samples: 320 -> 400\)"):
        trainer = build_trainer(recipe)
        trainer.train()

    data = trainer.train_dataset.preprocessor
    assert data.tokenizer == saved.tokenizer and data.labels == saved.labels
    assert trainer.model.preprocessor.tokenizer.encode(SENTENCE) == saved.tokenizer.encode(SENTENCE)
    assert len(trainer.train_dataset) == 400 and trainer.state.global_step == 6


def test_a_resume_that_changes_what_the_data_means_is_refused_naming_the_fields(tmp_path: Path) -> None:
    _first_run(tmp_path)
    recipe = load_recipe("text_classification", _overrides(tmp_path, 320, "trainer.max_steps=6",
                                                           "trainer.resume_from_checkpoint=true",
                                                           "dataset.lowercase=false"))  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"differs from the checkpoint's in what it means \(lowercase: True -> False\)"
    ):
        build_trainer(recipe).train()

    command = [sys.executable, "-m", "tamrin", "train", "text_classification",
               *_overrides(tmp_path, 320, "trainer.max_steps=6", "trainer.resume_from_checkpoint=true",
                           "dataset.min_frequency=2")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "min_frequency: 1 -> 2" in result.stderr and "Traceback" not in result.stderr


def test_data_built_by_hand_with_a_new_tokenizer_is_refused_on_resume(tmp_path: Path) -> None:
    checkpoint = _first_run(tmp_path)
    recipe = load_recipe("text_classification", _overrides(tmp_path, 400, "trainer.max_steps=6",
                                                           "trainer.resume_from_checkpoint=true"))  # fmt: skip
    trainer = build_trainer(recipe)  # restores the checkpoint's preprocessor ...
    fresh = build_dataset("synthetic_sentiment", num_samples=400, vocab_size=300, max_length=64)  # ... this does not
    model = trainer.model
    model.preprocessor = fresh.preprocessor
    by_hand = Trainer(model=model, config=trainer.config, train_dataset=fresh)
    with pytest.raises(ConfigError, match=r"preprocessor \(.*tokenizer.json.*\) is not the one it was trained with"):
        by_hand.train()
    assert TextPreprocessor.load(checkpoint).tokenizer == trainer.train_dataset.preprocessor.tokenizer
