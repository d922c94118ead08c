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

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from tamrin.configs import ConfigError, check_choice
from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.datasets.collators import ImageCollator
from tamrin.datasets.readers import FILE_FORMATS
from tamrin.datasets.tables import ArrowColumn, check_no_missing, first_line_of, iter_rows, quiet_datasets, read_table
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

    The split's listing is an Arrow table (`table`): a labels file is read into the datasets cache
    and memory-mapped (`read_table`), class sub-folders are listed into an in-memory table; its label
    ids are one numpy array (`label_ids`) and an item reads its path in O(1), so a listing of
    millions of images holds no Python object per row. At construction every image file of a labels
    file is checked to exist and every label to be in the label map; images are decoded lazily in
    `get_item` (an undecodable one is a ValueError naming the file).

    Attributes:
        table: the listing (`file_column`, `label_column`, and a labels file's other columns).
        image_root: the folder that image paths are relative to (the labels file's, or the split's).
        label_ids: the class id of every row (int32).
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
        self.labels_path = self._find_labels_file(folder)
        """The labels file read, or None for class sub-folders."""
        if self.labels_path is not None:
            self.table, self.image_root = self._read_labels_file(self.labels_path), self.labels_path.parent
        else:
            self.table, self.image_root = self._scan_subfolders(folder), folder
        self._files = ArrowColumn(self.table, config.file_column)
        names, positions = _distinct_labels(self.table, config.label_column)
        self.setup_preprocessor(sorted(set(names)) if split == "train" else None)
        self.label_ids = self._label_ids(names, positions)
        if self.labels_path is not None:  # listed sub-folder files exist by construction
            self._check_files_exist()

    @property
    def files(self) -> Sequence[Path]:
        """The image path of every row, read from the table on access (no list of every path)."""
        return _ImagePaths(self._files, self.image_root)

    def num_rows(self) -> int:
        return len(self._files)

    def get_item(self, index: int) -> dict[str, torch.Tensor]:
        return self.make_item(open_image(self.image_root / self._files[index]), int(self.label_ids[index]))

    def where(self, index: int) -> str:
        """Where row `index` was listed, as errors name it: a labels file's line (or row), or the image."""
        path = self.labels_path
        if path is None:
            return str(self.image_root / self._files[index])
        first_line = first_line_of(path)
        return f"{path}: line {index + first_line}" if first_line else f"{path}: row {index}"

    # -- listing -------------------------------------------------------------------------------
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

    def _read_labels_file(self, path: Path) -> Any:
        """The labels file as a memory-mapped table, every row holding a path and a label."""
        import datasets

        columns = [self.config.file_column, self.config.label_column]
        table = read_table(path, columns)
        check_no_missing(table, columns, str(path), first_line_of(path))
        if table.features[columns[0]] != datasets.Value("string"):  # e.g. JSON numbers as file names
            with quiet_datasets():
                table = table.cast_column(columns[0], datasets.Value("string"))
        return table

    def _scan_subfolders(self, folder: Path) -> Any:
        """The images of every class folder as a table, interleaved class by class (sorted within each class).

        Interleaving keeps `max_size` (the first N samples) spread over all classes instead of the
        first classes only.
        """
        import datasets
        import pyarrow as pa

        classes, files = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            with os.scandir(class_dir) as entries:
                names = sorted(
                    entry.name
                    for entry in entries
                    if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
                )
            if names:
                classes.append(class_dir.name)
                files.append(pa.array([f"{class_dir.name}/{name}" for name in names], pa.string()))
        if not files:
            raise ConfigError(
                f"The {self.split!r} split folder {str(folder)!r} holds no labels file and no class sub-folders "
                f"with images ({', '.join(IMAGE_EXTENSIONS)}): a dataset needs at least one sample."
            )
        counts = [len(array) for array in files]
        class_index = np.repeat(np.arange(len(counts)), counts)
        rank = np.concatenate([np.arange(count) for count in counts])
        order = pa.array(np.lexsort((class_index, rank)))  # first images of every class, then the second ones, ...
        return datasets.Dataset.from_dict(
            {
                self.config.file_column: pa.concat_arrays(files).take(order),
                self.config.label_column: pa.array(classes, pa.string()).take(pa.array(class_index).take(order)),
            }
        )

    # -- checks --------------------------------------------------------------------------------
    def _label_ids(self, names: list[str], positions: np.ndarray) -> np.ndarray:
        """Each row's class id; the first row whose label is not in the label map fails, naming it."""
        label2id = self.preprocessor.label2id
        ids = np.array([label2id.get(name, -1) for name in names], dtype=np.int32)[positions]
        unknown = np.flatnonzero(ids < 0)
        if unknown.size:
            row = int(unknown[0])
            raise ConfigError(
                f"{self.where(row)}: label {names[positions[row]]!r} of the {self.split!r} split is not in the "
                f"train split's label map. Valid labels: {self.labels}."
            )
        return ids

    def _check_files_exist(self) -> None:
        """Every listed image exists: one stat per row, streamed over the table; the first five missing are named."""
        missing = 0
        shown: list[str] = []
        for index, row in enumerate(iter_rows(self.table, [self.config.file_column])):
            path = self.image_root / row[self.config.file_column]
            if not path.is_file():
                missing += 1
                if len(shown) < 5:
                    shown.append(f"{str(path)!r} ({self.where(index)})")
        if missing:
            more = f" and {missing - 5} more" if missing > 5 else ""
            raise FileNotFoundError(
                f"{missing} image file(s) of the {self.split!r} split do not exist: " + ", ".join(shown) + more + "."
            )


def _distinct_labels(table: Any, column: str) -> tuple[list[str], np.ndarray]:
    """The distinct labels of a column as strings (as `str()` writes them), and each row's index into them.

    Vectorised on Arrow (`unique`, `index_in`): a Python string per distinct label, not per row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.data.column(column)
    if pa.types.is_nested(values.type):
        raise ConfigError(f"Column {column!r} must hold one label per row (a string or a number), got {values.type}.")
    distinct = pc.unique(values)
    positions = pc.index_in(values, value_set=distinct).to_numpy()
    return [str(value) for value in distinct.to_pylist()], positions


class _ImagePaths(Sequence[Path]):
    """A read-only sequence of the image paths of a listing, read in O(1) from its Arrow column."""

    def __init__(self, files: ArrowColumn, root: Path) -> None:
        self._column, self._root = files, root

    def __len__(self) -> int:
        return len(self._column)

    @overload
    def __getitem__(self, index: int) -> Path: ...

    @overload
    def __getitem__(self, index: slice) -> list[Path]: ...

    def __getitem__(self, index: int | slice) -> Path | list[Path]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"Image index {index} is out of range for {len(self)} images.")
        return self._root / self._column[position]
