"""The model contract: what the Trainer accepts as a model, how it calls it, and how it saves it.

A model is a tamrin `Model`, a Hugging Face `PreTrainedModel`, or any `torch.nn.Module`. A batch
is a dict of tensors (a tensor, or an `(inputs, labels)` tuple, is accepted too); `forward` gets
only the keys its signature accepts. Weights are saved as safetensors in every case.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

__all__ = [
    "WEIGHTS_NAME",
    "forward_keys",
    "call_model",
    "loss_from_outputs",
    "save_model_weights",
    "load_model_weights",
    "is_tamrin_model",
]

WEIGHTS_NAME = "model.safetensors"


def is_tamrin_model(model: torch.nn.Module) -> bool:
    """Whether `model` is a tamrin `Model` (which saves its own config and preprocessor)."""
    from tamrin.models import Model

    return isinstance(model, Model)


def forward_keys(model: torch.nn.Module) -> frozenset[str] | None:
    """The keyword arguments `model.forward` accepts, or None when it takes `**kwargs`."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def call_model(model: torch.nn.Module, batch: Any, accepted: frozenset[str] | None) -> Any:
    """Call `model` on a batch: a dict by keyword (only accepted keys), a tensor or tuple positionally.

    An `(inputs, labels)` tuple passes `inputs` only; the labels stay in the batch for the loss.
    """
    if isinstance(batch, Mapping):
        kwargs = dict(batch) if accepted is None else {k: v for k, v in batch.items() if k in accepted}
        if not kwargs:
            raise ValueError(
                f"None of the batch keys {sorted(batch)} is an argument of {type(model).__name__}.forward "
                f"(it accepts {sorted(accepted or ())}). Rename the keys in your collator or dataset."
            )
        return model(**kwargs)
    if isinstance(batch, (tuple, list)):
        return model(batch[0]) if len(batch) == 2 else model(*batch)
    return model(batch)


def loss_from_outputs(model: torch.nn.Module, outputs: Any, batch: Any) -> torch.Tensor:
    """The loss: the model's own `compute_loss(outputs, batch)`, else a `loss` entry of its outputs.

    Raises:
        ValueError: neither exists; the message says how to provide a loss.
    """
    if _defines_compute_loss(model):
        return model.compute_loss(outputs, batch)
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    raise ValueError(
        f"No loss for {type(model).__name__}: its outputs have no `loss` entry and it defines no "
        "`compute_loss(outputs, batch)`. Provide one of: a `compute_loss` method on the model, a `loss` in "
        "the model's outputs (e.g. pass `labels` to a Hugging Face model), or a Trainer subclass that "
        "overrides `Trainer.compute_loss(outputs, batch)`."
    )


def _defines_compute_loss(model: torch.nn.Module) -> bool:
    """Whether the model has a `compute_loss` of its own (the tamrin Model base's stub does not count)."""
    method = getattr(type(model), "compute_loss", None)
    if not callable(method):
        return False
    from tamrin.models import Model

    return method is not Model.compute_loss


def save_model_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Save a model into `directory`: model.safetensors, plus its config for tamrin/HF models."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if is_tamrin_model(model):
        model.save(directory)
        return
    save_model(model, str(directory / WEIGHTS_NAME))  # handles tied/shared tensors
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_file"):
        config.to_json_file(str(directory / "config.json"))


def load_model_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Load model.safetensors from `directory` into `model`, strictly (every key must match).

    Raises:
        FileNotFoundError: no weights file; RuntimeError: missing or unexpected keys, named.
    """
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"The weights in {path} do not fit {type(model).__name__}: "
            f"missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}."
        )
