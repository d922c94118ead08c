"""Every Hub failure becomes one `HubError` whose message says what happened and what to do.

`hub_errors` wraps a block of huggingface_hub calls; `explain` turns the error that left it into one
message. Messages name the repo, the revision and the file, never a token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
from huggingface_hub import HfApi, constants
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

from tamrin.version import __version__

__all__ = ["HubError", "LOGIN_HINT", "explain", "hub_errors", "user_agent"]

LOGIN_HINT = "run `hf auth login` or set HF_TOKEN"

# Errors of huggingface_hub (all HfHubHTTPError), of its cache (EntryNotFoundError) and of the network
# (httpx2, OSError: OfflineModeIsEnabled is a ConnectionError). Anything else is a bug, not a Hub failure.
TRANSLATED = (HfHubHTTPError, EntryNotFoundError, HFValidationError, httpx2.HTTPError, OSError)


class HubError(RuntimeError):
    """A Hub operation failed; the message says what happened and what to do about it."""


def user_agent() -> dict[str, Any]:
    """The library name and version huggingface_hub puts in its User-Agent header."""
    return {"library_name": "tamrin", "library_version": __version__}


@contextlib.contextmanager
def hub_errors(
    action: str,
    repo_id: str,
    *,
    revision: str | None = None,
    filename: str | None = None,
    token: str | None = None,
) -> Iterator[None]:
    """Turn any Hub failure inside the block into one `HubError` (``raise ... from err``).

    A "repository not found" answer to a download is checked once more against the repo's main
    branch: some servers (mirrors such as olah) answer a missing revision or file that way, and the
    user needs to know which of the three is missing.
    """
    try:
        yield
    except TRANSLATED as err:
        probe = _NotFoundProbe(repo_id, revision, filename, token) if action == "download" else None
        raise HubError(explain(err, action, repo_id, revision, filename, probe)) from err


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain(
    err: BaseException,
    action: str,
    repo_id: str,
    revision: str | None,
    filename: str | None,
    probe: Callable[[], str | None] | None = None,
) -> str:
    """One message for one failure: what happened, then what to do."""
    chain = _chain(err)

    def first(kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
        return next((e for e in chain if isinstance(e, kind)), None)

    where, rev = f"{repo_id!r} on {constants.ENDPOINT}", revision or constants.DEFAULT_REVISION
    what = f"{filename!r} of {repo_id!r}" if filename else repr(repo_id)
    if isinstance(err, HFValidationError):
        return f"{repo_id!r} is not a valid Hub repo id ({err}). Use 'user/repo' with letters, digits, '-', '_', '.'."
    if first(RevisionNotFoundError):
        return _revision_not_found(rev, where)
    if first(RemoteEntryNotFoundError):
        return _file_not_found(filename, rev, where)
    if first(GatedRepoError):
        return f"Repository {where} is gated: accept its conditions on the Hub, then use that account's token."
    if first(RepositoryNotFoundError):
        missing = probe() if probe is not None else None
        if missing == "revision":
            return _revision_not_found(rev, where)
        if missing == "file":
            return _file_not_found(filename, rev, where)
        local = "" if action != "download" else f" (no local file or folder named {repo_id!r} exists either)"
        private = f"a private repo also needs a token: {LOGIN_HINT}"
        return f"Repository {where} not found, or you have no access to it{local}. Check the name; {private}."
    http = first(HfHubHTTPError)
    if http is not None and http.response is not None:
        return _explain_status(http, action, where)
    incomplete = first(IncompleteSnapshotError)
    if incomplete is not None:
        return str(incomplete)  # `download` words it (the missing files and how to fetch them)
    offline = constants.is_offline_mode() or first(OfflineModeIsEnabled) is not None
    if offline and action == "download":
        return (
            f"Offline mode is on (HF_HUB_OFFLINE=1) and {what} at revision {rev!r} is not in the local cache "
            f"({constants.HF_HUB_CACHE}). Download it once with network access, or unset HF_HUB_OFFLINE."
        )
    if offline:
        return f"Cannot {action} {where}: offline mode is on (HF_HUB_OFFLINE=1). Unset it to reach the Hub."
    if first(httpx2.TransportError) and action != "download":
        return f"Cannot reach the Hub at {constants.ENDPOINT} to {action} {repo_id!r} (no network?). Try again later."
    if first((httpx2.TransportError, LocalEntryNotFoundError)):
        return (
            f"Cannot reach the Hub at {constants.ENDPOINT} to {action} {what} (no network?), and it is not in the "
            "local cache. Check your connection and HF_ENDPOINT; to work without network, download once and "
            "then set HF_HUB_OFFLINE=1 to use the warm cache."
        )
    return f"Could not {action} {where} ({type(err).__name__}: {err})."


def _revision_not_found(rev: str, where: str) -> str:
    return (
        f"Revision {rev!r} not found in {where} (the repository exists). Use an existing branch, tag, "
        "refs/pr/N or full commit sha."
    )


def _file_not_found(filename: str | None, rev: str, where: str) -> str:
    return f"File {filename!r} not found in {where} at revision {rev!r}. Check the name and the revision."


def _explain_status(http: HfHubHTTPError, action: str, where: str) -> str:
    """The message for an HTTP error answer that names no repo, revision or file."""
    status = http.response.status_code
    server_message = (http.server_message or "").strip()
    said = f" The Hub said: {server_message}" if server_message else ""
    if status == 401:
        return (
            f"Hub authentication failed while trying to {action} {where} (no token was sent, or the Hub "
            f"refused it): {LOGIN_HINT} with a valid token."
        )
    if status == 403:
        return (
            f"Permission denied: your token may not {action} {where}. Use a token with write access to this "
            f"repo (fine-grained tokens need it granted), or a namespace you own.{said}"
        )
    if status == 429:
        return f"The Hub rate-limited the request to {action} {where} (HTTP 429). Wait a little and try again."
    if status >= 500:
        return f"The Hub had a server error (HTTP {status}) while trying to {action} {where}. Try again later."
    return f"Could not {action} {where}: the Hub answered HTTP {status} ({http.server_message or http})."


class _NotFoundProbe:
    """Which of repo, revision or file a "repository not found" answer really lacks (asked only on failure).

    Returns "revision" when the repo answers at its main branch but not at `revision`, "file" when the
    revision answers but does not list `filename`, and None when the repo itself is not reachable (or
    the probe cannot tell: then the original message stands).
    """

    def __init__(self, repo_id: str, revision: str | None, filename: str | None, token: str | None) -> None:
        self.repo_id, self.revision, self.filename, self.token = repo_id, revision, filename, token

    def __call__(self) -> str | None:
        if constants.is_offline_mode():
            return None
        api = HfApi(token=self.token, **user_agent())
        main = constants.DEFAULT_REVISION  # named: some mirrors answer only /revision/{rev}
        try:
            info = api.model_info(self.repo_id, revision=self.revision or main)
        except TRANSLATED:
            if self.revision in (None, main):
                return None
            try:
                api.model_info(self.repo_id, revision=main)
            except TRANSLATED:
                return None  # the repo itself is missing or hidden: the original message is right
            return "revision"
        files = {sibling.rfilename for sibling in info.siblings or []}
        return "file" if self.filename is not None and self.filename not in files else None
