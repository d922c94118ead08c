"""Image classification data: a shared base, and `ImageFolderDataset` for images on disk.

A split lives in its own folder, `{data_dir}/{split}` (or `{data_dir}/{split_dirs[split]}`), laid
out in one of two ways:

    labels file                            class sub-folders
    train/                                 train/
      labels.csv      file,label             circle/  0001.png  0007.png ...
      0001.png        0001.png,circle        square/  0002.png ...
      0002.png        0002.png,square
      ...

The labels file is CSV, TSV, JSONL or Parquet (columns `file` and `label` by default, see
`file_column` / `label_column`); its paths are relative to the labels file's folder and may point
into sub-folders. With `layout: auto`, a split folder that holds a labels file is read from it (the
labels file wins over any sub-folders); otherwise each sub-folder is a class. The train split
builds the label map (label names sorted); other splits must be given the train split's
preprocessor, so that class ids mean the same everywhere.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tamrin.configs import ConfigError, check_choice
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.collators import ImageCollator
from tamrin.datasets.readers import FILE_FORMATS, read_records
from tamrin.preprocessors.images import ImagePreprocessor, check_image_settings, open_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "ImageClassificationDataset",
    "ImageDatasetConfig",
    "ImageFolderConfig",
    "ImageFolderDataset",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LAYOUTS = ("auto", "labels_file", "subfolders")
_TRANSFORM_FIELDS = ("image_size", "in_channels", "mean", "std")


@dataclass
class ImageDatasetConfig(DatasetConfig):
    """Image transform settings shared by the image classification datasets.

    Attributes:
        image_size: images are resized to `image_size` x `image_size` pixels.
        in_channels: 1 (grayscale) or 3 (RGB).
        mean: normalisation mean, one value or one per channel (pixels scaled to [0, 1] first).
        std: normalisation standard deviation, likewise.
    """

    task: str = "image_classification"
    image_size: int = 32
    in_channels: int = 3
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])

    def validate(self) -> list[str | None]:
        return [*super().validate(), *check_image_settings(self.image_size, self.in_channels, self.mean, self.std)]


class ImageClassificationDataset(Dataset):
    """Base of image classification datasets: the shared preprocessor, the collator, model overrides.

    Items are `{"pixel_values": (C, H, W) float32, "labels": () int64}`; the collator is an
    `ImageCollator`. Subclasses call `setup_preprocessor(labels)` once they know their labels.
    """

    config: ImageDatasetConfig
    preprocessor: ImagePreprocessor

    def setup_preprocessor(self, labels: list[str] | None) -> None:
        """Build the preprocessor from `labels` (sorted), or check the one given against the config.

        Args:
            labels: the label names this split defines (the train split), or None when the split
                must take the train split's preprocessor.

        Raises:
            ConfigError: no preprocessor where one is needed, or a given one whose transform
                differs from this config's.
        """
        given = self.preprocessor
        if given is None:
            if labels is None:
                raise ConfigError(
                    f"The {self.split!r} split of {self.config.name!r} needs the train split's label map: "
                    "build it with `preprocessor=train_dataset.preprocessor` (or a loaded model's preprocessor)."
                )
            settings = {name: getattr(self.config, name) for name in _TRANSFORM_FIELDS}
            self.preprocessor = ImagePreprocessor(**settings, labels=sorted(labels))
            return
        if not isinstance(given, ImagePreprocessor):
            raise TypeError(f"`preprocessor` must be an ImagePreprocessor, got {type(given).__name__}.")
        differ = [
            f"`{name}={getattr(self.config, name)!r}` (the preprocessor has {getattr(given, name)!r})"
            for name in _TRANSFORM_FIELDS
            if getattr(self.config, name) != getattr(given, name)
        ]
        if differ:
            raise ConfigError(
                f"The {self.split!r} split of {self.config.name!r} sets "
                + ", ".join(differ)
                + ": give every split the same image settings as the train split."
            )

    @property
    def labels(self) -> list[str]:
        """The label names; class id `i` is `labels[i]`."""
        return self.preprocessor.labels

    def model_config_overrides(self) -> dict[str, Any]:
        """The classes and the input shape, which the model must share with the data."""
        return {
            "num_labels": len(self.labels),
            "id2label": self.preprocessor.id2label,
            "image_size": self.preprocessor.image_size,
            "in_channels": self.preprocessor.in_channels,
        }

    def default_data_collator(self) -> ImageCollator:
        return ImageCollator()

    def make_item(self, image: Any, label_id: int) -> dict[str, torch.Tensor]:
        """The item of one PIL image and its class id."""
        return {"pixel_values": self.preprocessor.transform(image), "labels": torch.tensor(label_id)}


@dataclass
class ImageFolderConfig(ImageDatasetConfig):
    """Configuration of `ImageFolderDataset` (see the module docstring for the layouts).

    Attributes:
        data_dir: the folder that holds one folder per split.
        split_dirs: split name -> its folder inside `data_dir` (default: the split name itself),
            e.g. {"validation": "val"}.
        layout: "labels_file", "subfolders", or "auto" (a labels file if the split has one, else
            class sub-folders).
        labels_file: the labels file's name inside the split folder; None: the one file named
            `labels` with a readable suffix (.csv, .tsv, .jsonl, .json, .parquet).
        file_column: the labels file's column of image paths (relative to the labels file).
        label_column: the labels file's column of label names.
    """

    name: str = "image_folder"
    data_dir: str = ""
    split_dirs: dict[str, str] = field(default_factory=dict)
    layout: str = "auto"
    labels_file: str | None = None
    file_column: str = "file"
    label_column: str = "label"

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems.append(None if self.data_dir else "`data_dir` must name the folder that holds the split folders.")
        problems.append(check_choice("layout", self.layout, LAYOUTS))
        if self.labels_file is not None and Path(self.labels_file).suffix.lower() not in FILE_FORMATS:
            problems.append(f"`labels_file={self.labels_file!r}` must end in one of {', '.join(sorted(FILE_FORMATS))}.")
        if self.layout == "subfolders" and self.labels_file is not None:
            problems.append("`labels_file` is set but `layout='subfolders'` ignores it; drop one of them.")
        return problems


@register_dataset("image_folder", config_class=ImageFolderConfig)
class ImageFolderDataset(ImageClassificationDataset):
    """Images on disk with their class labels, from a labels file or class sub-folders.

    At construction the split's listing is read, every image file is checked to exist and every
    label to be in the label map; images are decoded lazily in `get_item` (an undecodable one is a
    ValueError naming the file).
    """

    config: ImageFolderConfig

    def __init__(self, config: ImageFolderConfig, split: str = "train", **kwargs: Any) -> None:
        super().__init__(config, split=split, **kwargs)
        folder = Path(config.data_dir) / config.split_dirs.get(split, split)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"The {split!r} split folder {str(folder)!r} does not exist: image_folder reads "
                f"`{{data_dir}}/{{split}}` (data_dir={config.data_dir!r}); map other names with `split_dirs`."
            )
        self.folder = folder
        rows = self._list_samples(folder)
        self.files = [path for path, _, _ in rows]
        self.setup_preprocessor(sorted({label for _, label, _ in rows}) if split == "train" else None)
        self.label_ids = [self._label_id(label, where) for _, label, where in rows]
        self._check_files_exist(rows)

    def num_rows(self) -> int:
        return len(self.files)

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        return self.make_item(open_image(self.files[index]), self.label_ids[index])

    # -- listing -------------------------------------------------------------------------------
    def _list_samples(self, folder: Path) -> list[tuple[Path, str, str]]:
        """(image path, label, where it was listed) of every sample of the split, in order."""
        labels_file = self._find_labels_file(folder)
        if labels_file is not None:
            return self._read_labels_file(labels_file)
        return self._scan_subfolders(folder)

    def _find_labels_file(self, folder: Path) -> Path | None:
        layout, name = self.config.layout, self.config.labels_file
        if layout == "subfolders":
            return None
        if name is not None:
            path = folder / name
            if not path.is_file():
                raise FileNotFoundError(f"Labels file {str(path)!r} (`labels_file={name!r}`) does not exist.")
            return path
        found = sorted(path for path in folder.glob("labels.*") if path.suffix.lower() in FILE_FORMATS)
        if len(found) > 1:
            raise ConfigError(
                f"{str(folder)!r} holds several labels files {[p.name for p in found]}; choose one with `labels_file`."
            )
        if not found and layout == "labels_file":
            raise FileNotFoundError(
                f"No labels file in {str(folder)!r}: expected labels.csv (or .tsv, .jsonl, .json, .parquet) "
                "with `layout='labels_file'`; set `labels_file` to its name."
            )
        return found[0] if found else None

    def _read_labels_file(self, path: Path) -> list[tuple[Path, str, str]]:
        columns = (self.config.file_column, self.config.label_column)
        records = read_records(path, required_columns=columns)
        first_line = {".csv": 2, ".tsv": 2, ".jsonl": 1, ".json": 1}.get(path.suffix.lower())
        return [
            (
                path.parent / str(row[columns[0]]),
                str(row[columns[1]]),
                f"{path}: line {index + first_line}" if first_line else f"{path}: row {index}",
            )
            for index, row in enumerate(records)
        ]

    def _scan_subfolders(self, folder: Path) -> list[tuple[Path, str, str]]:
        """The images of every class folder, interleaved class by class (sorted within each class).

        Interleaving keeps `max_size` (the first N samples) spread over all classes instead of the
        first classes only.
        """
        per_class = [
            [
                (image, class_dir.name, str(image))
                for image in sorted(class_dir.iterdir())
                if image.is_file() and image.suffix.lower() in IMAGE_EXTENSIONS
            ]
            for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        ]
        rows = [row for group in itertools.zip_longest(*per_class) for row in group if row is not None]
        if not rows:
            raise ConfigError(
                f"The {self.split!r} split folder {str(folder)!r} holds no labels file and no class sub-folders "
                f"with images ({', '.join(IMAGE_EXTENSIONS)}): a dataset needs at least one sample."
            )
        return rows

    # -- checks --------------------------------------------------------------------------------
    def _label_id(self, label: str, where: str) -> int:
        label_id = self.preprocessor.label2id.get(label)
        if label_id is None:
            raise ConfigError(
                f"{where}: label {label!r} of the {self.split!r} split is not in the train split's label map. "
                f"Valid labels: {self.labels}."
            )
        return label_id

    def _check_files_exist(self, rows: list[tuple[Path, str, str]]) -> None:
        missing = [f"{str(path)!r} ({where})" for path, _, where in rows if not path.is_file()]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"{len(missing)} image file(s) of the {self.split!r} split do not exist: "
                + ", ".join(missing[:5])
                + more
                + "."
            )
