"""The character-level image-to-text preprocessor (CRNN, OCR datasets): text <-> ids, images -> pixels.

Shared by the model (`models/crnn.py`, which saves its charset and image size in model_config.yaml)
and the OCR dataset (`datasets/tasks/ocr.py`, which builds one from its training texts or takes a
trained model's), so that both read ids and pixels the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["CharsetPreprocessor"]


class CharsetPreprocessor:
    """The CRNN's preprocessor: text <-> character ids, and images -> normalised pixel values.

    Ids are 1-based (`charset[i]` is id `i + 1`); 0 is the CTC blank and the label padding value.
    Pixel values are grayscale in [-1, 1]: `(pixel / 255 - 0.5) / 0.5`, the same as the datasets.
    """

    def __init__(self, charset: str, image_height: int, image_width: int) -> None:
        self.charset = charset
        self.image_height = image_height
        self.image_width = image_width
        self._ids = {char: index + 1 for index, char in enumerate(charset)}
        self._chars = np.array(["", *charset], dtype=object)

    def encode(self, text: str) -> list[int]:
        """Character ids of `text`. Raises ValueError naming any character outside the charset."""
        unknown = sorted({char for char in text if char not in self._ids})
        if unknown:
            raise ValueError(f"Characters {unknown} of {text!r} are not in the charset {self.charset!r}.")
        return [self._ids[char] for char in text]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of a sequence of ids; 0 (blank / padding) is skipped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return "".join(self._chars[i] for i in ids if 0 < i <= len(self.charset))

    def decode_batch(
        self, labels: torch.Tensor, label_lengths: torch.Tensor | Sequence[int] | None = None
    ) -> list[str]:
        """Texts of a padded (B, S) label batch, e.g. the references for CER (lengths: a tensor or a list)."""
        if label_lengths is None:
            lengths = [labels.shape[1]] * labels.shape[0]
        else:
            lengths = label_lengths.tolist() if isinstance(label_lengths, torch.Tensor) else list(label_lengths)
        return [self.decode(row[:length]) for row, length in zip(labels.tolist(), lengths)]

    def __call__(self, images: Any) -> torch.Tensor:
        """Turn one PIL image or a list of them into pixel values of shape (B, 1, H, W)."""
        images = [images] if isinstance(images, Image.Image) else list(images)
        size = (self.image_width, self.image_height)
        arrays = [
            np.asarray(image.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32) for image in images
        ]
        pixels = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
        return (pixels / 255.0 - 0.5) / 0.5
