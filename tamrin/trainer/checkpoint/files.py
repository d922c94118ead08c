"""Crash-safe checkpoint directories: atomic writes, a verifying manifest, listing and rotation.

A checkpoint is written into a hidden temporary directory beside its final place; every file is
flushed to disk, then `manifest.yaml` (each file's size and sha256, the step, versions, world size
and a hash of the trainer config) is written last, and the directory is renamed into place. So a
checkpoint directory exists only when complete, a killed save leaves the previous one untouched,
and a damaged one (truncated or missing file) is detected by its manifest and skipped with a
warning. Every write, rename and deletion goes through a `CheckpointStore` (store.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tamrin.trainer.checkpoint.manifest import MANIFEST, sha256_of
from tamrin.trainer.checkpoint.store import CheckpointStore

__all__ = [
    "MANIFEST",  # re-exported: where a checkpoint lists its files
    "TRAIN_DIR",
    "CheckpointInfo",
    "CheckpointWriteError",
    "checkpoint_write_error",
    "os_error_in",
    "atomic_directory",
    "staging_directory",
    "checkpoint_name",
    "list_checkpoints",
    "latest_valid_checkpoint",
    "verify_checkpoint",
    "read_manifest",
    "rotate_checkpoints",
    "remove_stale_directories",
]

TRAIN_DIR = "train"
STEP_WIDTH = 8
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"
_DELETE_PREFIX = ".del-"  # a checkpoint being deleted by rotation: hidden first, so never seen half-deleted


def checkpoint_name(global_step: int) -> str:
    """The directory name of the checkpoint at `global_step`, zero-padded so names sort by step."""
    return f"{global_step:0{STEP_WIDTH}d}"


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint directory and the step its manifest records (never parsed from the name)."""

    path: Path
    global_step: int


def staging_directory(final: Path) -> Path:
    """The hidden folder beside `final` that `atomic_directory` writes into before renaming it."""
    return Path(final).parent / f"{_TMP_PREFIX}{Path(final).name}"


@contextlib.contextmanager
def atomic_directory(final: Path, info: dict[str, Any], store: CheckpointStore | None = None) -> Iterator[Path]:
    """Yield a temporary directory; on success write its manifest and rename it to `final`.

    If `final` already exists (a step redone after a resume), it is replaced: it is first moved
    aside, so at every moment either the old or the new complete checkpoint is in place. When
    anything fails (an OSError such as a full disk, or an exception in the caller's writes), the
    staging directory is removed and a moved-aside old `final` is put back.

    Args:
        final: where the complete directory must appear.
        info: what the manifest records besides the files (step, versions, world size, ...).
        store: does the writing, renaming and deleting (default: the local file system).
    """
    store = store or CheckpointStore()
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(final)
    if staging.exists():
        store.remove_tree(staging)
    staging.mkdir()
    old = final.parent / f"{_OLD_PREFIX}{final.name}"
    try:
        yield staging
        store.write_manifest(staging, info)
        store.flush_tree(staging)
        if final.exists():
            if old.exists():
                store.remove_tree(old)
            store.rename(final, old)
        store.rename(staging, final)
        store.flush_directory(final.parent)
        if old.exists():
            store.remove_tree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # cleanup after a failure goes around the store
        if old.exists() and not final.exists():  # failed between the two renames: put the old one back
            with contextlib.suppress(OSError):
                store.rename(old, final)
        raise


class CheckpointWriteError(OSError):
    """Saving a checkpoint failed (a full disk, no permission, ...); the previous checkpoint is intact.

    Its `errno` is the original error's; the original OSError is its `__cause__`.
    """


_DISK_FULL_FIX = "Free space on the disk that holds {parent} (or set save_total_limit), or move output_dir elsewhere"
_NOT_WRITABLE_FIX = "Make {parent} writable, or point output_dir at a folder you can write to"
_WRITE_ERRORS = {  # errno: (what happened, how to fix it)
    errno.ENOSPC: ("the disk is full", _DISK_FULL_FIX),
    errno.EDQUOT: ("the disk quota is exceeded", _DISK_FULL_FIX),
    errno.EACCES: ("permission was denied", _NOT_WRITABLE_FIX),
    errno.EPERM: ("the operation is not permitted", _NOT_WRITABLE_FIX),
    errno.EROFS: ("the file system is read-only", "Point output_dir at a writable disk"),
}
_RUST_IO_ERROR = re.compile(r"\(os error (\d+)\)")  # how safetensors reports an I/O error


