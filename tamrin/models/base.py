"""The `Model` base: an `nn.Module` with a `ModelConfig`, safetensors weights and a preprocessor.

A saved model is a directory::

    model.safetensors     the state dict (tensors that alias one another are stored once)
    model_config.yaml     the ModelConfig; its `name` picks the registered class on load
    (preprocessor files)  whatever `save_preprocessor` writes (nothing for models whose
                          preprocessor lives in the config, such as the CRNN's charset)

`Model.load` only ever builds classes found in the model registry by the config's `name`: a
config file cannot make tamrin import a module or call anything it names.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tamrin.configs import ConfigError
from tamrin.models.config import MODELS, ModelConfig

__all__ = ["HUB_NON_MODEL_FILES", "Model", "ModelConfig", "WEIGHTS_FILENAME"]

WEIGHTS_FILENAME = "model.safetensors"
_ALIASES_KEY = "tamrin_aliases"  # safetensors metadata: {alias name: stored name} for tied tensors


HUB_NON_MODEL_FILES = ("train/*", "logs/*", "checkpoints/*")
"""What `Model.load` leaves on the Hub when it fetches a repo that a whole run was pushed to."""


class Model(nn.Module):
    """Base of tamrin models: config, safetensors save/load, loss, post-processing, preprocessor.

    Subclasses are registered with `@register_model(name, config_class=...)` and implement
    `forward(**batch) -> dict`, `compute_loss(outputs, batch)` and `post_process(outputs)`.

    Attributes:
        config: the model's `ModelConfig` (saved as model_config.yaml).
        preprocessor: what turns raw inputs into tensors and back (a charset, tokenizer, label map);
            None when the model has none. Saved by `save_preprocessor`, restored by `load_preprocessor`.
    """

    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config
        self.preprocessor: Any = None

    # -- the task interface --------------------------------------------------------------------
    # `*args` too: mypy reads (*args: Any, **kwargs: Any) as "any signature", so a subclass may name the
    # batch keys it reads (`forward(self, input_ids, attention_mask=None, **_)`). The Trainer calls `model(**batch)`.
    def forward(self, *args: Any, **batch: Any) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(**batch) -> dict of tensors.")

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Return the scalar training loss of `outputs` (from `forward`) against `batch`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement compute_loss(outputs, batch). Override it in the "
            "model, return a 'loss' entry from forward, or override Trainer.compute_loss."
        )

    def post_process(self, outputs: dict[str, torch.Tensor]) -> list[Any]:
        """Turn `forward` outputs into readable predictions, one per sample."""
        raise NotImplementedError(f"{type(self).__name__} does not implement post_process(outputs).")

    def preprocess(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Turn raw inputs (texts, image file paths, ...) into a batch that `forward` takes."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement preprocess(inputs), so it cannot predict from raw inputs."
        )

    @torch.inference_mode()
    def predict(self, inputs: Sequence[Any]) -> list[Any]:
        """Readable predictions for raw inputs: `post_process(forward(preprocess(inputs)))`.

        Generative models override this to call `generate`. `tamrin predict DIR INPUT...` uses it.
        """
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.preprocess(inputs).items()}
            return self.post_process(self(**batch))
        finally:
            self.train(was_training)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Generate outputs (generative models only)."""
        raise NotImplementedError(f"{type(self).__name__} is not a generative model: it has no generate().")

    def num_parameters(self, trainable_only: bool = False) -> int:
        """The number of parameters (tied parameters counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- preprocessor hooks --------------------------------------------------------------------
    def save_preprocessor(self, directory: str | os.PathLike) -> None:
        """Write the preprocessor's files into `directory` (default: its `save(directory)`, if any)."""
        save = getattr(self.preprocessor, "save", None)
        if callable(save):
            save(directory)

    def load_preprocessor(self, directory: str | os.PathLike) -> None:
        """Restore the preprocessor from `directory` (default: nothing to restore)."""

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write model.safetensors, model_config.yaml and the preprocessor into `directory`.

        `state_dict` replaces `self.state_dict()` as the weights written (e.g. the full weights
        gathered from a sharded model, whose own state dict holds shards).

        Every file is written into a staging folder inside `directory` and moved into place with
        `os.replace`, so a reader never sees a half-written file and other files in `directory`
        (e.g. a checkpoint's `train/` folder) are left alone.

        Returns:
            The directory.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=".tmp-model-"))
        try:
            self._save_weights(staging / WEIGHTS_FILENAME, state_dict)
            self.config.save(staging)
            self.save_preprocessor(staging)
            for item in sorted(staging.iterdir()):
                target = directory / item.name
                if item.is_dir() and target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    def _save_weights(self, path: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        tensors: dict[str, torch.Tensor] = {}
        aliases: dict[str, str] = {}
        seen: dict[tuple, str] = {}
        storages: set[int] = set()
        for name, tensor in (self.state_dict() if state_dict is None else state_dict).items():
            tensor = tensor.detach()
            key = _view_key(tensor)
            if key in seen:  # a tied weight: store it once, remember the alias
                aliases[name] = seen[key]
                continue
            if key is not None:
                seen[key] = name
                # safetensors refuses tensors that share memory without being equal views: copy those
                tensor = tensor.clone() if key[0] in storages else tensor
                storages.add(key[0])
            tensors[name] = tensor.contiguous().cpu()
        metadata = {"format": "pt", _ALIASES_KEY: json.dumps(aliases)}
        save_file(tensors, str(path), metadata=metadata)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())

    def load_weights(self, path: str | os.PathLike, strict: bool = True) -> None:
        """Load a model.safetensors file (or the one in a directory) into this model.

        Raises:
            ValueError: with `strict`, the file lacks some of the model's keys or holds extra ones
                (each named), or a tensor's shape differs from the model's.
        """
        path = Path(path)
        if path.is_dir():
            path = path / WEIGHTS_FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"No weights file at {path}.")
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            aliases = json.loads((handle.metadata() or {}).get(_ALIASES_KEY, "{}"))
        for alias, stored in aliases.items():
            if stored in state:
                state[alias] = state[stored]
        expected = self.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = [
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            for k in expected
            if k in state and state[k].shape != expected[k].shape
        ]
        problems = (
            ([f"missing keys: {missing}"] if missing and strict else [])
            + ([f"unexpected keys: {unexpected}"] if unexpected and strict else [])
            + ([f"shape mismatches: {shapes}"] if shapes else [])
        )
        if problems:
            raise ValueError(f"{path} does not match {type(self).__name__}: " + "; ".join(problems) + ".")
        self.load_state_dict(state, strict=strict)

    @classmethod
    def load(cls, path: str | os.PathLike, *, revision: str | None = None, **config_overrides: Any) -> Model:
        """Rebuild a saved model: the registered class its config names, strictly loaded weights.

        Args:
            path: a directory written by `save` (or a file in it), or a Hugging Face Hub repo id.
            revision: the Hub revision (branch, tag or commit) when `path` is a repo id.
            **config_overrides: config fields to change (e.g. dropout=0.0); must keep weight shapes.

        Returns:
            The model, in eval mode.

        Raises:
            ConfigError: the config names no registered model, or one that is not a `cls`.
            ValueError: the weights do not match the model (missing/unexpected keys, shapes).
        """
        directory = Path(path)
        # Hub hook: a name that is not on disk but looks like "user/repo" is fetched from the Hub.
        if not directory.exists():
            from tamrin import hub  # huggingface_hub: ~0.1 s to import, needed only for the Hub

            if hub.is_repo_id(str(path)):
                # the model only: a pushed run's optimizer state (train/) and logs stay on the Hub
                directory = Path(hub.download(str(path), revision=revision, ignore_patterns=HUB_NON_MODEL_FILES))
            else:
                raise FileNotFoundError(f"No saved model at {str(path)!r} (neither a path nor a Hub repo id).")
        if directory.is_file():
            directory = directory.parent
        config = ModelConfig.load(directory, config_overrides or None)
        model_class = MODELS.get(config.name)
        if not issubclass(model_class, cls):
            raise ConfigError(
                f"{directory} holds a {model_class.__name__} (`name={config.name!r}`), which is not a {cls.__name__}."
            )
        model = model_class(config)
        model.load_preprocessor(directory)
        model.load_weights(directory / WEIGHTS_FILENAME, strict=True)
        return model.eval()

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        token: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload the saved model (weights, config, preprocessor) to a Hub repo in one commit.

        The arguments mean what they mean in `tamrin.hub.upload_folder`; nothing in the repo is deleted.
        """
        from tamrin import hub  # huggingface_hub: ~0.1 s to import, needed only for the Hub

        return hub.upload_saved(
            self.save,
            repo_id,
            commit_message=commit_message or f"Upload {type(self).__name__}",
            private=private,
            revision=revision,
            token=token,
            create_pr=create_pr,
        )


def _view_key(tensor: torch.Tensor) -> tuple | None:
    """What makes two state-dict entries the same tensor (tied weights); None for empty tensors."""
    if not tensor.numel():
        return None
    storage = tensor.untyped_storage().data_ptr()
    return storage, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype
