"""The model contract: what the Trainer accepts as a model, how it calls it, and how it saves it.

A model is a tamrin `Model`, a Hugging Face `PreTrainedModel`, or any `torch.nn.Module`. A batch
is a dict of tensors (a tensor, or an `(inputs, labels)` tuple, is accepted too); `forward` gets
only the keys its signature accepts. Weights are saved as safetensors in every case.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from tamrin import hub
from tamrin.configs import ConfigError
from tamrin.models import Model
from tamrin.models.base import HUB_NON_MODEL_FILES

__all__ = [
    "WEIGHTS_NAME",
    "forward_keys",
    "call_model",
    "named_forward_arguments",
    "loss_from_outputs",
    "save_model_weights",
    "save_model_state",
    "save_model_description",
    "load_model_weights",
    "load_matching_weights",
    "is_tamrin_model",
    "prepare_model",
    "batch_size_of",
    "step_loss",
    "generation_inputs",
    "metrics_context",
]

WEIGHTS_NAME = "model.safetensors"


def is_tamrin_model(model: torch.nn.Module) -> bool:
    """Whether `model` is a tamrin `Model` (which saves its own config and preprocessor)."""
    return isinstance(model, Model)


def prepare_model(model: torch.nn.Module, *, init_weights_from: str | None, compile: bool) -> torch.nn.Module:
    """Check `model`, load `init_weights_from` (a local model directory or a Hub repo id), compile if asked.

    Raises:
        TypeError: `model` is not a torch.nn.Module.
        FileNotFoundError: `init_weights_from` is neither an existing directory nor a Hub repo id.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    if init_weights_from:
        directory = Path(init_weights_from)
        if not directory.exists():
            if not hub.is_repo_id(init_weights_from):
                raise FileNotFoundError(f"`init_weights_from={init_weights_from!r}`: no such directory or Hub repo id.")
            directory = _download_weights(init_weights_from)
        load_matching_weights(model, directory)
    return cast(torch.nn.Module, torch.compile(model)) if compile else model


def _download_weights(repo_id: str) -> Path:
    """`init_weights_from` that is no local folder but looks like a repo id: fetch it, saying so.

    A typo'd local path (`ouput/model`) looks like a repo id too, so the user is told that the Hub is
    being asked, and a failure names the missing local folder as well as the Hub's answer.
    """
    local = Path(repo_id).absolute()
    warnings.warn(
        f"`init_weights_from={repo_id!r}`: no local folder {local}; "
        "fetching it from the Hugging Face Hub as a repo id.",
        stacklevel=3,
    )
    try:
        return hub.download(repo_id, ignore_patterns=HUB_NON_MODEL_FILES)  # weights only
    except hub.HubError as err:
        raise hub.HubError(
            f"`init_weights_from={repo_id!r}`: the local folder {local} does not exist, and fetching it from the "
            f"Hub as a repo id failed: {err}"
        ) from None


def adopt_data_preprocessor(model: torch.nn.Module, preprocessor: Any) -> None:
    """Give a tamrin Model the preprocessor its data was made with, so that its saves carry it.

    The data's preprocessor (a trained tokenizer and label map, an image transform) is what the
    model must read with at predict time; a model built without data has none, or a default of the
    same kind, which the data's replaces. A preprocessor of another kind (the CRNN's charset beside
    data without one) is left alone.
    """
    if preprocessor is None or not is_tamrin_model(model) or model.preprocessor is preprocessor:
        return
    if model.preprocessor is None or type(model.preprocessor) is type(preprocessor):
        model.preprocessor = preprocessor


