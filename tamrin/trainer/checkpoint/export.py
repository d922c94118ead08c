"""Turn a sharded checkpoint (strategy="fsdp") into one model folder that `Model.load` reads.

A sharded run's step checkpoints keep the weights in DCP shards (`train/sharded/`), one file per
process. `export_checkpoint` reads them in one process (DCP reshards to a single, unsharded model)
and writes the folder `trainer.save` writes for a model: model.safetensors and model_config.yaml
(plus the preprocessor files) for a tamrin Model, model.safetensors and config.json otherwise.
This is what `tamrin export CHECKPOINT OUT` runs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from tamrin.models import MODELS, ModelConfig
from tamrin.trainer.checkpoint import files
from tamrin.trainer.modeling import WEIGHTS_NAME
from tamrin.trainer.sharding import SHARDED_DIR, load_sharded

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path, output: str | Path) -> Path:
    """Write the full model of a sharded checkpoint into `output` (in this one process).

    Raises:
        FileNotFoundError: `checkpoint` is not a checkpoint, or holds no sharded state.
        ValueError: the checkpoint is damaged (a file missing or altered since its manifest).
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"No checkpoint directory at {checkpoint}.")
    problem = files.verify_checkpoint(checkpoint)
    if problem:
        raise ValueError(f"Cannot export {checkpoint}: {problem}.")
    shards = checkpoint / files.TRAIN_DIR / SHARDED_DIR
    if not (shards / ".metadata").is_file():
        raise FileNotFoundError(
            f"{checkpoint} holds no sharded state ({shards} is missing): it was written without strategy='fsdp'"
            + (
                f", and its {WEIGHTS_NAME} loads as it is with Model.load."
                if (checkpoint / WEIGHTS_NAME).is_file()
                else "."
            )
        )
    if (checkpoint / ModelConfig.config_filename).is_file():  # a tamrin Model: rebuilt, loaded, saved
        config = ModelConfig.load(checkpoint)
        model = MODELS.get(config.name)(config)
        model.load_preprocessor(checkpoint)
        load_sharded(model, None, shards, model_only=True)
        return model.save(output)
    return _export_state_only(checkpoint, shards, output)


def _export_state_only(checkpoint: Path, shards: Path, output: Path) -> Path:
    """Any other model: its weights from the shards as one safetensors file, beside its config.json."""
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tamrin-export-") as tmp:
        dcp_to_torch_save(shards, Path(tmp) / "state.pt")
        state = torch.load(Path(tmp) / "state.pt", map_location="cpu", weights_only=True)["model"]
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(output / WEIGHTS_NAME),
              metadata={"format": "pt"})  # fmt: skip
    if (checkpoint / "config.json").is_file():
        shutil.copy2(checkpoint / "config.json", output / "config.json")
    return output
