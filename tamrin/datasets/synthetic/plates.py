"""Synthetic license plates: strings such as "12A345" rendered as noisy grayscale images.

Every sample is generated on demand from a generator seeded with (seed, split, index), so a
dataset of any size costs nothing to build, and a sample is the same on every run, process and
DataLoader worker. The splits never share a plate: a plate's text belongs to exactly one split
(by a hash of the text: 80% of all plates are train-only, 10% validation-only, 10% test-only),
so validation and test measure reading plates the model has never seen.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tamrin.configs import check_range
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.collators import CTCCollator
from tamrin.datasets.synthetic.splits import SPLITS, draw_in_split, split_id

__all__ = ["PLATE_CHARSET", "SPLITS", "SyntheticPlatesConfig", "SyntheticPlatesDataset"]

PLATE_CHARSET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # I, O, Q left out: they read as 1, 0, 0


@dataclass
class SyntheticPlatesConfig(DatasetConfig):
    """Configuration of `SyntheticPlatesDataset`.

    Attributes:
        num_samples: size of the train split.
        eval_num_samples: size of the validation and the test split.
        seed: the seed of every sample (with the split and the index).
        charset: the characters; labels are 1-based ids into it (0 is the CTC blank).
        formats: plate layouts, one drawn per sample: "D" a digit, "L" a letter of the charset,
            any other character stands for itself (and must be in the charset).
        image_height: image height in pixels.
        image_width: image width in pixels.
        font_size: the font size the text is drawn at before it is fitted to the image.
        max_rotation: the largest rotation, in degrees either way.
        max_blur: the largest Gaussian blur radius, in pixels of the drawn plate.
        noise_std: the largest standard deviation of the pixel noise (pixel range [0, 1]).
    """

    name: str = "synthetic_plates"
    task: str = "image2text"
    num_samples: int = 12000
    eval_num_samples: int = 1000
    seed: int = 0
    charset: str = PLATE_CHARSET
    formats: list[str] = field(default_factory=lambda: ["DDLDDD", "DDLDDDD", "DDLLDDDD"])
    image_height: int = 32
    image_width: int = 128
    font_size: int = 28
    max_rotation: float = 3.0
    max_blur: float = 1.0
    noise_std: float = 0.08

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            check_range("num_samples", self.num_samples, minimum=1),
            check_range("eval_num_samples", self.eval_num_samples, minimum=1),
            check_range("image_height", self.image_height, minimum=8),
            check_range("image_width", self.image_width, minimum=8),
            check_range("font_size", self.font_size, minimum=6),
            check_range("max_rotation", self.max_rotation, minimum=0.0, maximum=45.0),
            check_range("max_blur", self.max_blur, minimum=0.0),
            check_range("noise_std", self.noise_std, minimum=0.0, maximum=1.0),
        ]
        if len(set(self.charset)) != len(self.charset) or not self.charset:
            problems.append(f"`charset={self.charset!r}` must be non-empty with no repeated characters.")
        if not self.formats:
            problems.append("`formats` must list at least one plate layout, e.g. ['DDLDDD'].")
        digits = [c for c in self.charset if c.isdigit()]
        letters = [c for c in self.charset if c.isalpha()]
        for layout in self.formats:
            outside = sorted({c for c in layout if c not in "DL" and c not in self.charset})
            if not layout or outside:
                problems.append(
                    f"`formats` entry {layout!r} uses characters {outside} that are not in the "
                    f"charset {self.charset!r}; use D (digit), L (letter) or charset characters."
                )
            if ("D" in layout and not digits) or ("L" in layout and not letters):
                problems.append(f"`formats` entry {layout!r} needs digits/letters, which the charset lacks.")
        return problems


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (Aileron) at `size`; cached per process."""
    return ImageFont.load_default(size=size)