def forward_keys(model: torch.nn.Module) -> frozenset[str] | None:
    """The keyword arguments `model.forward` accepts, or None when it takes `**kwargs`."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def named_forward_arguments(model: torch.nn.Module) -> set[str]:
    """The arguments `model.forward` names (leaving out *args and **kwargs), as HF reads a signature."""
    parameters = inspect.signature(model.forward).parameters.values()
    return {
        p.name for p in parameters if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


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
        return cast(Any, model).compute_loss(outputs, batch)
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    raise ValueError(
        f"No loss for {type(model).__name__}: its outputs have no `loss` entry and it defines no "
        "`compute_loss(outputs, batch)`. Provide one of: a `compute_loss` method on the model, a `loss` in "
        "the model's outputs (e.g. pass `labels` to a Hugging Face model), or a Trainer subclass that "
        "overrides `Trainer.compute_loss(outputs, batch)`."
    )


def step_loss(returned: Any, device: torch.device) -> torch.Tensor:
    """The loss a `training_step` (or an override of it) returned, as a detached 0-d tensor.

    Accepts what HF and Lightning users return: a tensor, a dict (or model output) with a `loss`
    entry, or a plain number.

    Raises:
        TypeError: anything else; the message states the contract.
    """
    if isinstance(returned, torch.Tensor):
        return returned.detach() if returned.requires_grad else returned
    loss = returned.get("loss") if isinstance(returned, Mapping) else getattr(returned, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss.detach()
    if isinstance(returned, (int, float)) and not isinstance(returned, bool):
        return torch.tensor(float(returned), device=device)
    raise TypeError(
        f"training_step returned {type(returned).__name__}; it must return the step's loss: a tensor, a float, "
        "or a dict with a 'loss' tensor (after calling self.backward(loss))."
    )


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (weights a batch's mean loss).

    Raises:
        ConfigError: the batch holds no tensor with a batch dimension.
    """
    if isinstance(batch, Mapping):
        tensors = [v for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    elif isinstance(batch, (tuple, list)):
        tensors = [v for v in batch if isinstance(v, torch.Tensor) and v.dim() > 0]
    else:
        tensors = [batch]
    if not tensors:
        raise ConfigError("Cannot tell the batch size: the batch holds no tensor with a batch dimension.")
    return int(tensors[0].shape[0])


def generation_inputs(batch: Any, accepted: frozenset[str] | None) -> dict[str, Any]:
    """The keyword arguments of `model.generate` for a dict batch: the accepted keys, without the labels.

    Raises:
        TypeError: the batch is not a dict (evaluate_with_generate needs named inputs).
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"evaluate_with_generate needs dict batches, got a {type(batch).__name__}.")
    return {k: v for k, v in batch.items() if (accepted is None or k in accepted) and k != "labels"}


def metrics_context(model: torch.nn.Module) -> dict[str, Any]:
    """What a metrics handler may take from the model: its post-processing and label names.

    Handlers get these values, never the model or the trainer, so they stay independent of both.
    """
    context: dict[str, Any] = {}
    for name in ("post_process", "decode_labels"):
        if callable(getattr(model, name, None)):
            context[name] = getattr(model, name)
    model_config = getattr(model, "config", None)
    for name in ("id2label", "num_labels"):
        if getattr(model_config, name, None) is not None:
            context[name] = getattr(model_config, name)
    if getattr(model_config, "problem_type", None) == "multi_label_classification":  # Hugging Face models
        context["multilabel"] = True
    return context


def _defines_compute_loss(model: torch.nn.Module) -> bool:
    return _class_defines_compute_loss(type(model))  # type: ignore[arg-type]  # classes are hashable


@functools.cache
def _class_defines_compute_loss(model_class: type) -> bool:
    """Whether the class has a `compute_loss` of its own (the tamrin Model base's stub does not count).

    Cached per class: it is asked at every training step.
    """
    method = getattr(model_class, "compute_loss", None)
    if not callable(method):
        return False
    return method is not Model.compute_loss


def save_model_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Save a model into `directory`: model.safetensors, plus its config for tamrin/HF models."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if is_tamrin_model(model):
        cast(Any, model).save(directory)
        return
    save_model(model, str(directory / WEIGHTS_NAME))  # handles tied/shared tensors
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_file"):
        config.to_json_file(str(directory / "config.json"))


def save_model_description(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Save what rebuilds `model` without its weights: model_config.yaml and the preprocessor files of a
    tamrin Model, a transformers model's config.json (a sharded checkpoint's weights are in its shards)."""
    directory = Path(directory)
    if is_tamrin_model(model):
        cast(Any, model).config.save(directory)
        cast(Any, model).save_preprocessor(directory)
        return
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_file"):
        config.to_json_file(str(directory / "config.json"))


def save_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], directory: str | os.PathLike) -> None:
    """Save `model` into `directory` as `save_model_weights` does, with `state` as its weights.

    For the full weights gathered from a sharded model (where each tied name holds its own gathered
    copy): a tamrin Model stores the tied names as aliases of one tensor, as its own save does;
    other models get one tensor per name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if is_tamrin_model(model):
        state = dict(state)
        first_name: dict[int, str] = {}
        for name, parameter in model.named_parameters(remove_duplicate=False):
            first = first_name.setdefault(id(parameter), name)
            if name != first and first in state:  # a tied name: the same tensor object, saved as an alias
                state[name] = state[first]
        cast(Any, model).save(directory, state_dict=state)
        return
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(directory / WEIGHTS_NAME),
              metadata={"format": "pt"})  # fmt: skip
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_file"):
        config.to_json_file(str(directory / "config.json"))


def load_matching_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Initialise `model` from the tensors of `directory` whose name and shape match (Hezar's
    `init_weights_from`, HF's `ignore_mismatched_sizes`): a pretrained body under a new head.

    What is left at its fresh initialisation is named once, in a warning.

    Raises:
        FileNotFoundError: no weights file. RuntimeError: no tensor fits (a wholly different model).
    """
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    saved = load_file(str(path))
    own = model.state_dict()
    fits = {name: tensor for name, tensor in saved.items() if name in own and own[name].shape == tensor.shape}
    if not fits:
        raise RuntimeError(
            f"No tensor of {path} fits {type(model).__name__} (by name and shape): it holds another model "
            f"(its first names: {sorted(saved)[:3]}; this model's: {sorted(own)[:3]})."
        )
    model.load_state_dict(fits, strict=False)
    reshaped = sorted(name for name in saved if name in own and name not in fits)
    fresh = sorted(name for name in own if name not in fits)
    if fresh:
        shapes = ", ".join(f"{n} {tuple(saved[n].shape)} -> {tuple(own[n].shape)}" for n in reshaped)
        warnings.warn(
            f"init_weights_from={str(directory)!r}: loaded {len(fits)} of {len(own)} tensors; "
            f"{len(fresh)} keep their fresh initialisation: {fresh}"
            + (f" (shape differs: {shapes})" if shapes else "")
            + f"; {len(saved) - len(fits) - len(reshaped)} saved tensors have no place in this model.",
            stacklevel=3,
        )


