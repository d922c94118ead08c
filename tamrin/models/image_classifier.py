"""A small CNN image classifier; its preprocessor (image transform + label map) is `tamrin.preprocessors.images`.

conv-bn-relu blocks (2x2 max-pooling between them) turn an image into feature maps, global average
pooling makes the features position-free and size-free, and a linear head scores `num_labels`
classes. The `ImagePreprocessor` holds everything that turns a raw image into `pixel_values` and a
class id into its name; the training data builds it, the model saves it beside its weights
(`preprocessor_config.yaml`), so `Model.load(dir).predict(["cat.png"])` transforms images exactly
as training did.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tamrin.configs import ConfigError, check_choice, check_range
from tamrin.models.base import Model, ModelConfig
from tamrin.models.registry import register_model
from tamrin.preprocessors.images import IMAGE_CHANNELS, ImagePreprocessor

__all__ = ["ImageClassifier", "ImageClassifierConfig"]


@dataclass
class ImageClassifierConfig(ModelConfig):
    """Configuration of `ImageClassifier`. A recipe takes the data-decided fields from the dataset.

    Attributes:
        num_labels: the number of classes (from the data).
        id2label: class id -> label name (from the data); None: `post_process` returns class ids.
        image_size: the side of the square input images, in pixels (from the data).
        in_channels: 1 (grayscale) or 3 (RGB) input channels (from the data).
        channels: output channels of each conv-bn-relu block; a 2x2 max-pool sits between blocks.
        dropout: dropout before the linear head.
    """

    name: str = "image_classifier"
    num_labels: int = 2
    id2label: dict[int, str] | None = None
    image_size: int = 32
    in_channels: int = 3
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    dropout: float = 0.1

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            check_range("num_labels", self.num_labels, minimum=2),
            check_choice("in_channels", self.in_channels, IMAGE_CHANNELS),
            check_range("dropout", self.dropout, minimum=0.0, maximum=1.0),
        ]
        if not self.channels or any(c < 1 for c in self.channels):
            problems.append(f"`channels={self.channels!r}` must be a non-empty list of positive ints.")
        smallest = 2 ** max(len(self.channels) - 1, 0)
        if self.image_size < smallest:
            problems.append(
                f"`image_size={self.image_size!r}` must be >= {smallest} "
                f"(2 ** (len(channels) - 1): each pooling halves it)."
            )
        if self.id2label is not None and sorted(self.id2label) != list(range(self.num_labels)):
            problems.append(
                f"`id2label` must map exactly the ids 0..{self.num_labels - 1} (num_labels={self.num_labels}) "
                f"to label names, got ids {sorted(self.id2label)}."
            )
        return problems

    def label_names(self) -> list[str] | None:
        """The label names in class-id order, or None without `id2label`."""
        return None if self.id2label is None else [self.id2label[i] for i in range(self.num_labels)]


@register_model("image_classifier", config_class=ImageClassifierConfig)
class ImageClassifier(Model):
    """A small CNN classifier: conv-bn-relu blocks, global average pooling, dropout, linear head.

    `forward` returns `{"logits": (B, num_labels)}`; `compute_loss` is cross-entropy against the
    (B,) class ids in `batch["labels"]`; `post_process` turns logits into label names.
    """

    config: ImageClassifierConfig

    def __init__(self, config: ImageClassifierConfig) -> None:
        super().__init__(config)
        self.preprocessor = ImagePreprocessor(
            image_size=config.image_size, in_channels=config.in_channels, labels=config.label_names() or []
        )
        blocks: list[nn.Module] = []
        in_channels = config.in_channels
        for index, channels in enumerate(config.channels):
            if index:
                blocks.append(nn.MaxPool2d(2))
            blocks += [
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(in_channels, config.num_labels)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_: Any
    ) -> dict[str, torch.Tensor]:
        """Score every class.

        Args:
            pixel_values: (B, in_channels, H, W) normalised images (any H, W >= the pooling allows).
            labels: unused here (the loss is `compute_loss`); accepted so a whole batch can be passed.

        Returns:
            {"logits": (B, num_labels)}.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"ImageClassifier expects pixel_values of shape (B, {self.config.in_channels}, H, W), "
                f"got {tuple(pixel_values.shape)}."
            )
        pooled = self.features(pixel_values).mean(dim=(2, 3))  # global average pooling
        return {"logits": self.head(self.dropout(pooled))}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy of the logits against the class ids `batch["labels"]` (B,)."""
        return F.cross_entropy(outputs["logits"].float(), batch["labels"].long())

    def preprocess(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Image files (paths) or PIL images -> `{"pixel_values": (B, C, H, W)}`, transformed like training."""
        return {"pixel_values": self.preprocessor(inputs)}

    def post_process(self, outputs: dict[str, torch.Tensor] | torch.Tensor) -> list[str | int]:
        """The predicted label name of each sample (class ids when the config has no `id2label`)."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        ids = logits.detach().argmax(dim=-1).tolist()
        if self.config.id2label is None:
            return ids
        return [self.config.id2label[i] for i in ids]

    def load_preprocessor(self, directory: str | os.PathLike) -> None:
        """Restore the saved `ImagePreprocessor`, checking that it agrees with the model config.

        Raises:
            FileNotFoundError: the directory has no preprocessor_config.yaml.
            ConfigError: its image size, channels or labels differ from the model config's.
        """
        preprocessor = ImagePreprocessor.load(directory)
        config = self.config
        expected = {
            "image_size": config.image_size,
            "in_channels": config.in_channels,
            "labels": config.label_names() or preprocessor.labels,
        }
        problems = [
            f"`{key}={getattr(preprocessor, key)!r}` in the preprocessor but {value!r} in the model config"
            for key, value in expected.items()
            if getattr(preprocessor, key) != value
        ]
        if problems:
            raise ConfigError(
                f"{directory}: the saved preprocessor disagrees with the model config: " + "; ".join(problems) + "."
            )
        self.preprocessor = preprocessor