def os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind `err`: itself, one in its cause/context chain, or one safetensors describes.

    torch.save and safetensors do not raise OSError on a full disk: torch raises a RuntimeError whose
    context is the OSError of the file write, safetensors an error that ends "(os error 28)".
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        err = current
        seen.add(id(err))
        if isinstance(err, OSError):
            return err
        match = _RUST_IO_ERROR.search(str(err))
        if match:
            number = int(match.group(1))
            return OSError(number, os.strerror(number))
        current = err.__cause__ or err.__context__
    return None


def checkpoint_write_error(err: OSError, path: Path, checkpoints_dir: Path | None = None) -> CheckpointWriteError:
    """Turn an OSError raised while saving `path` into an error that says what happened, where, and the fix.

    Args:
        err: the OSError raised inside `atomic_directory` (which already removed the partial files).
        path: the checkpoint (or final save) directory that was being written.
        checkpoints_dir: the run's checkpoints folder, to name the checkpoint a resume would use.
    """
    path = Path(path)
    reason, fix = _WRITE_ERRORS.get(err.errno or 0, (err.strerror or str(err), "Fix the cause above"))
    where = f" (at {err.filename})" if getattr(err, "filename", None) else ""
    latest = list_checkpoints(checkpoints_dir) if checkpoints_dir else []
    previous = (
        f"the previous checkpoint, {latest[-1].path} (step {latest[-1].global_step}), is intact"
        if latest
        else "no earlier checkpoint exists"
    )
    message = (
        f"Could not save the checkpoint {path}: {reason}{where}. The save was abandoned and its partial files "
        f"removed, so nothing half-written is left in {path.parent}; {previous}. "
        f"{fix.format(parent=path.parent)}, then run again with resume_from_checkpoint=True."
    )
    return CheckpointWriteError(err.errno, message) if err.errno is not None else CheckpointWriteError(message)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a checkpoint directory, checked field by field.

    A damaged or hand-edited manifest makes a damaged checkpoint: it is skipped with a warning like a
    bad checksum (in resume, rotation, the fresh-run check and push), never half-trusted.

    Raises:
        ValueError: missing, unreadable, or a field of the wrong shape (the message names it).
    """
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path} is missing (the checkpoint was not completed)")
    try:
        manifest = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means a damaged manifest
        raise ValueError(f"{path} cannot be read: {err}") from err
    if not isinstance(manifest, dict) or "files" not in manifest or "global_step" not in manifest:
        raise ValueError(f"{path} is not a tamrin checkpoint manifest")
    problem = _manifest_problem(manifest)
    if problem:
        raise ValueError(f"{path} is damaged: {problem}")
    return {str(key): value for key, value in manifest.items()}


def _manifest_problem(manifest: dict[Any, Any]) -> str | None:
    """What is wrong with a parsed manifest's step and file table, or None."""
    step = manifest["global_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"`global_step: {step!r}` is not a step number"
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        return f"`files` must list every file of the checkpoint with its size and sha256, got {files!r}"
    for name, entry in files.items():
        if not isinstance(name, str) or name.startswith("/") or ".." in Path(name).parts:
            return f"the file name {name!r} is not a path inside the checkpoint"
        if not isinstance(entry, dict):
            return f"`files[{name!r}]` must be a mapping with `size` and `sha256`, got {entry!r}"
        size, digest = entry.get("size"), entry.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return f"`files[{name!r}].size: {size!r}` is not a byte count"
        if not isinstance(digest, str) or len(digest) != 64:
            return f"`files[{name!r}].sha256: {digest!r}` is not a sha256"
    return None


def verify_checkpoint(directory: Path, *, check_hashes: bool = True) -> str | None:
    """Return what is wrong with a checkpoint (a missing, truncated or altered file), or None.

    The hashes of a checkpoint are read once per process: a recipe resume verifies it before the
    data is built (to restore the preprocessor) and the Trainer again, and a multi-GB checkpoint
    should not be read twice. A file rewritten since (a new inode, size or time) is hashed anew.
    """
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ValueError as err:
        return str(err)
    stamps = []
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            return f"{path} is missing"
        stat = path.stat()
        if stat.st_size != expected["size"]:
            return f"{path} is truncated or altered ({stat.st_size} bytes, expected {expected['size']})"
        stamps.append((name, expected["sha256"], stat.st_ino, stat.st_size, stat.st_mtime_ns))
    if not check_hashes or (key := (str(directory.resolve()), tuple(stamps))) in _VERIFIED:
        return None
    for name, expected in manifest["files"].items():
        if sha256_of(directory / name) != expected["sha256"]:
            return f"{directory / name} is damaged (its sha256 differs from the manifest)"
    _VERIFIED.add(key)
    return None


_VERIFIED: set[tuple[Any, ...]] = set()
"""Checkpoints whose hashes matched in this process: their folder and each file's name, hash, inode, size and time."""


def list_checkpoints(checkpoints_dir: Path) -> list[CheckpointInfo]:
    """Checkpoints with a readable manifest, ordered by the step their manifest records."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return []
    found = []
    for path in checkpoints_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            found.append(CheckpointInfo(path, int(read_manifest(path)["global_step"])))
        except ValueError:
            continue
    return sorted(found, key=lambda info: info.global_step)


def latest_valid_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest checkpoint that verifies; each damaged newer one is named in a warning."""
    checkpoints_dir = Path(checkpoints_dir)
    candidates = (
        [p for p in checkpoints_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if checkpoints_dir.is_dir()
        else []
    )
    valid = {info.path for info in list_checkpoints(checkpoints_dir)}
    for path in sorted(set(candidates) - valid):
        warnings.warn(f"Skipping checkpoint {path}: {verify_checkpoint(path)}.", stacklevel=2)
    for info in reversed(list_checkpoints(checkpoints_dir)):
        problem = verify_checkpoint(info.path)
        if problem is None:
            return info.path
        warnings.warn(f"Skipping damaged checkpoint {info.path}: {problem}; trying the previous one.", stacklevel=2)
    return None


def rotate_checkpoints(
    checkpoints_dir: Path,
    limit: int | None,
    keep: Iterable[Path | str | None] = (),
    store: CheckpointStore | None = None,
) -> list[Path]:
    """Delete the oldest checkpoints beyond `limit`, never the newest one nor those in `keep`.

    Returns:
        The deleted directories.
    """
    if limit is None:
        return []
    checkpoints = list_checkpoints(checkpoints_dir)
    protected = {Path(p).resolve() for p in keep if p}
    if checkpoints:
        protected.add(checkpoints[-1].path.resolve())
    removable = [info.path for info in checkpoints if info.path.resolve() not in protected]
    excess = len(checkpoints) - limit
    deleted = removable[: max(0, excess)]
    store = store or CheckpointStore()
    for path in deleted:
        store.delete_checkpoint(path, f"{_DELETE_PREFIX}{path.name}")
    return deleted


def remove_stale_directories(checkpoints_dir: Path, store: CheckpointStore | None = None) -> None:
    """Remove leftovers of killed saves and deletions (hidden temporary, moved-aside, doomed directories)."""
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return
    store = store or CheckpointStore()
    for path in checkpoints_dir.iterdir():
        if (path.is_dir() or path.is_symlink()) and path.name.startswith((_TMP_PREFIX, _OLD_PREFIX, _DELETE_PREFIX)):
            final = checkpoints_dir / path.name.split("-", 1)[1]
            if path.name.startswith(_OLD_PREFIX) and not final.exists():
                store.rename(path, final)  # killed between the two renames: the old one is the complete one
            else:
                store.remove_tree(path)
