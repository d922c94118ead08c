"""A small Hugging Face Hub look-alike on 127.0.0.1, for testing the real `huggingface_hub` client.

It answers the part of the Hub HTTP API that `tamrin.hub` (through `huggingface_hub` 2.x) uses:

=========================================================  ===========================================
``POST /api/repos/create``                                 ``create_repo`` (private, ``exist_ok``)
``POST /api/validate-yaml``                                README.md metadata check in ``create_commit``
``POST /api/{type}s/{repo}/preupload/{rev}``               upload modes: always ``"regular"`` (no LFS/Xet)
``POST /api/{type}s/{repo}/commit/{rev}``                  ``create_commit`` (ndjson; file/deleted*)
``POST /api/{type}s/{repo}/branch/{branch}``               ``create_branch``
``GET  /api/{type}s/{repo}[/revision/{rev}]``              ``repo_info`` / ``model_info`` (siblings, sha)
``GET  /api/{type}s/{repo}/tree/{rev}[/{path}]``           ``list_repo_tree`` / ``list_repo_files``
``GET  /api/{type}s/{repo}/commits/{rev}``                 ``list_repo_commits``
``GET  /api/whoami-v2``                                    ``whoami``
``HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}``        ``hf_hub_download`` / ``snapshot_download``
=========================================================  ===========================================

Why "regular" uploads only: the client asks ``preupload`` how to send each file and follows the answer
(`huggingface_hub._commit_api._fetch_upload_modes`); only files answered ``"lfs"`` go through LFS or Xet.
Answering ``"regular"`` keeps every file inline (base64) in the commit payload, and since no download
response carries ``X-Xet-Hash``, downloads are plain HTTP GETs. No LFS endpoint is needed.

Errors mirror the real Hub, so the client raises its usual classes: ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``) and ``X-Error-Message`` headers plus a ``{"error": ...}`` body.
Like the Hub, an anonymous request for a missing or hidden repo gets 401 and an authenticated one 404,
both ``RepoNotFound`` (`RepositoryNotFoundError`); a token the server does not accept gets 401 "Invalid
credentials in Authorization header"; writing to someone else's repo gets 403.

Auth: with ``valid_tokens=None`` (default) any bearer token is accepted and is its own user; a private repo
is readable only with the token that created it. With ``valid_tokens={...}`` only those tokens are
accepted, and each of them may read and write every repo.

Storage: blobs are content-addressed (sha256) under ``tmp_dir``; commits hold a path -> blob map, so
every commit stays downloadable by its sha. Revisions: branch names and full 40-hex commit shas.

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

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_RESOLVE_PREFIXES = {"datasets": "dataset", "spaces": "space"}
_REPO_ACTIONS = {"revision", "tree", "preupload", "commit", "commits", "branch"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
_MAX_BODY = 256 * 1024 * 1024  # a test server; refuse anything larger than a test would send


def git_blob_oid(content: bytes) -> str:
    """The git blob sha1 of `content`: the Hub's oid/ETag for a file stored without LFS."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclasses.dataclass(frozen=True)
class ServerCommit:
    """One commit as the server stores it (what `HubServer.commits` returns)."""

    sha: str
    message: str
    parent: str | None
    date: str
    files: dict[str, str]  # path in repo -> sha256 of the blob

    @property
    def paths(self) -> list[str]:
        return sorted(self.files)


@dataclasses.dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    owner: str | None
    created_at: str
    branches: dict[str, str] = dataclasses.field(default_factory=dict)
    commits: dict[str, ServerCommit] = dataclasses.field(default_factory=dict)
    order: list[str] = dataclasses.field(default_factory=list)


_Answer = tuple[int, bytes, dict[str, str]]  # status, body, headers


