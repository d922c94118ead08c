"""Image-to-text from files: Hezar's `ocr` dataset, a table of image paths and their texts.

The layout of Hezar's OCR dataset repos (e.g. `hezarai/persian-license-plate-v1`): a data file per
split with an `image_path` and a `label` column, the images beside it. As in Hezar, rows whose text
is longer than `max_length` or holds a character outside the charset are left out; unlike Hezar's
log line, the warning names how many and the first of them, and `dropped` holds their positions.

Items match the synthetic plates' (and the CRNN's preprocessing): `pixel_values` (1, H, W) grayscale
in [-1, 1], `labels` 1-based character ids (0 is the CTC blank), batched by `CTCCollator`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tamrin.configs import ConfigError, check_range
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.collators import CTCCollator
from tamrin.datasets.tables import check_no_missing, iter_rows, quiet_datasets, read_table
from tamrin.datasets.tasks.text_classification import check_text_files
from tamrin.preprocessors.charset import CharsetPreprocessor
from tamrin.preprocessors.images import open_image

__all__ = ["OCRConfig", "OCRDataset"]


@dataclass
class OCRConfig(DatasetConfig):
    """Configuration of `OCRDataset` (field names as in Hezar's `OCRDatasetConfig`).

    Attributes:
        files: data file of each split (CSV, TSV, JSONL or Parquet; image paths relative to it).
        text_column: the column holding the text of an image.
        images_paths_column: the column holding the image's path.
        max_length: rows with a longer text are left out (None: keep every length).
        charset: the characters a model reads; empty: every character of the training texts, sorted.
        image_height: images are resized to this height.
        image_width: images are resized to this width.
    """

    name: str = "ocr"
    task: str = "image2text"
    files: dict[str, str] = field(default_factory=dict)
    text_column: str = "label"
    images_paths_column: str = "image_path"
    max_length: int | None = None
    charset: str = ""
    image_height: int = 32
    image_width: int = 128

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            *check_text_files(self.files),
            check_range("max_length", self.max_length, minimum=1, optional=True),
            check_range("image_height", self.image_height, minimum=1),
            check_range("image_width", self.image_width, minimum=1),
        ]


@register_dataset("ocr", config_class=OCRConfig)
class OCRDataset(Dataset):
    """Images and their texts, rows kept in Arrow; images are read and resized per item.

    Attributes:
        table: the kept rows (a `datasets.Dataset`).
        dropped: positions (in the data file) of the rows left out by `max_length` or the charset.
    """

    config: OCRConfig

    def __init__(self, config: OCRConfig, split: str = "train", **kwargs: Any) -> None:
        super().__init__(config, split=split, **kwargs)
        if split not in config.files:
            raise ConfigError(f"ocr has no file for split {split!r}: `files` names the splits {sorted(config.files)}.")
        path = Path(config.files[split])
        self.image_root = path.parent  # image paths in the data file are relative to it
        columns = [config.images_paths_column, config.text_column]
        table = read_table(path, columns)
        check_no_missing(table, columns, str(path), 0)
        if self.preprocessor is None:
            if split != "train":
                raise ConfigError(
                    f"The {split!r} split of ocr needs the training split's preprocessor (its charset): build it "
                    "with `preprocessor=train_dataset.preprocessor`, or pass a trained model's folder."
                )
            self.preprocessor = CharsetPreprocessor(
                config.charset or _charset_of(table, config.text_column), config.image_height, config.image_width
            )
        elif not isinstance(self.preprocessor, CharsetPreprocessor):
            raise TypeError(f"OCRDataset needs a CharsetPreprocessor, got {type(self.preprocessor).__name__}.")
        self.table, self.dropped = self._keep_readable(table, str(path))
        if config.max_size is not None and config.max_size < len(self.table):
            self.table = self.table.select(range(config.max_size))

    @classmethod
    def load_preprocessor(cls, path_or_repo_id: str | os.PathLike) -> CharsetPreprocessor:
        """A trained CRNN's preprocessor: the charset and image size of its `model_config.yaml`."""
        from omegaconf import OmegaConf

        folder = Path(path_or_repo_id).expanduser()
        if folder.is_dir():
            config_path = folder / "model_config.yaml"
        else:
            from tamrin import hub

            if not hub.is_repo_id(os.fspath(path_or_repo_id)):
                raise FileNotFoundError(f"No model folder or Hub repo id at {os.fspath(path_or_repo_id)!r}.")
            config_path = hub.download_file(os.fspath(path_or_repo_id), "model_config.yaml")
        if not config_path.is_file():
            raise FileNotFoundError(f"No model_config.yaml in {folder}: pass a trained CRNN's folder.")
        model = OmegaConf.to_container(OmegaConf.load(config_path))
        if not isinstance(model, dict) or not model.get("charset"):
            raise ConfigError(f"{config_path} holds no `charset`: it is not an image-to-text (CRNN) model's config.")
        return CharsetPreprocessor(str(model["charset"]), int(model["image_height"]), int(model["image_width"]))

    def _keep_readable(self, table: Any, source: str) -> tuple[Any, list[int]]:
        """Rows the charset can spell within `max_length`; warn with the count and the first ones left out."""
        known, limit, column = set(self.preprocessor.charset), self.config.max_length, self.config.text_column

        def readable(batch: dict[str, list[Any]]) -> list[bool]:
            return [(limit is None or len(str(text)) <= limit) and set(str(text)) <= known for text in batch[column]]

        with quiet_datasets():
            flags = table.map(lambda b: {"keep": readable(b)}, batched=True, remove_columns=table.column_names)
        keep = flags.data.column("keep").to_numpy(zero_copy_only=False)
        dropped = [int(i) for i in (~keep).nonzero()[0]]
        if dropped:
            first = [str(table[i][column]) for i in dropped[:3]]
            warnings.warn(
                f"{source}: {len(dropped)} of {len(table)} rows left out (as Hezar does): their text is longer than "
                f"max_length={limit} or holds characters outside the charset {self.preprocessor.charset!r}; "
                f"first: {first}. Their positions are in `dataset.dropped`.",
                stacklevel=3,
            )
            table = table.select([int(i) for i in keep.nonzero()[0]])
        if len(table) == 0:
            raise ConfigError(f"{source}: no row is left once texts over max_length={limit} are left out.")
        return table, dropped

    def num_rows(self) -> int:
        return len(self.table)

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        row = self.table[index]
        image_path = Path(str(row[self.config.images_paths_column]))
        image = open_image(image_path if image_path.is_absolute() else self.image_root / image_path)
        pixels = self.preprocessor(image)[0]
        labels = torch.tensor(self.preprocessor.encode(str(row[self.config.text_column])), dtype=torch.long)
        return {"pixel_values": pixels, "labels": labels}

    def default_data_collator(self) -> CTCCollator:
        return CTCCollator()

    def model_config_overrides(self) -> dict[str, Any]:
        """The charset and image size, so that a CRNN is built to read this data."""
        pre = self.preprocessor
        return {"charset": pre.charset, "image_height": pre.image_height, "image_width": pre.image_width}


def _charset_of(table: Any, column: str) -> str:
    """Every character of the column's texts, sorted: one streaming pass."""
    characters: set[str] = set()
    for row in iter_rows(table, [column]):
        characters.update(str(row[column]))
    return "".join(sorted(characters))
