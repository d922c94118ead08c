"""The `Dataset` base, its `DatasetConfig`, and the dataset registry.

A tamrin dataset is a map-style `torch.utils.data.Dataset` built from a config and a split, whose
items are dicts of tensors and whose `data_collator` turns a list of items into a batch (a dict
of tensors). Subclasses implement `num_rows()` and `get_item(index)`; the base applies
`max_size`, checks indices and builds the collator.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import default_collate

from tamrin.configs import Config, ConfigError, check_range
from tamrin.datasets.folders import SPLIT_PATTERNS, config_files, dataset_folder, resolve_files, saved_files
from tamrin.datasets.tables import column_values, quiet_datasets
from tamrin.registry import Registry, config_name_default, load_registered_config

__all__ = ["DATASETS", "Dataset", "DatasetConfig", "build_dataset", "get_dataset_class", "register_dataset"]

DATASETS: Registry[type[Dataset]] = Registry(
    "dataset", hint="Register new datasets with @register_dataset(name, config_class=...)."
)
"""Registry name -> `Dataset` class (each with its `config_class`)."""

DatasetT = TypeVar("DatasetT", bound=type["Dataset"])


@dataclass
class DatasetConfig(Config):
    """Base of every dataset config; subclasses add the dataset's own fields.

    Attributes:
        name: the dataset's registry name (e.g. "synthetic_plates").
        task: the task the dataset serves (e.g. "image2text"); picks the metrics handler.
        max_size: use only the first `max_size` samples of each split (None: all of them).
    """

    config_filename: ClassVar[str] = "dataset_config.yaml"

    name: str = ""
    task: str = ""
    max_size: int | None = None

    def validate(self) -> list[str | None]:
        return [
            None if self.name else "`name` must be the registry name of a dataset, e.g. 'synthetic_plates'.",
            check_range("max_size", self.max_size, minimum=1, optional=True),
        ]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        overrides: Any = None,
        *,
        filename: str | None = None,
        revision: str | None = None,
    ) -> DatasetConfig:
        """Load a dataset config, rebuilding the subclass registered under the file's `name`.

        `DatasetConfig.load(path)` returns e.g. a `SyntheticPlatesConfig`; a subclass's `load` also
        checks that the file holds one of its kind. See `Config.load` for the arguments.

        Raises:
            ConfigError: the file names no registered dataset, or a dataset of another kind.
        """
        return load_registered_config(
            cls, DATASETS, path, overrides, root=DatasetConfig, filename=filename, revision=revision
        )


class Dataset(TorchDataset):
    """Base of tamrin datasets: a config, a split, `max_size`, and a `data_collator`.

    Subclasses implement:
        num_rows(): the number of samples of the split before `max_size`.
        get_item(index): the sample at `0 <= index < len(self)` as a dict of tensors.
    and may override `default_data_collator()`.

    Attributes:
        config: the dataset's config.
        split: the split name ("train", "validation", "test", ...).
        preprocessor: what turns raw rows into tensors (a tokenizer, a label map), when the data
            has one; pass the train split's to the other splits (`preprocessor=...`) so that they
            share it, and a recipe hands it to the model, which saves it.
        data_collator: a callable turning a list of items into a batch (a dict of tensors).
    """

    config_class: ClassVar[type[DatasetConfig]] = DatasetConfig

    def __init__(self, config: DatasetConfig, split: str = "train", **kwargs: Any) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config
        self.split = split
        self.preprocessor: Any = kwargs.pop("preprocessor", None)
        self.data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]] = (
            kwargs.pop("data_collator", None) or self.default_data_collator()
        )
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: {sorted(kwargs)}.")

    def num_rows(self) -> int:
        """The number of samples in the split, before `max_size` is applied."""
        raise NotImplementedError(f"{type(self).__name__} must implement num_rows().")

    def get_item(self, index: int) -> dict[str, Any]:
        """The sample at `index` (already range-checked) as a dict of tensors."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_item(index).")

    def model_config_overrides(self) -> dict[str, Any]:
        """Model config values that the data decides (vocab_size, num_labels, id2label, ...).

        A recipe builds the train dataset first and the model with these, so that the two cannot
        disagree; the default is none.
        """
        return {}

    def check_model(self, model: Any) -> None:
        """Fail before training when `model` cannot read this data (the Trainer calls it when built).

        The default checks nothing; e.g. a text-generation dataset names a row longer than the
        model's context, which would otherwise stop the run at the first batch that holds it.
        """

    def default_data_collator(self) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """The collator used when none is passed: torch's `default_collate` (stacks tensors)."""
        return default_collate

    def __len__(self) -> int:
        rows = self.num_rows()
        return rows if self.config.max_size is None else min(rows, self.config.max_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get_item(self.resolve_index(index))

    def resolve_index(self, index: int) -> int:
        """Turn `index` (negative counts from the end) into a position in `[0, len(self))`.

        Raises:
            IndexError: `index` is out of range.
        """
        length = len(self)
        position = int(index)
        if position < 0:
            position += length
        if not 0 <= position < length:
            raise IndexError(
                f"Index {index} is out of range for the {self.split!r} split of "
                f"{type(self).__name__} (length {length})."
            )
        return position

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.config.name!r}, split={self.split!r}, size={len(self)})"

    # -- the rows' columns (datasets that keep an Arrow table of rows) --------------------------
    @property
    def column_names(self) -> list[str]:
        """The columns of the split's rows, extra ones included (AttributeError: a dataset without a table)."""
        table = getattr(self, "table", None)
        if table is None:
            raise AttributeError(f"{type(self).__name__} keeps no table of rows, so it has no columns.")
        return list(table.column_names)

    def column(self, name: str) -> Any:
        """The values of column `name` in sample order, as a numpy array (e.g. a curriculum's difficulty).

        Extra columns (a confidence, a length, a source) stay in the table; the model never sees them.

        Raises:
            ConfigError: no such column; the message lists the columns.
        """
        if name not in self.column_names:
            source = getattr(self, "source", repr(self))
            raise ConfigError(f"Column {name!r} is not in {source} (its columns: {sorted(self.column_names)}).")
        values = column_values(self.table, name)  # type: ignore[attr-defined]  # column_names checked the table
        return values if self.config.max_size is None else values[: len(self)]

    # -- folders and the Hub (folders.py has the layout) ---------------------------------------
    @classmethod
    def load(
        cls,
        path_or_repo_id: str | os.PathLike,
        split: str = "train",
        preprocessor: Any = None,
        revision: str | None = None,
        **config_overrides: Any,
    ) -> Dataset:
        """Load a split from a dataset folder or a Hub dataset repo, as Hezar's `Dataset.load` does.

        The folder's `dataset_config.yaml` names the registered dataset class (`name`) and its options;
        the split's data files are the config's `files[split]`, else found by the Hub's conventions
        (`data/{split}-*.parquet`, ...). Example: `Dataset.load("data/reviews", split="validation",
        preprocessor=train.preprocessor)`.

        Args:
            path_or_repo_id: a local folder, or a Hub dataset repo id ("user/name").
            split: the split to load.
            preprocessor: the training split's preprocessor (or a folder / Hub model repo holding one,
                e.g. a trained model's), so that ids mean what they meant in training; None builds
                one from the training split.
            revision: a branch, tag or commit of the Hub repo.
            **config_overrides: config fields to replace, e.g. `max_length=8`.

        Raises:
            ConfigError: the config names no registered dataset, or one of another kind than `cls`.
            FileNotFoundError: no such folder, and not a repo id. HubError: the download failed.
        """
        folder = dataset_folder(path_or_repo_id, revision)
        config = DatasetConfig.load(folder, dict(config_overrides) or None)
        dataset_class = get_dataset_class(config.name)
        if not issubclass(dataset_class, cls):
            raise ConfigError(
                f"{folder}/dataset_config.yaml names dataset {config.name!r} ({dataset_class.__name__}), "
                f"not a {cls.__name__}; load it with `Dataset.load(...)`."
            )
        files = config_files(config)
        if files is not None:
            resolved = resolve_files(files, folder, split)
            if split not in resolved:
                searched = [pattern.format(split=split) for pattern in SPLIT_PATTERNS]
                raise ConfigError(
                    f"{path_or_repo_id} has no data for split {split!r}: its dataset_config.yaml names "
                    f"`files` for {sorted(files)} and no file matches {searched}."
                )
            config = type(config).from_dict({**config.to_dict(), "files": resolved})
        if isinstance(preprocessor, (str, os.PathLike)):
            preprocessor = dataset_class.load_preprocessor(preprocessor)
        return dataset_class(config, split=split, preprocessor=preprocessor)

    @classmethod
    def load_preprocessor(cls, path_or_repo_id: str | os.PathLike) -> Any:
        """The preprocessor saved in a folder or Hub model repo (a trained model's), for `load(preprocessor=PATH)`."""
        raise TypeError(
            f"{cls.__name__} cannot read a preprocessor from {str(path_or_repo_id)!r}: pass the preprocessor "
            "object itself (e.g. `preprocessor=train_dataset.preprocessor`)."
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write this split into a dataset folder that `Dataset.load` (and a Hub dataset repo) reads.

        Writes `data/{split}-00000-of-00001.parquet` (the rows this dataset holds, `max_size` applied)
        and `dataset_config.yaml`; other splits already saved in the folder are kept, so saving each
        split of a dataset into one folder gives the whole dataset.

        Raises:
            NotImplementedError: the dataset keeps no table of rows (a generated one: save its config).
            ConfigError: the folder holds another dataset.
        """
        table = getattr(self, "table", None)
        files = config_files(self.config)
        if table is None or files is None:
            raise NotImplementedError(
                f"{type(self).__name__} reads no data files, so it has no rows to save: it is rebuilt from its "
                f"config (`dataset.config.save(path)`). `Dataset.save` writes datasets read from files, e.g. "
                "text_classification or sequence_labeling."
            )
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        existing = DatasetConfig.load(folder) if (folder / DatasetConfig.config_filename).is_file() else None
        if existing is not None and existing.name != self.config.name:
            raise ConfigError(
                f"{folder} holds dataset {existing.name!r}; it cannot take a split of {self.config.name!r}."
            )
        kept, relative = saved_files(config_files(existing) or {}, self.split)
        for stale in (folder / "data").glob(f"{self.split}-*"):  # this split's earlier shards
            stale.unlink()
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        with quiet_datasets():
            table.to_parquet(str(partial))
        os.replace(partial, target)
        kept.pop(self.split)  # found by its name, so a push of one split leaves the others' entries be
        config = type(self.config).from_dict({**self.config.to_dict(), "files": kept, "max_size": None})
        config.save(folder)
        return folder

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        token: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """Upload this split to a Hub dataset repo, in the layout `save` writes (one commit, deleting nothing).

        Returns:
            The commit (`hub.Commit`: its sha, url and pull request).
        """
        from tamrin import hub

        return hub.upload_saved(
            self.save,
            repo_id,
            commit_message=commit_message or f"Upload the {self.split} split with tamrin",
            private=private,
            revision=revision,
            token=token,
            create_pr=create_pr,
            repo_type="dataset",
        )


def register_dataset(
    name: str, config_class: type[DatasetConfig], *, replace: bool = False
) -> Callable[[DatasetT], DatasetT]:
    """Class decorator: register a `Dataset` subclass under `name` with its config class.

    Args:
        name: the registry name; it must equal the default of `config_class.name`.
        config_class: the `DatasetConfig` subclass the dataset is built from.
        replace: replace another class registered under `name` (otherwise that is an error).

    Raises:
        TypeError: the classes are not a Dataset / DatasetConfig subclass.
        ValueError: `name` is taken by another class, or differs from the config's default `name`.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, DatasetConfig)):
        raise TypeError(f"config_class of dataset {name!r} must be a DatasetConfig subclass, got {config_class!r}.")
    default = config_name_default(config_class)
    if default != name:
        raise ValueError(f"{config_class.__name__}.name defaults to {default!r}; set `name: str = {name!r}`.")

    def decorator(dataset_class: DatasetT) -> DatasetT:
        if not (isinstance(dataset_class, type) and issubclass(dataset_class, Dataset)):
            raise TypeError(f"@register_dataset({name!r}) needs a tamrin Dataset subclass, got {dataset_class!r}.")
        DATASETS.add(name, dataset_class, replace=replace)
        dataset_class.config_class = config_class
        return dataset_class

    return decorator


def get_dataset_class(name: str) -> type[Dataset]:
    """Return the dataset class registered under `name` (ConfigError listing the names if none)."""
    return DATASETS.get(name)


def build_dataset(
    name: str | DatasetConfig, split: str = "train", *, preprocessor: Any = None, **overrides: Any
) -> Dataset:
    """Build a registered dataset's split by name (or from a `DatasetConfig`) with config overrides.

    `preprocessor` (a tokenizer, a label map) is shared with another split instead of being built
    anew; the other keywords override config fields.

    Example:
        `build_dataset("synthetic_plates", split="validation", num_samples=500)`.

    Raises:
        ConfigError: unknown name or invalid config values.
    """
    if isinstance(name, DatasetConfig):
        config = name.merge(overrides) if overrides else name
        return get_dataset_class(config.name)(config, split=split, preprocessor=preprocessor)
    dataset_class = get_dataset_class(name)
    config = dataset_class.config_class.from_dict({**overrides, "name": name})
    return dataset_class(config, split=split, preprocessor=preprocessor)