@register_dataset("synthetic_plates", config_class=SyntheticPlatesConfig)
class SyntheticPlatesDataset(Dataset):
    """Noisy rendered license plates for image-to-text (CTC) training; generated lazily per index.

    Items:
        pixel_values: (1, image_height, image_width) float32 in [-1, 1] (`(p / 255 - 0.5) / 0.5`).
        labels: (L,) int64 character ids, 1-based into `charset` (0 is the CTC blank).

    The `data_collator` is a `CTCCollator`. `text(index)` gives a sample's plate string and
    `decode(labels)` turns ids back into text.
    """

    config: SyntheticPlatesConfig

    def __init__(self, config: SyntheticPlatesConfig, split: str = "train", **kwargs: Any) -> None:
        self._split_id = split_id("synthetic_plates", split)
        super().__init__(config, split=split, **kwargs)
        self._digits = "".join(c for c in config.charset if c.isdigit())
        self._letters = "".join(c for c in config.charset if c.isalpha())
        self._ids = {char: index + 1 for index, char in enumerate(config.charset)}

    @property
    def charset(self) -> str:
        """The characters of the labels (id i + 1 is charset[i])."""
        return self.config.charset

    def num_rows(self) -> int:
        return self.config.num_samples if self.split == "train" else self.config.eval_num_samples

    def default_data_collator(self) -> CTCCollator:
        return CTCCollator()

    def encode(self, text: str) -> torch.Tensor:
        """Character ids of `text` (1-based); ValueError naming any character outside the charset."""
        unknown = sorted({char for char in text if char not in self._ids})
        if unknown:
            raise ValueError(f"Characters {unknown} of {text!r} are not in the charset {self.charset!r}.")
        return torch.tensor([self._ids[char] for char in text], dtype=torch.long)

    def decode(self, labels: torch.Tensor) -> str:
        """The text of a label sequence (0, the blank and padding value, is skipped)."""
        return "".join(self.charset[i - 1] for i in labels.tolist() if i > 0)

    def text(self, index: int) -> str:
        """The plate string of sample `index` (without rendering it)."""
        return self._sample_text(self._rng(self.resolve_index(index)))

    def image(self, index: int) -> Image.Image:
        """Sample `index` as a grayscale PIL image (what `get_item` normalises into pixel_values)."""
        rng = self._rng(self.resolve_index(index))
        pixels = self._render(self._sample_text(rng), rng)
        return Image.fromarray(np.round((pixels * 0.5 + 0.5) * 255).astype(np.uint8))

    def export_images(self, directory: str | os.PathLike, count: int) -> list[Path]:
        """Write the first `count` samples as PNG files named `{index}_{text}.png` (demos, predict)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(min(count, len(self))):
            path = directory / f"{index:04d}_{self.text(index)}.png"
            self.image(index).save(path)
            paths.append(path)
        return paths

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        text = self._sample_text(rng)
        pixels = self._render(text, rng)
        return {"pixel_values": torch.from_numpy(pixels).unsqueeze(0), "labels": self.encode(text)}

    # -- generation ----------------------------------------------------------------------------
    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, self._split_id, index])

    def _sample_text(self, rng: np.random.Generator) -> str:
        def draw() -> str:
            layout = self.config.formats[rng.integers(len(self.config.formats))]
            return "".join(
                self._digits[rng.integers(len(self._digits))]
                if c == "D"
                else self._letters[rng.integers(len(self._letters))]
                if c == "L"
                else c
                for c in layout
            )

        failure = f"the formats {self.config.formats} allow too few distinct plates to split them."
        return draw_in_split(draw, lambda text: text, self.split, "plate", failure)

    def _render(self, text: str, rng: np.random.Generator) -> np.ndarray:
        """Draw `text` dark on light (or the reverse), rotate, shift, fit, blur, add noise."""
        config = self.config
        font = _font(int(config.font_size))
        left, top, right, bottom = font.getbbox(text)
        width, height = int(right - left), int(bottom - top)  # typed float by Pillow; FreeType gives whole pixels
        background = int(rng.integers(140, 256))
        ink = int(rng.integers(0, max(background - 100, 1)))
        if rng.random() < 0.2:  # some plates are light text on a dark ground
            background, ink = 255 - background, 255 - ink
        margin_x, margin_y = int(0.08 * width) + 2, int(0.25 * height) + 2
        image = Image.new("L", (width + 2 * margin_x, height + 2 * margin_y), background)
        draw = ImageDraw.Draw(image)
        draw.text((margin_x - left, margin_y - top), text, fill=ink, font=font)
        if rng.random() < 0.5:  # a plate frame
            draw.rectangle((0, 0, image.width - 1, image.height - 1), outline=ink, width=int(rng.integers(1, 3)))
        angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=background)
        # random crop box around the plate: shifts and scale changes of a few percent
        w, h = image.size
        box = (
            w * rng.uniform(-0.06, 0.04),
            h * rng.uniform(-0.12, 0.08),
            w * (1 + rng.uniform(-0.04, 0.06)),
            h * (1 + rng.uniform(-0.08, 0.12)),
        )
        image = image.transform(
            (config.image_width, config.image_height),
            Image.Transform.EXTENT,
            box,
            resample=Image.Resampling.BILINEAR,
            fillcolor=background,
        )
        blur = float(rng.uniform(0.0, config.max_blur))
        if blur > 0.2:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        noise_std = float(rng.uniform(0.0, config.noise_std))
        if noise_std > 0:
            pixels = np.clip(pixels + rng.normal(0.0, noise_std, pixels.shape).astype(np.float32), 0.0, 1.0)
        return (pixels - 0.5) / 0.5
