"""The one module of tamrin that talks to the Hugging Face Hub (through `huggingface_hub`).

Uploads go in one commit; downloads go through huggingface_hub's cache, so HF_HOME, HF_ENDPOINT,
HF_TOKEN and HF_HUB_OFFLINE work as they do everywhere else. Every failure leaves this module as a
`HubError` whose message says what happened and what to do, with the original error as its cause.

Tokens: every function takes ``token=None`` and passes it through untouched, so that huggingface_hub
finds HF_TOKEN or the stored login itself. No token is ever logged, formatted into a message or written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCardData,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

__all__ = ["HubError", "download", "download_file", "is_repo_id", "render_model_card", "upload_folder"]

_LOGIN_HINT = "run `hf auth login` or set HF_TOKEN"


class HubError(RuntimeError):
    """A Hub operation failed; the message says what happened and what to do about it."""


def is_repo_id(name: str) -> bool:
    """Whether `name` reads as a Hub repo id ("user/repo" or "repo") rather than a local path.

    Args:
        name: A string a user gave where a path or a repo id is accepted.

    Returns:
        True when `name` is a valid repo id (huggingface_hub's rules) and no file or folder of that
        name exists locally; an existing local path always wins.
    """
    if not isinstance(name, str) or os.path.exists(os.path.expanduser(name)):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def upload_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    replace: bool = False,
) -> str:
    """Upload every file under `folder` to a model repo, in one commit.

    The repo is created if needed (an existing repo keeps its visibility), and so is the branch
    `revision`. Files that did not change are left out of the commit by huggingface_hub; when nothing
    changed at all, no commit is made and the current head is returned.

    Args:
        folder: Local folder; its layout becomes the repo's layout (``.git`` and
            ``.cache/huggingface`` are skipped).
        repo_id: Target repo, "user/repo" or "org/repo".
        commit_message: Commit title; defaults to "Upload with tamrin".
        private: Create the repo as private (only when it does not exist yet).
        revision: Branch to commit to; defaults to the main branch.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.
        replace: Also delete, in the same commit, the repo's files that `folder` does not hold
            (``.gitattributes`` stays), so the revision holds exactly this folder.

    Returns:
        The sha of the commit that holds the files.

    Raises:
        HubError: The folder is missing or empty, or the Hub refused or failed (the message says why).
    """
    root = Path(folder)
    if not root.is_dir():
        raise HubError(f"Cannot upload {str(root)!r} to {repo_id!r}: it is not a folder.")
    files = {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*")) if path.is_file()}
    kept = list(filter_repo_objects(files, ignore_patterns=DEFAULT_IGNORE_PATTERNS))
    if not kept:
        raise HubError(f"Cannot upload {str(root)!r} to {repo_id!r}: the folder holds no files.")
    with _hub_errors("upload to", repo_id, revision=revision):
        validate_repo_id(repo_id)
        api = HfApi(token=token, **_user_agent())
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and revision != constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        # create_commit, not HfApi.upload_folder: with hf_xet installed the latter may split a folder
        # into several commits, and a tamrin push must be a single commit.
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(files[name])) for name in kept]
        if replace:
            existing = api.list_repo_files(repo_id, revision=revision)
            stale = sorted(set(existing) - set(kept) - {".gitattributes"})
            operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
        info = api.create_commit(
            repo_id, operations, commit_message=commit_message or "Upload with tamrin", revision=revision
        )
        return info.oid


def download(
    repo_id: str,
    *,
    revision: str | None = None,
    allow_patterns: str | Sequence[str] | None = None,
    ignore_patterns: str | Sequence[str] | None = None,
    token: str | None = None,
) -> Path:
    """Download a snapshot of a model repo into the huggingface_hub cache.

    With ``HF_HUB_OFFLINE=1`` (or no network) a snapshot already in the cache is returned without
    contacting the Hub.

    Args:
        repo_id: "user/repo".
        revision: Branch, tag or full commit sha; defaults to the main branch.
        allow_patterns: Only download files matching these glob patterns.
        ignore_patterns: Skip files matching these glob patterns (e.g. a pushed run's `train/*`).
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.

    Returns:
        The local snapshot folder (inside the cache; treat it as read-only).

    Raises:
        HubError: The repo, revision or network is not available (the message says why).
    """
    with _hub_errors("download", repo_id, revision=revision):
        path = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=_pattern_list(allow_patterns),
            ignore_patterns=_pattern_list(ignore_patterns),
            token=token,
            **_user_agent(),
        )
        return Path(path)


def _pattern_list(patterns: str | Sequence[str] | None) -> list[str] | None:
    return [patterns] if isinstance(patterns, str) else (list(patterns) if patterns is not None else None)


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
    with _hub_errors("download", repo_id, revision=revision, filename=filename):
        return Path(hf_hub_download(repo_id, filename, revision=revision, token=token, **_user_agent()))


def render_model_card(
    *,
    repo_id: str,
    task: str,
    model_name: str,
    best_metrics: Mapping[str, float],
    training_settings: Mapping[str, Any],
    library_version: str,
) -> str:
    """Render a README.md (model card) for a model trained with tamrin.

    Args:
        repo_id: The repo the card is for (used in the loading snippet).
        task: The task, e.g. "text_classification"; it becomes a tag.
        model_name: Title of the card.
        best_metrics: Best evaluation metrics, name to value, in display order.
        training_settings: Main training settings, name to value, in display order.
        library_version: The tamrin version that trained the model.

    Returns:
        The card: YAML front matter (library_name, tags), the metrics and settings tables and a
        snippet that loads the model.
    """
    metadata = ModelCardData(library_name="tamrin", tags=list(dict.fromkeys(["tamrin", task])))
    lines = [f"---\n{metadata.to_yaml()}\n---", "", f"# {model_name}", ""]
    lines += [f"This model was trained with tamrin {library_version} for the `{task}` task.", ""]
    lines += ["## Evaluation results (best)", ""]
    if best_metrics:
        lines += _table(("Metric", "Value"), [(name, f"{float(value):.4f}") for name, value in best_metrics.items()])
    else:
        lines.append("No evaluation was run.")
    lines += ["", "## Training settings", ""]
    lines += _table(("Setting", "Value"), [(name, _format_value(value)) for name, value in training_settings.items()])
    lines += ["", "## How to load", "", "```python", "from tamrin.models import Model", ""]
    lines += [f'model = Model.load("{repo_id}")', "```", ""]
    return "\n".join(lines)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return [f"| {header[0]} | {header[1]} |", "| --- | --- |"] + [f"| {cell(k)} | {cell(v)} |" for k, v in rows]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) for item in value) or "-"
    return "-" if value is None else str(value)


def _user_agent() -> dict[str, Any]:
    # Read lazily: tamrin.configs imports this module while the tamrin package is still initialising.
    return {"library_name": "tamrin", "library_version": getattr(sys.modules.get("tamrin"), "__version__", None)}


# Errors of huggingface_hub (all HfHubHTTPError), of its cache (EntryNotFoundError) and of the network
# (httpx2, OSError: OfflineModeIsEnabled is a ConnectionError). Anything else is a bug, not a Hub failure.
_TRANSLATED = (HfHubHTTPError, EntryNotFoundError, HFValidationError, httpx2.HTTPError, OSError)


@contextlib.contextmanager
def _hub_errors(
    action: str, repo_id: str, *, revision: str | None = None, filename: str | None = None
) -> Iterator[None]:
    """Turn any Hub failure inside the block into one `HubError` (``raise ... from err``)."""
    try:
        yield
    except _TRANSLATED as err:
        raise HubError(_explain(err, action, repo_id, revision, filename)) from err


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _explain(err: BaseException, action: str, repo_id: str, revision: str | None, filename: str | None) -> str:
    """One message for one failure: what happened, then what to do."""
    chain = _chain(err)

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
        return next((e for e in chain if isinstance(e, kind)), None)

    where, rev = f"{repo_id!r} on {constants.ENDPOINT}", revision or constants.DEFAULT_REVISION
    what = f"{filename!r} of {repo_id!r}" if filename else repr(repo_id)
    private = f"a private repo also needs a token: {_LOGIN_HINT}"
    if isinstance(err, HFValidationError):
        return f"{repo_id!r} is not a valid Hub repo id ({err}). Use 'user/repo' with letters, digits, '-', '_', '.'."
    if first(RevisionNotFoundError):
        return f"Revision {rev!r} not found in {where}. Use an existing branch, tag or full commit sha; {private}."
    if first(RemoteEntryNotFoundError):
        return f"File {filename!r} not found in {where} at revision {rev!r}. Check the name and revision; {private}."
    if first(GatedRepoError):
        return f"Repository {where} is gated: accept its conditions on the Hub, then use that account's token."
    if first(RepositoryNotFoundError):
        return f"Repository {where} not found, or you have no access to it. Check the name; {private}."
    http = first(HfHubHTTPError)
    if http is not None and http.response is not None:
        return _explain_status(http, action, where)
    offline = constants.is_offline_mode() or first(OfflineModeIsEnabled) is not None
    if offline and action == "download":
        return (
            f"Offline mode is on (HF_HUB_OFFLINE=1) and {what} at revision {rev!r} is not in the local cache "
            f"({constants.HF_HUB_CACHE}). Download it once with network access, or unset HF_HUB_OFFLINE."
        )
    if offline:
        return f"Cannot {action} {where}: offline mode is on (HF_HUB_OFFLINE=1). Unset it to reach the Hub."
    if first(IncompleteSnapshotError):
        return f"The cached snapshot of {what} is incomplete and the Hub is unreachable. Retry with network access."
    if first(httpx2.TransportError) and action != "download":
        return f"Cannot reach the Hub at {constants.ENDPOINT} to {action} {repo_id!r} (no network?). Try again later."
    if first((httpx2.TransportError, LocalEntryNotFoundError)):
        return (
            f"Cannot reach the Hub at {constants.ENDPOINT} to {action} {what} (no network?), and it is not in the "
            "local cache. Check your connection and HF_ENDPOINT; to work without network, download once and "
            "then set HF_HUB_OFFLINE=1 to use the warm cache."
        )
    return f"Could not {action} {where} ({type(err).__name__}: {err})."


def _explain_status(http: HfHubHTTPError, action: str, where: str) -> str:
    """The message for an HTTP error answer that names no repo, revision or file."""
    status = http.response.status_code
    if status == 401:
        return (
            f"Hub authentication failed while trying to {action} {where} (no token was sent, or the Hub "
            f"refused it): {_LOGIN_HINT} with a valid token."
        )
    if status == 403:
        return (
            f"Permission denied: your token may not {action} {where}. Use a token with write access to this "
            "repo (fine-grained tokens need it granted), or a namespace you own."
        )
    if status == 429:
        return f"The Hub rate-limited the request to {action} {where} (HTTP 429). Wait a little and try again."
    if status >= 500:
        return f"The Hub had a server error (HTTP {status}) while trying to {action} {where}. Try again later."
    return f"Could not {action} {where}: the Hub answered HTTP {status} ({http.server_message or http})."
