"""The HTTP side of tests/hub_server.py: parse a request, route it to `HubServer`, send the answer.

Three origins are served by one socket: the Hub API and file resolution (``http://127.0.0.1:PORT``),
and the large-file storage the Hub hands out signed URLs for (``http://localhost:PORT/__storage__/``),
which is another origin to the client, as S3 or a CDN is to the real Hub: the client must not send it
the token, and this storage refuses any request that does.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from hub_server import HubServer

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
RESOLVE_PREFIXES = {"datasets": "dataset", "spaces": "space"}
REPO_ACTIONS = {"revision", "tree", "preupload", "commit", "commits", "branch", "tag", "refs"}
STORAGE_PREFIX = "__storage__"
MAX_BODY = 256 * 1024 * 1024  # a test server; refuse anything larger than a test would send

Answer = tuple[int, bytes, dict[str, str]]  # status, body, headers


class HubHTTPError(Exception):
    """An HTTP error answer, with the Hub's error headers (``X-Error-Code``, ``X-Error-Message``)."""

    def __init__(
        self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


def json_answer(data: Any) -> Answer:
    return 200, json.dumps(data).encode(), {"Content-Type": "application/json"}


class HubRequestHandler(BaseHTTPRequestHandler):
    """Routes one request to `HubServer`; every answer has a Content-Length (HTTP/1.1 keep-alive)."""

    hub: HubServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end on their own: the server never hangs at stop()

    def setup(self) -> None:
        super().setup()
        self.hub.track_connection(self.connection, open_=True)

    def finish(self) -> None:
        self.hub.track_connection(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

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
        if length > MAX_BODY:
            raise HubHTTPError(413, "Request body too large for the test server")
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

    def _send_error(self, err: HubHTTPError) -> None:
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
            body = self._read_body() if method in ("POST", "PUT") else b""  # always drain, even to fail
            if hub.fail_with is not None:
                raise HubHTTPError(hub.fail_with, f"Internal Error (test server answers {hub.fail_with})")
            parts = [unquote(p) for p in url.path.split("/")[1:]]
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            host = (self.headers.get("Host") or "").split(":")[0]
            with hub.lock:  # one request at a time on the state; the answer is sent outside the lock
                answer = self._route(method, host, parts, query, body)
        except HubHTTPError as err:
            return self._send_error(err)
        except (KeyError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            return self._send_error(HubHTTPError(400, f"Bad request: {err!r}"))
        self._send(*answer)

    def _route(self, method: str, host: str, parts: list[str], query: dict[str, str], body: bytes) -> Answer:
        hub = self.hub
        if parts[:1] == [STORAGE_PREFIX]:
            if host != hub.storage_host:
                raise HubHTTPError(404, f"Storage is served on {hub.storage_host}, not {host}")
            if self.headers.get("Authorization"):  # as S3 answers a signed URL that also carries a token
                raise HubHTTPError(400, "Only one auth mechanism allowed: this URL is signed; do not send a token")
            return hub.storage(method, parts[1:], query, body, self.headers.get("Range", ""))
        if host == hub.storage_host:
            raise HubHTTPError(404, f"{host} serves storage only")
        user = hub.authenticate(self.headers.get("Authorization"))
        if parts[:1] == ["api"]:
            return self._api(method, parts[1:], query, body, user)
        if len(parts) >= 5 and parts[-4:-1] == ["info", "lfs", "objects"]:
            return self._lfs(method, parts, body, user)
        return hub.resolve_file(method, parts, user, self.headers.get("Range", ""))

    # -- routes ----------------------------------------------------------------------------------

    def _lfs(self, method: str, parts: list[str], body: bytes, user: Any) -> Answer:
        """``POST /[datasets/]{repo}.git/info/lfs/objects/{batch,verify}`` (the git-lfs batch API)."""
        repo_parts, action = parts[:-4], parts[-1]
        repo_type = "model"
        if repo_parts and repo_parts[0] in RESOLVE_PREFIXES:
            repo_type, repo_parts = RESOLVE_PREFIXES[repo_parts[0]], repo_parts[1:]
        repo_id = "/".join(repo_parts).removesuffix(".git")
        if method != "POST" or action not in ("batch", "verify"):
            raise HubHTTPError(404, f"Unknown LFS route {method} {self.path}")
        repo = self.hub.writable_repo(repo_type, repo_id, user)
        data = json.loads(body or b"{}")
        answer = self.hub.lfs_batch(repo, data) if action == "batch" else self.hub.lfs_verify(data)
        return 200, json.dumps(answer).encode(), {"Content-Type": "application/vnd.git-lfs+json"}

    def _api(self, method: str, parts: list[str], query: dict[str, str], body: bytes, user: Any) -> Answer:
        hub = self.hub
        if method == "POST" and parts == ["repos", "create"]:
            return json_answer(hub.create_repo(json.loads(body or b"{}"), user))
        if method == "POST" and parts == ["validate-yaml"]:
            return json_answer({"errors": [], "warnings": []})
        if method == "GET" and parts == ["whoami-v2"]:
            return json_answer(hub.whoami(user))
        if not parts or parts[0] not in REPO_TYPES:
            raise HubHTTPError(404, f"Unknown API route /api/{'/'.join(parts)}")
        repo_type, rest = REPO_TYPES[parts[0]], parts[1:]
        cut = 2 if len(rest) > 2 and rest[2] in REPO_ACTIONS else 1
        if len(rest) <= cut or rest[cut] not in REPO_ACTIONS:
            cut = len(rest)
        repo_id, action, args = "/".join(rest[:cut]), (rest[cut:] or [None])[0], rest[cut + 1 :]
        revision = args[0] if args else "main"
        truthy = ("1", "true", "True")
        if method == "GET" and action in (None, "revision"):
            repo = hub.readable_repo(repo_type, repo_id, user)
            return json_answer(hub.repo_info(repo, revision, query.get("blobs") in truthy))
        if method == "GET" and action == "tree":
            repo = hub.readable_repo(repo_type, repo_id, user)
            return json_answer(hub.tree(repo, revision, "/".join(args[1:]), query.get("recursive") in truthy))
        if method == "GET" and action == "commits":
            return json_answer(hub.commit_log(hub.readable_repo(repo_type, repo_id, user), revision))
        if method == "GET" and action == "refs":
            return json_answer(hub.refs(hub.readable_repo(repo_type, repo_id, user), "include_prs" in query))
        if method != "POST":
            raise HubHTTPError(404, f"Unknown API route {method} /api/{'/'.join(parts)}")
        repo = hub.writable_repo(repo_type, repo_id, user)
        if action == "preupload":
            return json_answer(hub.preupload(repo, revision, json.loads(body)))
        if action == "commit":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            return json_answer(hub.commit(repo, revision, lines, create_pr=query.get("create_pr") in truthy))
        if action == "branch":
            return json_answer(hub.create_ref(repo, revision, json.loads(body or b"{}").get("startingPoint")))
        if action == "tag":
            data = json.loads(body or b"{}")
            return json_answer(hub.create_ref(repo, f"refs/tags/{data['tag']}", revision))
        raise HubHTTPError(404, f"Unknown API route {method} /api/{'/'.join(parts)}")
