"""Pulling from the Hub: a snapshot of a repo, or one file, through huggingface_hub's cache.

HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE work as they do everywhere else. Offline, a
snapshot already in the cache is used as it is; a snapshot that lacks files the caller needs (say,
a pushed run's `train/` state after a plain `Model.load`) is an error that names those files and the
command that fetches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants, get_cached_repo_tree, hf_hub_download, snapshot_download
from huggingface_hub.errors import CachedRepoTreeNotFoundError, IncompleteSnapshotError, LocalEntryNotFoundError
from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name
from huggingface_hub.utils import filter_repo_objects

from tamrin.hub.errors import HubError, hub_errors, user_agent

__all__ = ["download", "download_file"]


def download(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    ignore_patterns: str | Sequence[str] | None = None,
    token: str | None = None,
    repo_type: str = "model",
) -> Path:
    """Download a snapshot of a model (or dataset) repo into the huggingface_hub cache.

    With ``HF_HUB_OFFLINE=1`` (or no network) a snapshot already in the cache is returned without
    contacting the Hub, provided it holds every file the patterns ask for.

    Args:
        repo_id: "user/repo".
        revision: Branch, tag or full commit sha; defaults to the main branch.
        allow_patterns: Only download files matching these glob patterns.
        ignore_patterns: Skip files matching these glob patterns (e.g. a pushed run's `train/*`).
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.
        repo_type: "model" (default) or "dataset" (`Dataset.load` of a Hub dataset repo).

    Returns:
        The local snapshot folder (inside the cache; treat it as read-only).

    Raises:
        HubError: The repo, revision or network is not available, or the cached snapshot is
            incomplete while the Hub cannot be reached (the message says why and what to do).
    """
    allow, ignore = _pattern_list(allow_patterns), _pattern_list(ignore_patterns)
    try:
        with hub_errors("download", repo_id, revision=revision, token=token):
            path = snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=allow,
                ignore_patterns=ignore,
                token=token,
                repo_type=repo_type,
                **user_agent(),
            )
            return Path(path)
    except HubError as err:
        cause = err.__cause__
        if isinstance(cause, LocalEntryNotFoundError):  # the Hub is out of reach: is a partial snapshot cached?
            if isinstance(cause, IncompleteSnapshotError):
                snapshot: Path | None = Path(cause.snapshot_path)
            else:
                snapshot = _cached_snapshot(repo_id, revision, repo_type)
            missing = _missing_files(repo_id, snapshot, allow, ignore, repo_type) if snapshot is not None else []
            if snapshot is not None and missing:
                raise HubError(_incomplete(repo_id, revision, snapshot, missing)) from cause
        raise


def download_file(repo_id: str, filename: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """Download one file of a model repo into the huggingface_hub cache.

    Args:
        repo_id: "user/repo".
        filename: Path of the file inside the repo, e.g. "model_config.yaml".
        revision: Branch, tag or full commit sha; defaults to the main branch.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.

    Returns:
        The local path of the file (inside the cache; treat it as read-only).

    Raises:
        HubError: The repo, revision, file or network is not available (the message says why).
    """
    with hub_errors("download", repo_id, revision=revision, filename=filename, token=token):
        return Path(hf_hub_download(repo_id, filename, revision=revision, token=token, **user_agent()))


def _pattern_list(patterns: str | Sequence[str] | None) -> list[str] | None:
    return [patterns] if isinstance(patterns, str) else (list(patterns) if patterns is not None else None)


def _cached_snapshot(repo_id: str, revision: str | None, repo_type: str = "model") -> Path | None:
    """The cache's snapshot folder of `revision` (a sha, or a branch or tag it has a ref for), if there is one."""
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    commit = revision or constants.DEFAULT_REVISION
    if not REGEX_COMMIT_HASH.fullmatch(commit):
        ref = storage / "refs" / commit
        commit = ref.read_text().strip() if ref.is_file() else ""
    snapshot = storage / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def _missing_files(
    repo_id: str, snapshot: Path, allow: list[str] | None, ignore: list[str] | None, repo_type: str = "model"
) -> list[str]:
    """The files of the cached tree listing that the patterns ask for and the snapshot lacks."""
    try:
        listed = [entry.path for entry in get_cached_repo_tree(repo_id, revision=snapshot.name, repo_type=repo_type)]
    except CachedRepoTreeNotFoundError:  # never listed online: which files are missing is unknown
        return []
    wanted = filter_repo_objects(listed, allow_patterns=allow, ignore_patterns=ignore)
    return [name for name in wanted if not (snapshot / name).exists()]


def _incomplete(repo_id: str, revision: str | None, snapshot: Path, missing: list[str]) -> str:
    """Name the files a cached snapshot lacks, and the command that fetches them."""
    rev = revision or constants.DEFAULT_REVISION
    shown = ", ".join(missing[:8]) + (f", ... ({len(missing) - 8} more)" if len(missing) > 8 else "")
    why = (
        "offline mode is on (HF_HUB_OFFLINE=1)"
        if constants.is_offline_mode()
        else f"the Hub at {constants.ENDPOINT} cannot be reached"
    )
    command = f"hf download {repo_id}" + (f" --revision {rev}" if revision else "")
    return (
        f"The cached snapshot of {repo_id!r} at revision {rev!r} ({snapshot}) is incomplete: it lacks "
        f"{len(missing)} file(s) this needs ({shown}), and {why}. An earlier download fetched only part of "
        f"the repo (e.g. `Model.load` leaves a run's train/ files on the Hub). Fetch them once with network "
        f"access (`{command}`, or the same call without HF_HUB_OFFLINE=1), then retry."
    )