class _HubError(Exception):
    """An HTTP error answer, with the Hub's error headers."""

    def __init__(
        self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class HubServer:
    """A Hub-compatible HTTP server on 127.0.0.1 with its storage in `tmp_dir`.

    Args:
        tmp_dir: Folder for the blobs (created if missing).
        valid_tokens: Tokens the server accepts; each may read and write every repo. ``None`` accepts
            any bearer token as its own user (a private repo is then readable only by its creator).

    Attributes:
        fail_with: Set to an HTTP status (e.g. 500 or 503) to make every request fail with it;
            ``None`` (default) answers normally.
        requests: ``(method, path)`` of every request received, in order.
    """

    def __init__(self, tmp_dir: str | os.PathLike[str], *, valid_tokens: Iterable[str] | None = None):
        self.root = Path(tmp_dir)
        self.valid_tokens = None if valid_tokens is None else frozenset(valid_tokens)
        self.fail_with: int | None = None
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._counter = itertools.count()
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
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
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
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

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

    # -- inspection for tests --------------------------------------------------------------------

    def commits(self, repo_id: str, repo_type: str = "model") -> list[ServerCommit]:
        """All commits of a repo, oldest first (the first is the Hub's "initial commit")."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            return [repo.commits[sha] for sha in repo.order]

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The bytes of `path` at `revision`, read straight from storage."""
        with self._lock:
            commit = self._resolve(self._repos[(repo_type, repo_id)], revision)
            return self._blob(commit.files[path]).read_bytes()

    # -- storage ---------------------------------------------------------------------------------

    def _blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def _store(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._blob(sha256)
        if not path.exists():
            tmp = path.with_name(f"{sha256}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha256

    def _new_commit(self, repo: _Repo, branch: str, message: str, files: dict[str, str]) -> ServerCommit:
        parent = repo.branches.get(branch)
        seed = json.dumps([repo.repo_id, parent, message, sorted(files.items()), next(self._counter)])
        commit = ServerCommit(hashlib.sha1(seed.encode()).hexdigest(), message, parent, _now(), files)
        repo.commits[commit.sha] = commit
        repo.order.append(commit.sha)
        repo.branches[branch] = commit.sha
        return commit

    def _resolve(self, repo: _Repo, revision: str) -> ServerCommit:
        sha = repo.branches.get(revision, revision)
        if sha not in repo.commits:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[sha]

    # -- auth ------------------------------------------------------------------------------------

    def _user(self, authorization: str | None) -> str | None:
        """The token of the caller, None when anonymous; 401 for a token the server does not accept."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _HubError(401, "Invalid credentials in Authorization header")
        if self.valid_tokens is not None and token not in self.valid_tokens:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return token

    def _can_write(self, repo: _Repo, user: str | None) -> bool:
        return user is not None and (self.valid_tokens is not None or user == repo.owner)

    def _readable_repo(self, repo_type: str, repo_id: str, user: str | None) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self._can_write(repo, user)):
            # The Hub does not tell "missing" from "private": 401 when anonymous, 404 otherwise.
            raise _HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, repo_type: str, repo_id: str, user: str | None) -> _Repo:
        if user is None:
            raise _HubError(401, "Invalid username or password.")
        repo = self._readable_repo(repo_type, repo_id, user)
        if not self._can_write(repo, user):
            raise _HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    # -- API -------------------------------------------------------------------------------------

    def create_repo(self, body: dict[str, Any], user: str | None) -> dict[str, Any]:
        if user is None:
            raise _HubError(401, "Invalid username or password.")
        name, org = body.get("name"), body.get("organization")
        if not name:
            raise _HubError(400, "'name' is required")
        repo_id = f"{org}/{name}" if org else name
        repo_type = body.get("type") or "model"
        key = (repo_type, repo_id)
        if key in self._repos:
            existing = self._repos[key]
            if not self._can_write(existing, user):
                raise _HubError(403, f"You don't have the rights to create a repo under {org or name}")
            # The Hub's 409 body carries the repo url: `create_repo(exist_ok=True)` reads it.
            raise _HubError(409, f"You already created this {repo_type} repo", url=self._repo_url(existing))
        repo = _Repo(repo_type, repo_id, body.get("visibility") == "private", user, _now())
        initial = {".gitattributes": self._store(_GITATTRIBUTES)}
        self._new_commit(repo, "main", "initial commit", initial)
        self._repos[key] = repo
        return {"url": self._repo_url(repo), "name": repo_id, "id": uuid.uuid4().hex}

    def _repo_url(self, repo: _Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"

    def repo_info(self, repo: _Repo, revision: str, blobs: bool) -> dict[str, Any]:
        commit = self._resolve(repo, revision)
        siblings = []
        for path in commit.paths:
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                content = self._blob(commit.files[path]).read_bytes()
                sibling.update(size=len(content), blobId=git_blob_oid(content))
            siblings.append(sibling)
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": author,
            "sha": commit.sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "siblings": siblings,
        }

    def tree(self, repo: _Repo, revision: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self._resolve(repo, revision)
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        entries: dict[str, dict[str, Any]] = {}
        for file_path in commit.paths:
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            depth = len(rest) if recursive else 1
            for i in range(1, min(depth, len(rest) - 1) + 1):  # the folders on the way
                folder = prefix + "/".join(rest[:i])
                oid = hashlib.sha1(f"{commit.sha}:{folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if recursive or len(rest) == 1:
                content = self._blob(commit.files[file_path]).read_bytes()
                oid = git_blob_oid(content)
                entries[file_path] = {"type": "file", "oid": oid, "size": len(content), "path": file_path}
        if prefix and not entries:
            raise _HubError(404, f"{path} does not exist on {revision}", "EntryNotFound", commit.sha)
        return [entries[key] for key in sorted(entries)]

    def preupload(self, repo: _Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        commit = self._resolve(repo, revision)
        answers = []
        for item in body.get("files", []):
            sha256 = commit.files.get(item["path"])
            oid = git_blob_oid(self._blob(sha256).read_bytes()) if sha256 else None
            answers.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        return {"files": answers, "commitOid": commit.sha}

    def commit(self, repo: _Repo, branch: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.commits[repo.branches[branch]]
        files, message = dict(head.files), ""
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "header":
                message = value.get("summary") or ""
                parent = value.get("parentCommit")
                if parent and parent != head.sha:
                    raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            elif key == "file":
                files[value["path"]] = self._store(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                if not self._blob(value["oid"]).exists():
                    raise _HubError(422, f"LFS object {value['oid']} was never uploaded (no LFS support)")
                files[value["path"]] = value["oid"]
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise _HubError(404, f"{value['path']} does not exist", "EntryNotFound", head.sha)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: s for p, s in files.items() if not p.startswith(folder)}
            else:
                raise _HubError(400, f"Unsupported commit operation {key!r}")
        if not message:
            raise _HubError(400, "A commit summary is required")
        commit = self._new_commit(repo, branch, message, files)
        url = f"{self._repo_url(repo)}/commit/{commit.sha}"
        return {"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": None}

    def commit_log(self, repo: _Repo, revision: str) -> list[dict[str, Any]]:
        sha: str | None = self._resolve(repo, revision).sha
        log = []
        while sha is not None:
            commit = repo.commits[sha]
            log.append({"id": sha, "title": commit.message, "message": "", "date": commit.date, "authors": []})
            sha = commit.parent
        return log


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to `HubServer`; every answer has a Content-Length (HTTP/1.1 keep-alive)."""

    hub: HubServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end on their own: the server never hangs at stop()

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # keep pytest output clean; `HubServer.requests` records the traffic

    # -- plumbing --------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise _HubError(413, "Request body too large for the test server")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("X-Request-Id", f"Root={uuid.uuid4()}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @staticmethod
    def _json(data: Any) -> _Answer:
        return 200, json.dumps(data).encode(), {"Content-Type": "application/json"}

    def _send_error(self, err: _HubError) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        self._send(err.status, json.dumps({"error": err.message, **err.extra}).encode(), headers)

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        hub.requests.append((method, url.path))
        try:
            body = self._read_body() if method == "POST" else b""  # always drain, even to fail
            if hub.fail_with is not None:
                raise _HubError(hub.fail_with, f"Internal Error (test server answers {hub.fail_with})")
            parts = [unquote(p) for p in url.path.split("/")[1:]]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with hub._lock:  # one request at a time on the state; the answer is sent outside the lock
                user = hub._user(self.headers.get("Authorization"))
                if parts[:1] == ["api"]:
                    answer = self._api(method, parts[1:], query, body, user)
                else:
                    answer = self._resolve_file(method, parts, user)
        except _HubError as err:
            return self._send_error(err)
        except (KeyError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            return self._send_error(_HubError(400, f"Bad request: {err!r}"))
        self._send(*answer)

    # -- routes ----------------------------------------------------------------------------------

    def _api(self, method: str, parts: list[str], query: dict[str, str], body: bytes, user: str | None) -> _Answer:
        hub = self.hub
        if method == "POST" and parts == ["repos", "create"]:
            return self._json(hub.create_repo(json.loads(body or b"{}"), user))
        if method == "POST" and parts == ["validate-yaml"]:
            return self._json({"errors": [], "warnings": []})
        if method == "GET" and parts == ["whoami-v2"]:
            if user is None:
                raise _HubError(401, "Invalid username or password.")
            return self._json({"type": "user", "name": "tamrin-tester", "orgs": [], "auth": {}})
        if not parts or parts[0] not in _REPO_TYPES:
            raise _HubError(404, f"Unknown API route /api/{'/'.join(parts)}")
        repo_type, rest = _REPO_TYPES[parts[0]], parts[1:]
        cut = 2 if len(rest) > 2 and rest[2] in _REPO_ACTIONS else 1
        if len(rest) <= cut or rest[cut] not in _REPO_ACTIONS:
            cut = len(rest)
        repo_id, action, args = "/".join(rest[:cut]), (rest[cut:] or [None])[0], rest[cut + 1 :]
        revision = args[0] if args else "main"
        truthy = ("1", "true", "True")
        if method == "GET" and action in (None, "revision"):
            repo = hub._readable_repo(repo_type, repo_id, user)
            return self._json(hub.repo_info(repo, revision, query.get("blobs") in truthy))
        if method == "GET" and action == "tree":
            repo = hub._readable_repo(repo_type, repo_id, user)
            recursive = query.get("recursive") in truthy
            return self._json(hub.tree(repo, revision, "/".join(args[1:]), recursive))
        if method == "GET" and action == "commits":
            return self._json(hub.commit_log(hub._readable_repo(repo_type, repo_id, user), revision))
        if method == "POST" and action == "preupload":
            repo = hub._writable_repo(repo_type, repo_id, user)
            return self._json(hub.preupload(repo, revision, json.loads(body)))
        if method == "POST" and action == "commit":
            if "create_pr" in query:
                raise _HubError(400, "The test server does not support pull requests")
            repo = hub._writable_repo(repo_type, repo_id, user)
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            return self._json(hub.commit(repo, revision, lines))
        if method == "POST" and action == "branch":
            repo = hub._writable_repo(repo_type, repo_id, user)
            if revision in repo.branches:
                raise _HubError(409, f"Reference already exists: refs/heads/{revision}")
            start = hub._resolve(repo, json.loads(body or b"{}").get("startingPoint") or "main")
            repo.branches[revision] = start.sha
            return self._json({})
        raise _HubError(404, f"Unknown API route {method} /api/{'/'.join(parts)}")

    def _resolve_file(self, method: str, parts: list[str], user: str | None) -> _Answer:
        if method not in ("GET", "HEAD"):
            raise _HubError(405, f"{method} is not allowed here")
        repo_type = "model"
        if parts and parts[0] in _RESOLVE_PREFIXES:
            repo_type, parts = _RESOLVE_PREFIXES[parts[0]], parts[1:]
        if "resolve" not in parts[1:3] or len(parts) < parts.index("resolve", 1) + 3:
            raise _HubError(404, f"Unknown route {self.path}")
        cut = parts.index("resolve", 1)
        repo_id, revision, path = "/".join(parts[:cut]), parts[cut + 1], "/".join(parts[cut + 2 :])
        hub = self.hub
        commit = hub._resolve(hub._readable_repo(repo_type, repo_id, user), revision)
        if path not in commit.files:
            raise _HubError(404, "Entry not found", "EntryNotFound", commit.sha)
        content = hub._blob(commit.files[path]).read_bytes()
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_oid(content)}"',
            "X-Repo-Commit": commit.sha,
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        status, start, end = 200, 0, len(content)
        range_header = self.headers.get("Range", "")
        if method == "GET" and range_header.startswith("bytes=") and "," not in range_header:
            first, _, last = range_header[len("bytes=") :].partition("-")
            if first:
                start, end = int(first), (int(last) + 1 if last else len(content))
            elif last:
                start = max(len(content) - int(last), 0)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{max(end - 1, start)}/{len(content)}"
        return status, content[start:end], headers


# -- pytest integration ------------------------------------------------------------------------------


def patch_hub_client(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Point the already imported `huggingface_hub` at `endpoint`, with an empty cache in `hf_home`.

    `huggingface_hub.constants` reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, ... once, at import time,
    and the client reads those module attributes (``constants.ENDPOINT``,
    ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, ``constants.HF_HUB_CACHE``, ...) on every call. Setting
    the environment variables therefore reaches only new processes (e.g. a `python -m tamrin` child);
    the running client needs the constants themselves patched, which is what this does. Everything
    is undone by `monkeypatch` at teardown.
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
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    # The module-level functions (`huggingface_hub.list_repo_files`, `model_info`, `create_repo`, ...) are
    # methods of one `HfApi()` made at import time, which copied `constants.ENDPOINT` into `.endpoint`.
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)
    # Modules that copied a constant with `from ..constants import X` at import time.
    monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", str(assets))
    # Origins trusted to receive the auth header on redirects (this server never redirects; kept exact).
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
