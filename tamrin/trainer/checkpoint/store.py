"""CheckpointStore: every file-system operation a checkpoint makes, in one replaceable part.

The Checkpointer and the atomic-directory, rotation and cleanup functions do all their writing,
renaming, flushing and deleting through a store (as Lightning Fabric's strategy holds a
`checkpoint_io`). Tests replace it with a subclass that fails or dies at a chosen operation, so
crash safety is tested without monkeypatching private functions. Nothing is read back with a full
unpickle: `load_torch` uses `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tamrin.trainer.checkpoint.manifest import write_manifest
from tamrin.trainer.modeling import save_model_state, save_model_weights
from tamrin.trainer.sharding import save_sharded

__all__ = ["CheckpointStore", "load_torch", "save_torch"]


def save_torch(obj: Any, path: Path) -> None:
    """Save optimizer/scheduler/RNG state with torch.save (read back with weights_only=True).

    Through a Python file object, so that a failed write (a full disk) keeps its OSError as the
    context of torch's error (a path given to torch.save loses it).
    """
    with open(path, "wb") as handle:
        torch.save(obj, handle)


def load_torch(path: Path) -> Any:
    """Load with `weights_only=True`: a pickle that would run code is refused, never executed.

    Raises:
        ValueError: the file holds Python objects that only a full unpickle could build.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise ValueError(
                f"Refusing to load {path}: it holds Python objects that only a full unpickle could build, "
                "which could run arbitrary code. tamrin checkpoints hold tensors and plain values only."
            ) from err
        raise


class CheckpointStore:
    """The local file system, as checkpoints use it. Subclass it to inject faults in tests."""

    # -- writing files -------------------------------------------------------------------------------
    def save_torch(self, obj: Any, path: Path) -> None:
        save_torch(obj, path)

    def load_torch(self, path: Path) -> Any:
        return load_torch(path)

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        """model.safetensors and the model's config/preprocessor files."""
        save_model_weights(model, directory)

    def save_model_state(self, model: torch.nn.Module, state: dict[str, torch.Tensor], directory: Path) -> None:
        """model.safetensors from `state` (the full weights of a sharded model) and the model's other files."""
        save_model_state(model, state, directory)

    def save_sharded(self, model: torch.nn.Module, optimizer: Any, directory: Path) -> None:
        """This process's DCP shard of the model, optimizer and gradient state (every process calls it)."""
        save_sharded(model, optimizer, directory)

    def copy_file(self, source: Path, destination: Path) -> None:
        shutil.copy2(source, destination)

    def write_manifest(self, directory: Path, info: dict[str, Any]) -> None:
        """Write `directory/manifest.yaml` (each file's size and sha256, plus `info`): the last file written."""
        write_manifest(directory, info)

    # -- making it durable ---------------------------------------------------------------------------
    def flush_tree(self, directory: Path) -> None:
        """Flush every file and directory below `directory` to disk before a rename publishes it."""
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
        for folder in [directory, *[p for p in directory.rglob("*") if p.is_dir()]]:
            self.flush_directory(folder)

    def flush_directory(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- moving and deleting -------------------------------------------------------------------------
    def rename(self, source: Path, destination: Path) -> None:
        os.rename(source, destination)

    def move(self, source: Path, destination: Path) -> None:
        """Move a checkpoint to another folder; a relative symlink is re-pointed so it still reaches its target."""
        if source.is_symlink() and not os.path.isabs(os.readlink(source)):
            os.symlink(source.resolve(), destination, target_is_directory=True)
            os.unlink(source)
        else:
            self.rename(source, destination)

    def remove_tree(self, path: Path) -> None:
        """Delete a directory; a symlink to one (a checkpoint moved to another disk) is removed as a link only,
        its target left untouched: tamrin never deletes outside the output_dir by following a link."""
        if path.is_symlink():
            os.unlink(path)
        else:
            shutil.rmtree(path)

    def clear_directory(self, path: Path) -> None:
        """Delete a folder of the output_dir; a symlinked one (say `checkpoints/` on another disk) keeps its
        link and loses its contents, so the user's disk layout survives `overwrite_output_dir`."""
        if not path.is_symlink():
            shutil.rmtree(path)
            return
        for entry in Path(path).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                os.unlink(entry)

    def delete_checkpoint(self, path: Path, hidden_name: str) -> None:
        """Delete a checkpoint: hide it first (rename), so a kill leaves a hidden leftover, never half of one."""
        doomed = path.parent / hidden_name
        if doomed.exists():  # the leftover of an earlier killed deletion
            self.remove_tree(doomed)
        self.rename(path, doomed)
        self.remove_tree(doomed)
