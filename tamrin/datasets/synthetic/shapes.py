"""Synthetic shapes: Pillow-drawn circles, squares, stars, ... on noisy backgrounds; label = shape.

Every sample is drawn on demand from a generator seeded with (seed, split, index), so a dataset of
any size costs nothing to build and a sample is the same on every run, process and worker. The
splits never share a drawing: a sample's geometry (shape, size, position, rotation, colours) is
hashed into one of ten buckets, eight for train, one for validation, one for test, and a split
redraws until it gets one of its own. `write_folder` saves samples as PNG files with a
labels.csv (or in class sub-folders), the layouts `ImageFolderDataset` reads.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from tamrin.configs import ConfigError, check_choice, check_range
from tamrin.datasets.base import register_dataset
from tamrin.datasets.synthetic.splits import MAX_TRIES, SPLITS, draw_in_split, split_id
from tamrin.datasets.tasks.image_classification import ImageClassificationDataset, ImageDatasetConfig

__all__ = ["SHAPES", "SPLITS", "SyntheticShapesConfig", "SyntheticShapesDataset"]

_LABELS_SUFFIXES = (".csv", ".jsonl", ".parquet")  # what `write_folder` writes
_SUPERSAMPLE = 4  # drawn at 4x and downsampled: smooth edges, sub-pixel positions


def _regular_polygon(sides: int, phase: float = 0.0) -> list[tuple[float, float]]:
    angles = [phase + 2 * math.pi * k / sides for k in range(sides)]
    return [(math.cos(angle), math.sin(angle)) for angle in angles]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    outer = _regular_polygon(2 * points, -math.pi / 2)
    return [(x * (1 if k % 2 == 0 else inner), y * (1 if k % 2 == 0 else inner)) for k, (x, y) in enumerate(outer)]


_CROSS = [(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3), (0.3, 1), (-0.3, 1),
          (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)]  # fmt: skip
_ARROW = [(-1, -0.25), (0.2, -0.25), (0.2, -0.7), (1, 0), (0.2, 0.7), (0.2, 0.25), (-1, 0.25)]

SHAPES: dict[str, list[tuple[float, float]] | None] = {
    "circle": None,  # drawn as an ellipse: rotation does not apply
    "ring": None,
    "square": _regular_polygon(4, math.pi / 4),
    "triangle": _regular_polygon(3, -math.pi / 2),
    "hexagon": _regular_polygon(6),
    "star": _star(),
    "cross": _CROSS,
    "arrow": _ARROW,
}
"""Shape name -> outline in unit coordinates (None: a round shape)."""


@dataclass
class SyntheticShapesConfig(ImageDatasetConfig):
    """Configuration of `SyntheticShapesDataset` (and the image settings of `ImageDatasetConfig`).

    Attributes:
        num_samples: size of the train split.
        eval_num_samples: size of the validation and the test split.
        seed: the seed of every sample (with the split and the index).
        shapes: the classes drawn, any of `SHAPES`; the label map is their sorted names.
        min_scale: the smallest shape radius, as a fraction of the image side.
        max_scale: the largest shape radius, likewise (at most 0.5: the shape stays inside).
        max_rotation: the largest rotation, in degrees either way.
        noise_std: the largest standard deviation of the background pixel noise (pixels in [0, 1]).
        min_contrast: the smallest brightness difference of shape and background (0-255).
    """

    name: str = "synthetic_shapes"
    num_samples: int = 4000
    eval_num_samples: int = 500
    seed: int = 0
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    min_scale: float = 0.2
    max_scale: float = 0.45
    max_rotation: float = 180.0
    noise_std: float = 0.1
    min_contrast: int = 50

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            check_range("num_samples", self.num_samples, minimum=1),
            check_range("eval_num_samples", self.eval_num_samples, minimum=1),
            check_range("min_scale", self.min_scale, minimum=0.05, maximum=0.5),
            check_range("max_scale", self.max_scale, minimum=self.min_scale, maximum=0.5),
            check_range("max_rotation", self.max_rotation, minimum=0.0, maximum=180.0),
            check_range("noise_std", self.noise_std, minimum=0.0, maximum=1.0),
            check_range("min_contrast", self.min_contrast, minimum=0, maximum=200),
            check_range("image_size", self.image_size, minimum=8),
        ]
        problems += [check_choice("shapes", shape, SHAPES) for shape in self.shapes]
        if len(set(self.shapes)) < 2 or len(set(self.shapes)) != len(self.shapes):
            problems.append(f"`shapes={self.shapes!r}` must name at least 2 different shapes, each once.")
        return problems


@register_dataset("synthetic_shapes", config_class=SyntheticShapesConfig)
class SyntheticShapesDataset(ImageClassificationDataset):
    """Noisy drawn shapes for image classification; generated lazily per index.

    Items: `pixel_values` (in_channels, image_size, image_size) float32, normalised by the
    preprocessor exactly as `model.predict` normalises image files; `labels` () int64, the class id
    of the shape in the sorted label map. `sample(index)` gives the PIL image and its label name.
    """

    config: SyntheticShapesConfig

    def __init__(self, config: SyntheticShapesConfig, split: str = "train", **kwargs: Any) -> None:
        self._split_id = split_id("synthetic_shapes", split)
        super().__init__(config, split=split, **kwargs)
        # The label map follows from the config, so any split can build it; a given one must agree.
        self.setup_preprocessor(list(config.shapes))
        if sorted(self.labels) != sorted(config.shapes):
            raise ConfigError(f"The given preprocessor's labels {self.labels} differ from `shapes={config.shapes!r}`.")

    def num_rows(self) -> int:
        return self.config.num_samples if self.split == "train" else self.config.eval_num_samples

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self._draw(index)
        return self.make_item(image, self.preprocessor.label2id[label])

    def sample(self, index: int) -> tuple[Image.Image, str]:
        """The PIL image and label name of sample `index`."""
        return self._draw(self.resolve_index(index))

    def geometry(self, index: int) -> dict[str, Any]:
        """What sample `index` draws (shape, radius, center, angle, colours), without rendering it."""
        return self._geometry(self._rng(self.resolve_index(index)))

    def write_folder(
        self, directory: str | Path, num_samples: int | None = None, labels_file: str | None = "labels.csv"
    ) -> Path:
        """Save the first samples as PNG files that `ImageFolderDataset` reads back.

        Args:
            directory: the folder to write (created); e.g. `data/validation`.
            num_samples: how many (default: the whole split).
            labels_file: write the images flat with this labels file (.csv, .jsonl or .parquet,
                columns `file` and `label`); None: one sub-folder per class instead.

        Returns:
            The directory.
        """
        if labels_file and Path(labels_file).suffix.lower() not in _LABELS_SUFFIXES:
            raise ConfigError(f"`labels_file={labels_file!r}` must end in one of {', '.join(_LABELS_SUFFIXES)}.")
        directory = Path(directory)
        rows = []
        for index in range(len(self) if num_samples is None else min(num_samples, len(self))):
            image, label = self.sample(index)
            relative = Path(f"{index:05d}.png") if labels_file else Path(label) / f"{index:05d}.png"
            (directory / relative).parent.mkdir(parents=True, exist_ok=True)
            image.save(directory / relative)
            rows.append({"file": relative.as_posix(), "label": label})
        if labels_file:
            _write_rows(directory / labels_file, rows)
        return directory

    # -- generation ----------------------------------------------------------------------------
    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, self._split_id, index])

    def _draw(self, index: int) -> tuple[Image.Image, str]:
        rng = self._rng(index)
        geometry = self._geometry(rng)
        return self._render(geometry, rng), geometry["shape"]

    def _geometry(self, rng: np.random.Generator) -> dict[str, Any]:
        """Draw shape, size, position, rotation and colours until they hash into this split."""
        config = self.config
        canvas = config.image_size * _SUPERSAMPLE

        def draw() -> dict[str, Any]:
            radius = int(rng.uniform(config.min_scale, config.max_scale) * canvas)
            background = rng.integers(0, 256, 3)
            return {
                "shape": config.shapes[rng.integers(len(config.shapes))],
                "radius": radius,
                "center": tuple(int(c) for c in rng.integers(radius, canvas - radius + 1, 2)),
                "angle": int(rng.integers(-int(config.max_rotation), int(config.max_rotation) + 1)),
                "background": tuple(int(c) for c in background),
                "ink": _contrasting_colour(rng, background, config.min_contrast),
            }

        key = lambda geometry: repr(sorted(geometry.items()))  # noqa: E731 - the content that decides the split
        return draw_in_split(draw, key, self.split, "shape", "too few distinct shapes.")

    def _render(self, geometry: dict[str, Any], rng: np.random.Generator) -> Image.Image:
        """Draw the shape supersampled, downsample, add a brightness gradient and pixel noise."""
        size = self.config.image_size
        image = Image.new("RGB", (size * _SUPERSAMPLE,) * 2, geometry["background"])
        _draw_shape(ImageDraw.Draw(image), geometry)
        image = image.resize((size, size), Image.Resampling.BOX)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        gx, gy = rng.uniform(-0.1, 0.1, 2)
        pixels = pixels + (gx * ramp[None, :, None] + gy * ramp[:, None, None])
        noise_std = float(rng.uniform(0.3, 1.0) * self.config.noise_std)
        pixels = pixels + rng.normal(0.0, noise_std, pixels.shape).astype(np.float32)
        return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8), "RGB")


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray, min_contrast: int) -> tuple[int, ...]:
    """A random RGB colour whose brightness differs from the background's by `min_contrast`."""
    weights = np.array([0.299, 0.587, 0.114])
    for _ in range(MAX_TRIES):
        colour = rng.integers(0, 256, 3)
        if abs(float(weights @ (colour - background))) >= min_contrast:
            return tuple(int(c) for c in colour)
    # a mid-grey background can lack such colours among the draws: take black or white
    return (0, 0, 0) if float(weights @ background) >= 128 else (255, 255, 255)


def _draw_shape(draw: ImageDraw.ImageDraw, geometry: dict[str, Any]) -> None:
    (cx, cy), radius, ink = geometry["center"], geometry["radius"], geometry["ink"]
    outline = SHAPES[geometry["shape"]]
    if outline is None:
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if geometry["shape"] == "ring":
            draw.ellipse(box, outline=ink, width=max(2, int(radius * 0.35)))
        else:
            draw.ellipse(box, fill=ink)
        return
    angle = math.radians(geometry["angle"])
    cos, sin = math.cos(angle), math.sin(angle)
    points = [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in outline]
    draw.polygon(points, fill=ink)


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Write `rows` (columns `file`, `label`) as CSV, JSON Lines or Parquet, by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file", "label"])
            writer.writeheader()
            writer.writerows(rows)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif suffix == ".parquet":
        import pandas as pd  # pandas: ~0.25 s to import, needed only to write Parquet

        pd.DataFrame(rows).to_parquet(path, index=False)
    else:
        raise ConfigError(f"`labels_file={path.name!r}` must end in one of {', '.join(_LABELS_SUFFIXES)}.")