def load_model_weights(model: torch.nn.Module, directory: str | os.PathLike) -> None:
    """Load model.safetensors from `directory` into `model`, strictly (every key and shape must match).

    The shapes are compared before loading, so a checkpoint of another architecture or vocabulary
    is a ConfigError naming each differing parameter with the expected and found shapes (torch's
    own message is a wall of "size mismatch" lines ending in a traceback).

    Raises:
        FileNotFoundError: no weights file; ConfigError: missing, unexpected or reshaped keys, named.
    """
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No {WEIGHTS_NAME} in {directory}.")
    problems = _weight_mismatches(model, path)
    if problems:
        raise ConfigError(
            f"The weights in {path} do not fit {type(model).__name__} (a checkpoint of another architecture "
            f"or vocabulary?): {'; '.join(problems)}."
        )
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"The weights in {path} do not fit {type(model).__name__}: "
            f"missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)}."
        )


def _weight_mismatches(model: torch.nn.Module, path: Path, limit: int = 8) -> list[str]:
    """The parameters whose shape differs between `model` and the file, read from the file's header only.

    Missing and unexpected keys are left to safetensors' `load_model`, which knows tied weights.
    """
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    with safe_open(str(path), framework="pt") as handle:
        found = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    reshaped = [
        f"`{name}` expected shape {list(shape)}, found {list(found[name])}"
        for name, shape in expected.items()
        if name in found and tuple(found[name]) != shape
    ]
    problems = reshaped[:limit] + ([f"and {len(reshaped) - limit} more reshaped"] if len(reshaped) > limit else [])
    return problems
