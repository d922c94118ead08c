"""Dataset folders and Hub dataset repos: the layout `Dataset.load` reads and `Dataset.save` writes.

    {folder}/dataset_config.yaml                 name (the registered dataset class), task, columns, options
    {folder}/data/{split}-00000-of-00001.parquet one file per split, or shards `data/{split}-*.parquet`
                                                 (CSV, TSV, JSONL work too)

The same layout as a Hugging Face dataset repo (Hezar's datasets are such repos), so a folder pushed
with `Dataset.push_to_hub` loads by repo id, and a repo downloaded by hand loads as a folder. Paths
in the config's `files` are relative to the folder; a split the config does not name is found by
the Hub's own file-name conventions (`data/{split}-*`, `data/{split}.*`, `{split}-*`, `{split}.*`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tamrin.configs import ConfigError
from tamrin.datasets.readers import FILE_FORMATS

__all__ = ["SPLIT_PATTERNS", "config_files", "dataset_folder", "find_split_files", "resolve_files", "saved_files"]

SPLIT_PATTERNS = ("data/{split}-*", "data/{split}.*", "{split}-*", "{split}.*")
"""Where a split's data files are looked for, in order (the Hub's naming conventions)."""


def dataset_folder(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> Path:
    """The local folder of a dataset: the path itself, or a Hub dataset repo's snapshot in the cache.

    Raises:
        FileNotFoundError: neither a folder nor something that reads as a repo id.
        HubError: the repo or revision cannot be downloaded (the message says why).
    """
    local = Path(path_or_repo_id).expanduser()
    if local.is_dir():
        if revision is not None:
            raise ConfigError(f"`revision={revision!r}` is for a Hub repo id; {str(local)!r} is a local folder.")
        return local
    if local.exists():
        raise ConfigError(f"{str(local)!r} is a file; `Dataset.load` takes a dataset folder or a Hub dataset repo id.")
    from tamrin import hub  # huggingface_hub: imported only for the Hub

    name = os.fspath(path_or_repo_id)
    if not hub.is_repo_id(name):
        raise FileNotFoundError(f"No dataset folder at {name!r}, and it is not a Hub repo id ('user/name').")
    return hub.download(name, revision=revision, repo_type="dataset")


def find_split_files(folder: Path, split: str) -> str | None:
    """A glob of `split`'s data files in `folder` by the Hub's conventions, relative to it; None if none."""
    for pattern in SPLIT_PATTERNS:
        relative = pattern.format(split=split)
        matches = [path for path in folder.glob(relative) if path.is_file() and path.suffix.lower() in FILE_FORMATS]
        if matches:
            first = sorted(matches)[0]
            # shards: one glob over them all (read_table reads the glob); one file: its own name
            return f"{relative}{first.suffix}" if relative.endswith("-*") else first.relative_to(folder).as_posix()
    return None


def resolve_files(files: Mapping[str, str], folder: Path, split: str) -> dict[str, str]:
    """The config's `files` with paths made absolute under `folder`, plus `split`'s files if it names none."""
    resolved = {name: str(path if Path(path).is_absolute() else folder / path) for name, path in files.items()}
    if split not in resolved:
        found = find_split_files(folder, split)
        if found is not None:
            resolved[split] = str(folder / found)
    return resolved


def saved_files(existing: Mapping[str, str], split: str) -> tuple[dict[str, str], str]:
    """The `files` a saved folder's config holds after writing `split`, and the new file's relative path."""
    relative = f"data/{split}-00000-of-00001.parquet"
    files = {name: path for name, path in existing.items() if name != split and not Path(path).is_absolute()}
    files[split] = relative
    return files, relative


def config_files(config: Any) -> Mapping[str, str] | None:
    """The `files` field of a dataset config, or None for datasets that read no files (synthetic ones)."""
    files = getattr(config, "files", None)
    return dict(files) if isinstance(files, Mapping) else None
