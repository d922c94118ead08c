"""Images: opening them, and `ImagePreprocessor` (image transform + label map) of the image-classification task.

The `ImagePreprocessor` holds everything that turns a raw image into `pixel_values` and a class id
into its name; the training data builds it, the model saves it beside its weights
(`preprocessor_config.yaml`), so `Model.load(dir).predict(["cat.png"])` transforms images exactly
as training did.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from tamrin.configs import Config, ConfigError, check_choice, check_range

__all__ = ["IMAGE_CHANNELS", "ImagePreprocessor", "check_image_settings", "open_image"]

IMAGE_CHANNELS = {1: "L", 3: "RGB"}
"""Supported `in_channels` and the PIL mode images are converted to."""


def check_image_settings(image_size: int, in_channels: int, mean: list[float], std: list[float]) -> list[str | None]:
    """Problems with image transform settings (shared by the preprocessor and image dataset configs)."""
    problems = [
        check_range("image_size", image_size, minimum=1),
        check_choice("in_channels", in_channels, IMAGE_CHANNELS),
    ]
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, in_channels):
            problems.append(f"`{name}={values!r}` must hold 1 value or one per channel ({in_channels}).")
    if any(value <= 0 for value in std):
        problems.append(f"`std={std!r}` must be > 0 for every channel.")
    return problems


@dataclass
class ImagePreprocessor(Config):
    """Image -> pixel values, and class id <-> label name; saved as `preprocessor_config.yaml`.

    Pixel values are `(pixel / 255 - mean) / std` per channel, after converting to `in_channels`
    (grayscale or RGB) and resizing (bilinear, aspect ratio not kept) to `image_size` squared.

    Attributes:
        image_size: the side of the square images the model sees, in pixels.
        in_channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel mean of the normalisation (one value is used for every channel).
        std: per-channel standard deviation of the normalisation (likewise).
        labels: the label names; class id `i` is `labels[i]` (sorted by the train split).
    """

    config_filename: ClassVar[str] = "preprocessor_config.yaml"

    image_size: int = 32
    in_channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    labels: list[str] = field(default_factory=list)

    def validate(self) -> list[str | None]:
        problems = check_image_settings(self.image_size, self.in_channels, self.mean, self.std)
        repeated = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if repeated:
            problems.append(f"`labels` repeats {repeated}; each label name must appear once.")
        return problems

    @cached_property
    def label2id(self) -> dict[str, int]:
        """Label name -> class id."""
        return {label: index for index, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> label name (the model config's `id2label`)."""
        return dict(enumerate(self.labels))

    def transform(self, image: Any) -> torch.Tensor:
        """One PIL image -> `(in_channels, image_size, image_size)` float32 pixel values."""
        size = (self.image_size, self.image_size)
        image = image.convert(IMAGE_CHANNELS[self.in_channels])
        if image.size != size:
            image = image.resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32).reshape(self.image_size, self.image_size, -1) / 255.0
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(((pixels - mean) / std).transpose(2, 0, 1).copy())

    def __call__(self, images: Any) -> torch.Tensor:
        """A PIL image or a list of them (or of image paths) -> `(B, C, H, W)` pixel values."""
        images = [images] if isinstance(images, (Image.Image, str, os.PathLike)) else list(images)
        return torch.stack([self.transform(open_image(image)) for image in images])


def open_image(source: Any) -> Any:
    """A PIL image from a path (or the image itself); an unreadable file is a ConfigError naming it."""
    if isinstance(source, Image.Image):
        return source
    try:
        with warnings.catch_warnings():
            # PIL only warns up to twice its pixel limit and decodes anyway: refuse from the limit on
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.load()
                return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ConfigError(
            f"Refusing image {str(source)!r}: {err} Its header declares more pixels than PIL's limit "
            f"(PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}); raise that limit only for a file you trust."
        ) from None
    except (OSError, UnidentifiedImageError) as err:
        raise ConfigError(f"Cannot read image {str(source)!r}: {err}") from err
