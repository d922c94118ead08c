"""Pushing to the Hub: one folder becomes one commit, and nothing else in the repo changes.

What a push does, exactly:

- **uploads** every file under the folder, at the same relative path (``.git/`` and
  ``.cache/huggingface/`` are skipped); files whose content the repo already holds are left out of
  the commit by huggingface_hub (and large files it already stores are not sent again);
- **replaces** the repo's files at those paths;
- **deletes** only the repo files that match `delete_patterns` (huggingface_hub's own option) and
  that the folder does not hold; ``.gitattributes`` is never deleted. Without `delete_patterns`
  nothing is deleted;
- **never follows a symlink out of the folder**: a link to a file inside the folder is uploaded as
  that file's content; a link to anything outside it, to a folder, or to nothing stops the push
  before any request, with a message that names each link.

The commit is made on top of the head the push looked at (`parent_commit`): when someone else
commits to the same branch in between, the Hub refuses it (HTTP 412) and the message says what
changed; nothing is committed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import GitCommitInfo
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

from tamrin.hub.errors import TRANSLATED, HubError, hub_errors, user_agent

__all__ = ["Commit", "local_files", "upload_folder"]

_NEVER_DELETED = ".gitattributes"
_FAILED_LFS_UPLOAD = re.compile(r"Error while uploading '(?P<path>.+)' to the Hub\.")


class Commit(str):
    """The sha of a commit a push made (the string itself), with where to see it.

    Attributes:
        url: The commit's page on the Hub.
        pr_url: The pull request's page when the push opened one (`create_pr=True`), else None.
        pr_revision: The pull request's ref, e.g. "refs/pr/1" (download from it with `revision=`), or None.
    """

    url: str
    pr_url: str | None
    pr_revision: str | None

    def __new__(cls, sha: str, url: str = "", pr_url: str | None = None, pr_revision: str | None = None) -> Commit:
        commit = super().__new__(cls, sha)
        commit.url, commit.pr_url, commit.pr_revision = url, pr_url, pr_revision
        return commit


def local_files(folder: str | os.PathLike[str], action: str = "push") -> dict[str, Path]:
    """The files a push of `folder` uploads: repo path -> local path, sorted.

    Symlinks are never followed out of the folder (see the module docstring): a link to a file inside
    it is uploaded as that file; any other link is refused.

    Args:
        folder: The folder to push.
        action: The verb for the error message, e.g. "upload 'x' to 'user/repo'".

    Raises:
        HubError: The folder holds links that point outside it, to a folder or to nothing (all named).
    """
    root = Path(folder)
    base = root.resolve()
    files: dict[str, Path] = {}
    refused: list[str] = []
    for directory, folders, names in os.walk(root):  # followlinks=False: a linked folder is listed, never entered
        for name in sorted(folders + names):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if not list(filter_repo_objects([relative], ignore_patterns=DEFAULT_IGNORE_PATTERNS)):
                continue
            if path.is_symlink():
                target = path.resolve()
                if target.is_file() and target.is_relative_to(base):
                    files[relative] = path
                else:
                    refused.append(f"{relative} -> {os.readlink(path)}")
            elif name in names:
                files[relative] = path
    if refused:
        raise HubError(
            f"Cannot {action}: {root} holds symlinks that point outside it, to a folder or to nothing, and a push "
            f"never follows those: {'; '.join(refused)}. Replace each with a copy of the file it should upload, "
            "or remove it."
        )
    return dict(sorted(files.items()))


def upload_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    delete_patterns: str | Sequence[str] | None = None,
    repo_type: str = "model",
) -> Commit:
    """Upload every file under `folder` to a model (or dataset) repo, in one commit that deletes nothing unasked.

    The repo is created if needed, and so is the branch `revision`. Files that did not change are
    left out of the commit by huggingface_hub; when nothing changed at all, no commit is made and the
    current head is returned.

    Args:
        folder: Local folder; its layout becomes the repo's layout (``.git`` and
            ``.cache/huggingface`` are skipped). Symlinks out of it are refused (see `local_files`).
        repo_id: Target repo, "user/repo" or "org/repo".
        commit_message: Commit title; defaults to "Upload with tamrin".
        private: Visibility of a repo this push creates: True private, False public, None (default)
            the namespace's default (an organisation may make new repos private). An existing repo
            keeps its visibility.
        revision: Branch to commit to (created from main if missing); defaults to main.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.
        create_pr: Open a pull request against `revision` with this commit instead of committing to it.
        delete_patterns: Glob patterns (huggingface_hub's syntax) of repo files to delete in the same
            commit, e.g. ``"train/*"`` or ``"*"`` for "the revision holds exactly this folder".
            Files the folder holds and ``.gitattributes`` are never deleted. Default: delete nothing.
        repo_type: "model" (default) or "dataset" (`Dataset.push_to_hub`).

    Returns:
        The sha of the commit that holds the files (a `Commit`: also its url, and the pull request's).

    Raises:
        HubError: The folder is missing, empty or holds symlinks out of it; the Hub refused or failed;
            a large-file transfer failed; or the branch moved while pushing (the message says why).
    """
    root = Path(folder)
    if not root.is_dir():
        raise HubError(f"Cannot upload {str(root)!r} to {repo_id!r}: it is not a folder.")
    files = local_files(root, f"upload {str(root)!r} to {repo_id!r}")
    if not files:
        raise HubError(f"Cannot upload {str(root)!r} to {repo_id!r}: the folder holds no files.")
    with hub_errors("upload to", repo_id, revision=revision, token=token):
        validate_repo_id(repo_id)
        api = HfApi(token=token, **user_agent())
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        branch = revision or constants.DEFAULT_REVISION
        if branch != constants.DEFAULT_REVISION and not branch.startswith("refs/pr/"):
            api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type=repo_type)
        head = api.repo_info(repo_id, revision=branch, repo_type=repo_type).sha
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()
        ]
        doomed = _doomed(api, repo_id, head, files, delete_patterns, repo_type)
        operations += [CommitOperationDelete(name) for name in doomed]
        # create_commit, not HfApi.upload_folder: with hf_xet installed the latter may split a folder
        # into several commits, and a tamrin push must be a single commit.
        try:
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=commit_message or "Upload with tamrin",
                revision=revision,
                create_pr=create_pr,
                parent_commit=head,
                repo_type=repo_type,
            )
        except HfHubHTTPError as err:
            if err.response is not None and err.response.status_code == 412:
                raise HubError(_race(api, repo_id, branch, head)) from err
            raise
        except (RuntimeError, ValueError) as err:
            translated = _transfer_error(err, repo_id)
            if translated is None:
                raise
            raise translated from err
        return Commit(info.oid, info.commit_url, info.pr_url, info.pr_revision)


def _doomed(
    api: HfApi,
    repo_id: str,
    head: str | None,
    files: dict[str, Path],
    patterns: str | Sequence[str] | None,
    repo_type: str = "model",
) -> list[str]:
    """The repo files at `head` that `patterns` ask to delete (never one the push uploads, never .gitattributes)."""
    if not patterns:
        return []
    existing = api.list_repo_files(repo_id, revision=head, repo_type=repo_type)
    matched = filter_repo_objects(existing, allow_patterns=[patterns] if isinstance(patterns, str) else list(patterns))
    return sorted(name for name in matched if name not in files and name != _NEVER_DELETED)


def _transfer_error(err: RuntimeError | ValueError, repo_id: str) -> HubError | None:
    """A failed large-file (LFS) transfer as a HubError naming the file; None for any other error (a bug)."""
    failed = _FAILED_LFS_UPLOAD.fullmatch(str(err)) if isinstance(err, RuntimeError) else None
    if failed is not None and isinstance(err.__cause__, TRANSLATED):
        cause = err.__cause__
        if isinstance(cause, HfHubHTTPError) and cause.response is not None:
            said = f"HTTP {cause.response.status_code}: {cause.server_message or cause.response.reason_phrase}"
        else:
            said = f"{type(cause).__name__}: {cause}"
        said = " ".join(said.split())  # one line, whatever the server wrote
        return HubError(
            f"Uploading {failed['path']!r} to {repo_id!r} failed during its large-file (LFS) transfer ({said}). "
            "Nothing was committed: the repo is unchanged. Try again; files already stored are not sent twice."
        )
    if isinstance(err, ValueError) and str(err).startswith("LFS batch API returned errors"):
        return HubError(f"The Hub refused the large-file (LFS) upload to {repo_id!r}: {err}. Nothing was committed.")
    return None


def _race(api: HfApi, repo_id: str, branch: str, head: str | None) -> str:
    """What changed on `branch` between the head a push started from and now."""
    start = f"Nothing was committed: {branch!r} of {repo_id!r} moved while this push was being prepared"
    retry = "Push again to commit on top of it (a push deletes nothing it was not asked to)."
    try:
        now = api.repo_info(repo_id, revision=branch).sha
        new = _commits_since(api, repo_id, branch, head)
        before, after = _tree(api, repo_id, head), _tree(api, repo_id, now)
    except TRANSLATED as err:  # the race itself is the error; say it without the details
        return f"{start} (what changed could not be listed: {type(err).__name__}). {retry}"
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    titles = "; ".join(f"{c.commit_id[:7]} {c.title!r}" for c in new[:5]) or "unknown commits"
    files = ", ".join(changed[:10]) + (f", ... ({len(changed) - 10} more)" if len(changed) > 10 else "")
    return (
        f"{start}: it was at {str(head)[:7]} and is now at {str(now)[:7]} after {len(new)} new commit(s) "
        f"({titles}) that changed {files or 'no files'}. {retry}"
    )


def _commits_since(api: HfApi, repo_id: str, branch: str, head: str | None) -> list[GitCommitInfo]:
    commits = []
    for commit in api.list_repo_commits(repo_id, revision=branch):
        if commit.commit_id == head:
            break
        commits.append(commit)
    return commits


def _tree(api: HfApi, repo_id: str, revision: str | None) -> dict[str, str]:
    entries = api.list_repo_tree(repo_id, revision=revision, recursive=True)
    return {entry.path: getattr(entry, "blob_id", "") for entry in entries if hasattr(entry, "blob_id")}


def upload_saved(
    write: Callable[[Path], object],
    repo_id: str,
    *,
    commit_message: str,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    repo_type: str = "model",
) -> Commit:
    """Let `write(folder)` save an object's files into a temporary folder, and upload them in one commit.

    What `Model.push_to_hub`, `Config.push_to_hub` and `Dataset.push_to_hub` share; the options mean
    what they mean in `upload_folder`, and nothing in the repo is deleted.
    """
    with tempfile.TemporaryDirectory(prefix="tamrin-push-") as staging:
        write(Path(staging))
        return upload_folder(
            staging,
            repo_id,
            commit_message=commit_message,
            private=private,
            revision=revision,
            token=token,
            create_pr=create_pr,
            repo_type=repo_type,
        )
