"""A small Hugging Face Hub look-alike on 127.0.0.1, for testing the real `huggingface_hub` client.

It answers the part of the Hub HTTP API that `tamrin.hub` (through `huggingface_hub` 2.x) uses, along
the paths real pushes and pulls take (tests/hub_server_routes.py routes the requests):

=========================================================  ===========================================
``POST /api/repos/create``                                 ``create_repo`` (visibility, ``exist_ok``)
``POST /api/validate-yaml``                                README.md metadata check in ``create_commit``
``POST /api/{type}s/{repo}/preupload/{rev}``               upload modes: ``lfs`` or ``regular``, as the Hub
``POST /[{type}s/]{repo}.git/info/lfs/objects/batch``      git-lfs batch API: upload actions (basic or
                                                           multipart), none for content already stored
``PUT  http://localhost:PORT/__storage__/...``             the signed storage URLs the batch hands out
``POST /[{type}s/]{repo}.git/info/lfs/objects/verify``     the batch's verify action
``POST /api/{type}s/{repo}/commit/{rev}[?create_pr=1]``    ``create_commit`` (ndjson; file, lfsFile,
                                                           deleted*; ``parentCommit``: 412 on a race;
                                                           ``create_pr`` opens ``refs/pr/N``)
``POST /api/{type}s/{repo}/branch/{branch}``               ``create_branch``
``POST /api/{type}s/{repo}/tag/{rev}``                     ``create_tag``
``GET  /api/{type}s/{repo}/refs``                          ``list_repo_refs`` (branches, tags, PRs)
``GET  /api/{type}s/{repo}[/revision/{rev}]``              ``repo_info`` / ``model_info`` (siblings, sha)
``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``           ``list_repo_tree`` / ``list_repo_files``
``GET  /api/{type}s/{repo}/commits/{rev}``                 ``list_repo_commits``
``GET  /api/whoami-v2``                                    ``whoami``
``HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}``        a regular file: its bytes; an LFS file: 302 to
                                                           storage with ``X-Linked-Etag``/``X-Linked-Size``
=========================================================  ===========================================

Uploads: like the Hub, ``preupload`` answers ``lfs`` for a file that the repo's ``.gitattributes``
marks as LFS (``*.safetensors``, ``*.pt``, ...), that looks binary (a NUL byte in its sample) or that
is 10 MiB or more; ``regular`` files travel inline (base64) in the commit payload. ``lfs`` files go
through the batch API: the server answers no action for content it already stores (so an unchanged
file is never sent twice) and a multipart upload for files of `multipart_threshold` bytes or more.
Xet: with `hf_xet` installed, huggingface_hub 2.x sends ``lfs`` files through Xet instead (a
``/xet-write-token`` request, then a CAS server this look-alike does not implement), so
`patch_hub_client` sets ``HF_HUB_DISABLE_XET``: the client takes the LFS path, exactly as it does
without `hf_xet`. Downloads carry no ``X-Xet-Hash`` header, so they are plain HTTP too.

Errors mirror the real Hub, so the client raises its usual classes: ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) and ``X-Error-Message`` headers plus a ``{"error": ...}`` body.
Like the Hub, an anonymous request for a missing or hidden repo gets 401 and an authenticated one 404,
both ``RepoNotFound`` (`RepositoryNotFoundError`); a token the server does not accept gets 401 "Invalid
credentials in Authorization header"; writing where the token may not gets 403.

Auth, three modes:

- ``tokens={"hf_x": HubToken("alice", orgs=("team",), role="write"), ...}``: the Hub's rules. Only these
  tokens are accepted; a token writes (creates repos, commits, branches, tags) only in its user's and
  its organisations' namespaces, and only with ``role="write"``; a private repo is readable only by
  members of its namespace.
- ``valid_tokens={...}``: only those tokens are accepted, and each may read and write every repo.
- neither (default): any bearer token is accepted and is its own user; a repo belongs to the token that
  created it (a private one is readable only with that token).

Storage: blobs are content-addressed (sha256) under ``tmp_dir``; commits hold a path -> blob map, so
every commit stays downloadable by its sha. Revisions: branches, tags, ``refs/pr/N`` and full shas.

Counters for tests: `requests`, `lfs_uploads` (one ``(sha256, size)`` per object stored through the
LFS path) and `inline_uploads` (the paths committed inline). `fail_lfs_uploads` makes the storage
refuse uploads; `before_commit` runs just before a commit is applied (e.g. `put_files`, to race it).

The ``hub_server`` pytest fixture starts a server and points the *already imported* client at it; see
`patch_hub_client` for why environment variables alone are not enough. tests/conftest.py makes the
fixture available to every test module (and this folder importable), so a test module only imports
what it names::

    from hub_server import HubServer, set_hub_offline

    def test_push(hub_server: HubServer) -> None: ...

Note: `hf_hub_download` (not `snapshot_download`, not uploads) retries 5xx answers with backoff
(about 23 s in all) before giving up, so test 5xx handling through `download` / `upload_folder`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hub_server_repos import HubToken, RepoStore, ServerCommit, git_blob_oid
from hub_server_routes import HubHTTPError, HubRequestHandler

__all__ = ["HubServer", "HubToken", "ServerCommit", "git_blob_oid", "patch_hub_client", "set_hub_offline"]


class HubServer(RepoStore):
    """A Hub-compatible HTTP server on 127.0.0.1 with its storage in `tmp_dir`.

    Args:
        tmp_dir: Folder for the blobs (created if missing).
        tokens: The Hub's rules (see the module docstring): token -> `HubToken`.
        valid_tokens: Tokens the server accepts; each may read and write every repo.
        multipart_threshold: LFS objects of this many bytes or more are uploaded in parts.
        multipart_chunk_size: The size of each part.

    Attributes:
        fail_with: Set to an HTTP status (e.g. 500 or 503) to make every request fail with it;
            ``None`` (default) answers normally.
        fail_lfs_uploads: Set to an HTTP status to make the storage refuse every upload.
        before_commit: Called (under the server lock) just before a commit is applied.
        requests: ``(method, path)`` of every request received, in order.
        lfs_uploads: ``(sha256, size)`` of every object stored through the LFS path, in order.
        inline_uploads: The paths of every file committed inline (regular upload mode), in order.
        create_requests: The JSON bodies of every create_repo request (e.g. to see ``visibility``).
    """

    def __init__(
        self,
        tmp_dir: str | os.PathLike[str],
        *,
        tokens: dict[str, HubToken] | None = None,
        valid_tokens: Iterable[str] | None = None,
        multipart_threshold: int = 12 * 1024 * 1024,
        multipart_chunk_size: int = 8 * 1024 * 1024,
    ):
        super().__init__(Path(tmp_dir), tokens=tokens, valid_tokens=valid_tokens)
        self.multipart_threshold, self.multipart_chunk_size = multipart_threshold, multipart_chunk_size
        self.fail_with: int | None = None
        self.fail_lfs_uploads: int | None = None
        self.before_commit: Callable[[], None] | None = None
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed at stop()
        self._endpoint: str | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        handler = type("_BoundHandler", (HubRequestHandler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; the stored repos stay readable through the API below."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        # shutdown() only stops accepting: without this, a client's pooled keep-alive connection would
        # still be answered by its handler thread, and a "stopped" server would not look unreachable.
        with self.lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self.lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); still the last one after `stop()`."""
        if self._endpoint is None:
            raise RuntimeError("HubServer was never started: call start() first")
        return self._endpoint

    @property
    def storage_host(self) -> str:
        """The host name of the large-file storage: another origin than the API, on the same socket."""
        return "localhost"

    def storage_url(self, path: str) -> str:
        return f"http://{self.storage_host}:{urlsplit(self.endpoint).port}/__storage__/{path}"

    # -- inspection and setup for tests ------------------------------------------------------------

    def commits(self, repo_id: str, repo_type: str = "model") -> list[ServerCommit]:
        """All commits of a repo, oldest first (the first is the Hub's "initial commit")."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            return [repo.commits[sha] for sha in repo.order]

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The bytes of `path` at `revision`, read straight from storage."""
        with self.lock:
            commit = self.resolve(self.repos[(repo_type, repo_id)], revision)
            return self.blob(commit.files[path]).read_bytes()

    def refs_of(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        """Every ref of a repo (branch names, ``refs/tags/X``, ``refs/pr/N``) -> commit sha."""
        with self.lock:
            return dict(self.repos[(repo_type, repo_id)].refs)

    def put_files(
        self, repo_id: str, files: dict[str, bytes], message: str = "direct commit", branch: str = "main"
    ) -> str:
        """Commit `files` straight into storage, as another client would (the repo is created if needed)."""
        with self.lock:
            repo = self.repos.get(("model", repo_id)) or self.new_repo("model", repo_id, False, None)
            head = repo.commits[repo.refs[branch]]
            stored = {path: self.store(content) for path, content in files.items()}
            return self.new_commit(repo, branch, message, {**head.files, **stored}, head.lfs).sha

    # -- hooks used by RepoStore -------------------------------------------------------------------

    def run_before_commit(self) -> None:
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None  # once: the race, not every later commit
            hook()

    def check_storage_upload(self) -> None:
        if self.fail_lfs_uploads is not None:
            raise HubHTTPError(
                self.fail_lfs_uploads, f"Storage refused the upload (test server answers {self.fail_lfs_uploads})"
            )


# -- pytest integration ------------------------------------------------------------------------------


def patch_hub_client(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Point the already imported `huggingface_hub` at `endpoint`, with an empty cache in `hf_home`.

    `huggingface_hub.constants` reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, ... once, at import time,
    and the client reads those module attributes (``constants.ENDPOINT``,
    ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, ``constants.HF_HUB_CACHE``, ...) on every call. Setting
    the environment variables therefore reaches only new processes (e.g. a `python -m tamrin` child);
    the running client needs the constants themselves patched, which is what this does. Xet is turned
    off (HF_HUB_DISABLE_XET): these test servers implement the LFS path, which is the one the client
    takes without `hf_xet`. Everything is undone by `monkeypatch` at teardown.
    """
    import huggingface_hub.constants as constants
    from huggingface_hub import hf_api
    from huggingface_hub.utils import _cache_assets, _cache_manager, _http

    hf_home.mkdir(parents=True, exist_ok=True)
    hub_cache, assets, token_path = hf_home / "hub", hf_home / "assets", hf_home / "token"
    for name in (
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_OIDC_RESOURCE",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ASSETS_CACHE",
        "HF_TOKEN_PATH",
        "HF_XET_CACHE",
        "HUGGINGFACE_CO_STAGING",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")

    host = urlsplit(endpoint).hostname or "127.0.0.1"
    patches: dict[str, Any] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {host},
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "default_cache_path": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets),
        "HUGGINGFACE_ASSETS_CACHE": str(assets),
        "default_assets_cache_path": str(assets),
        "HF_TOKEN_PATH": str(token_path),  # never pick up the developer's stored login
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HUB_DISABLE_XET": True,
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    # The module-level functions (`huggingface_hub.list_repo_files`, `model_info`, `create_repo`, ...) are
    # methods of one `HfApi()` made at import time, which copied `constants.ENDPOINT` into `.endpoint`.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    # Modules that copied a constant with `from ..constants import X` at import time.
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", str(assets))
    # Origins trusted to receive the auth header on redirects: the API's only, never the storage's.
    monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(endpoint)})
    # The shared httpx client keeps pooled connections; start and end each test with a fresh one.
    _http.close_session()


def set_hub_offline(monkeypatch: pytest.MonkeyPatch, offline: bool = True) -> None:
    """Turn HF_HUB_OFFLINE on (or off) for the running client and for child processes."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running `HubServer` that the `huggingface_hub` client talks to, with an empty cache.

    Sets HF_ENDPOINT and HF_HOME (``tmp_path / "hf_home"``), clears HF_TOKEN and offline mode, patches
    the client's import-time constants (`patch_hub_client`); all of it is restored, and the server
    stopped, at teardown. Tests pass ``token=...`` explicitly (or ``monkeypatch.setenv("HF_TOKEN", ...)``).
    """
    from huggingface_hub.utils import close_session

    server = HubServer(tmp_path / "hub_server").start()
    try:
        patch_hub_client(monkeypatch, server.endpoint, tmp_path / "hf_home")
        yield server
    finally:
        server.stop()
        close_session()  # drop pooled connections to the stopped server
