"""The data a checkpoint was trained with, checked when a run resumes from it.

Resuming with other data must never silently change what the model's inputs mean: rebuilt from 400
rows instead of 320, a tokenizer kept its size (145) and gave 87 token ids another meaning, and test
accuracy fell from 0.48 to 0.34. The rule (docs/checkpoints.md, "Resuming with other data"):

- **Rows may change.** The fields that only choose which rows a split holds (`ROW_FIELDS`: sizes,
  files, the seed of generated data) may differ from the checkpoint's: a warning names them.
- **Meaning may not.** Any other field of the dataset config (the dataset, the task, the columns,
  tokenizer and label settings, a charset) must be the checkpoint's: a ConfigError names each
  differing field with both values.
- **The preprocessor is the checkpoint's.** The model's tokenizer and label map must be the files the
  checkpoint holds. A recipe resume restores them before the data is encoded (`restore_preprocessor`);
  data built by hand with another preprocessor is refused, saying how to restore it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tamrin.configs import ConfigError
from tamrin.trainer.checkpoint.files import TRAIN_DIR, latest_valid_checkpoint

__all__ = ["ROW_FIELDS", "check_data_against_checkpoint", "dataset_config_differences", "local_resume_checkpoint"]

ROW_FIELDS = frozenset({"num_samples", "eval_num_samples", "max_size", "files", "data_dir", "seed", "split_dirs"})
"""Dataset config fields that choose which rows a split holds, not what a row means."""

_DATASET_CONFIG = "dataset_config.yaml"


def dataset_config_differences(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(row fields, meaning fields) that differ between two dataset configs, each as `field: saved -> current`."""
    rows: list[str] = []
    meaning: list[str] = []
    for key in sorted(set(saved) | set(current)):
        before, after = saved.get(key), current.get(key)
        if before != after:
            (rows if key in ROW_FIELDS else meaning).append(f"{key}: {before!r} -> {after!r}")
    return rows, meaning


def check_data_against_checkpoint(train_dataset: Any, model: Any, checkpoint: Path) -> None:
    """Refuse a resume whose data means something else than the checkpoint's; warn when only rows changed.

    Raises:
        ConfigError: a dataset config field that sets meaning differs, or the model's preprocessor
            (tokenizer, label map) is not the one the checkpoint was trained with.
    """
    _check_dataset_config(train_dataset, checkpoint)
    _check_preprocessor(model, checkpoint)


def _check_dataset_config(train_dataset: Any, checkpoint: Path) -> None:
    saved_path = checkpoint / TRAIN_DIR / _DATASET_CONFIG
    to_dict = getattr(getattr(train_dataset, "config", None), "to_dict", None)
    if not saved_path.is_file() or not callable(to_dict):
        return
    saved = OmegaConf.to_container(OmegaConf.load(saved_path), resolve=False)
    if not isinstance(saved, dict):
        return  # a damaged file fails the checkpoint's verification, not here
    rows, meaning = dataset_config_differences({str(k): v for k, v in saved.items()}, to_dict())
    if meaning:
        raise ConfigError(
            f"Cannot resume from {checkpoint}: the training data differs from the checkpoint's in what it means "
            f"({'; '.join(meaning)}). The model was trained on that data; resume with the checkpoint's settings, "
            "or start a new run (another output_dir, or `init_weights_from` to start from its weights)."
        )
    if rows:
        warnings.warn(
            f"Resuming from {checkpoint} with other rows than it was trained on ({'; '.join(rows)}): the "
            "checkpoint's preprocessor (tokenizer, label map) is kept, so ids mean what they meant in training.",
            stacklevel=3,
        )


def _check_preprocessor(model: Any, checkpoint: Path) -> None:
    save = getattr(model, "save_preprocessor", None)
    if not callable(save) or getattr(model, "preprocessor", None) is None:
        return
    with tempfile.TemporaryDirectory(prefix="tamrin-preprocessor-") as scratch:
        save(scratch)
        differing = [
            path.name
            for path in sorted(Path(scratch).iterdir())
            if (checkpoint / path.name).is_file() and (checkpoint / path.name).read_bytes() != path.read_bytes()
        ]
    if differing:
        raise ConfigError(
            f"Cannot resume from {checkpoint}: the model's preprocessor ({', '.join(differing)}) is not the one it was "
            "trained with; the training data was encoded with another tokenizer or label map. Build the data with "
            f"the checkpoint's: `Dataset.load(..., preprocessor={str(checkpoint)!r})` or "
            f"`preprocessor=TextPreprocessor.load({str(checkpoint)!r})` (a recipe resume does this itself)."
        )


def local_resume_checkpoint(config: Any) -> Path | None:
    """The local checkpoint a TrainerConfig's `resume_from_checkpoint` resumes from, read before the data is built.

    None for a fresh run, a run with no checkpoint yet, or a Hub repo id (its data is checked when loaded).
    """
    request = config.resume_from_checkpoint
    if not request:
        return None
    if request is True:
        return latest_valid_checkpoint(Path(config.output_dir) / config.checkpoints_dir)
    path = Path(str(request))
    return path if path.is_dir() else None
