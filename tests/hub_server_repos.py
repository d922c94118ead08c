"""The state of tests/hub_server.py: repos, refs, commits, blobs, tokens, and the Hub's answers about them.

Every method runs under the server's lock (the request handler takes it) and raises `HubHTTPError`
for an error answer. See tests/hub_server.py for the routes and the rules this follows.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import hashlib
import itertools
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hub_server_routes import RESOLVE_PREFIXES, Answer, HubHTTPError

GITATTRIBUTES = b"".join(
    b"%s filter=lfs diff=lfs merge=lfs -text\n" % pattern
    for pattern in (b"*.safetensors", b"*.bin", b"*.pt", b"*.pth", b"*.ckpt", b"*.onnx", b"*.h5", b"*.msgpack")
    + (b"*.npy", b"*.npz", b"*.zip", b"*.gz", b"*.tar", b"*tfevents*", b"*.parquet", b"*.arrow")
)
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub stores any file this large through LFS


def git_blob_oid(content: bytes) -> str:
    """The git blob sha1 of `content`: the Hub's oid/ETag for a file stored without LFS."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclasses.dataclass(frozen=True)
class HubToken:
    """What a token may do: `user`'s and `orgs`' repos ("*" = every namespace); `role` "read" or "write"."""

    user: str
    orgs: tuple[str, ...] = ()
    role: str = "write"

    def member_of(self, namespace: str) -> bool:
        return namespace == self.user or namespace in self.orgs or "*" in self.orgs


@dataclasses.dataclass(frozen=True)
class ServerCommit:
    """One commit as the server stores it (what `HubServer.commits` returns)."""

    sha: str
    message: str
    parent: str | None
    date: str
    files: dict[str, str]  # path in repo -> sha256 of the blob
    lfs: frozenset[str] = frozenset()  # the paths stored through LFS

    @property
    def paths(self) -> list[str]:
        return sorted(self.files)


@dataclasses.dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    owner: HubToken | None
    created_at: str
    refs: dict[str, str] = dataclasses.field(default_factory=dict)  # "main", "refs/tags/v1", "refs/pr/1"
    commits: dict[str, ServerCommit] = dataclasses.field(default_factory=dict)
    order: list[str] = dataclasses.field(default_factory=list)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0] if "/" in self.repo_id else self.repo_id


class RepoStore:
    """Repos and blobs on disk, with the Hub's rules for tokens; subclassed by `HubServer`."""

    endpoint: str
    multipart_threshold: int
    multipart_chunk_size: int
    lfs_uploads: list[tuple[str, int]]

    def __init__(self, root: Path, *, tokens: dict[str, HubToken] | None, valid_tokens: Iterable[str] | None):
        self.root = root
        self.tokens = dict(tokens) if tokens is not None else None
        if valid_tokens is not None:
            self.tokens = {**(self.tokens or {}), **{t: HubToken(t, orgs=("*",)) for t in valid_tokens}}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_uploads = []
        self.inline_uploads: list[str] = []
        self.create_requests: list[dict[str, Any]] = []  # the bodies of create_repo calls, in order
        self._counter = itertools.count()
        self._parts: dict[str, dict[int, bytes]] = {}  # multipart uploads in progress: sha256 -> parts

    # hooks the server provides
    def storage_url(self, path: str) -> str:
        raise NotImplementedError

    def run_before_commit(self) -> None:
        raise NotImplementedError

    def check_storage_upload(self) -> None:
        raise NotImplementedError

    # -- storage ---------------------------------------------------------------------------------

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def store(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self.blob(sha256)
        if not path.exists():
            tmp = path.with_name(f"{sha256}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        return sha256

    def new_repo(self, repo_type: str, repo_id: str, private: bool, owner: HubToken | None) -> Repo:
        repo = Repo(repo_type, repo_id, private, owner, _now())
        self.new_commit(repo, "main", "initial commit", {".gitattributes": self.store(GITATTRIBUTES)}, frozenset())
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def new_commit(
        self, repo: Repo, ref: str, message: str, files: dict[str, str], lfs: frozenset[str], parent: str | None = None
    ) -> ServerCommit:
        parent = parent if parent is not None else repo.refs.get(ref)
        seed = json.dumps([repo.repo_id, parent, message, sorted(files.items()), next(self._counter)])
        lfs = frozenset(path for path in lfs if path in files)
        commit = ServerCommit(hashlib.sha1(seed.encode()).hexdigest(), message, parent, _now(), files, lfs)
        repo.commits[commit.sha] = commit
        repo.order.append(commit.sha)
        repo.refs[ref] = commit.sha
        return commit

    def resolve(self, repo: Repo, revision: str) -> ServerCommit:
        for ref in (revision, f"refs/tags/{revision}"):
            if ref in repo.refs:
                return repo.commits[repo.refs[ref]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # -- auth ------------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> HubToken | None:
        """The caller's token, None when anonymous; 401 for a token the server does not accept."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        if self.tokens is None:
            return HubToken(token, orgs=())  # any token is its own user
        if token not in self.tokens:
            raise HubHTTPError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def _may_read(self, repo: Repo, user: HubToken | None) -> bool:
        if not repo.private:
            return True
        return user is not None and (user == repo.owner or (self.tokens is not None and user.member_of(repo.namespace)))

    def _may_write(self, namespace: str, owner: HubToken | None, user: HubToken | None) -> str | None:
        """Why `user` may not write in `namespace` (None: it may)."""
        if user is None:
            return "Invalid username or password."
        if user.role != "write":
            return "This action requires a token with write access: this one is read-only"
        if self.tokens is None:
            return None if owner in (None, user) else f"You don't have the rights to write to {namespace}"
        if not user.member_of(namespace):
            return f"You don't have the rights to write in the namespace {namespace!r} (you are {user.user!r})"
        return None

    def readable_repo(self, repo_type: str, repo_id: str, user: HubToken | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or not self._may_read(repo, user):
            # The Hub does not tell "missing" from "private": 401 when anonymous, 404 otherwise.
            raise HubHTTPError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable_repo(self, repo_type: str, repo_id: str, user: HubToken | None) -> Repo:
        if user is None:
            raise HubHTTPError(401, "Invalid username or password.")
        repo = self.readable_repo(repo_type, repo_id, user)
        refusal = self._may_write(repo.namespace, repo.owner, user)
        if refusal is not None:
            raise HubHTTPError(403, refusal)
        return repo

    def whoami(self, user: HubToken | None) -> dict[str, Any]:
        if user is None:
            raise HubHTTPError(401, "Invalid username or password.")
        orgs = [{"name": org, "type": "org"} for org in user.orgs if org != "*"]
        role = {"accessToken": {"displayName": "test", "role": user.role}}
        return {"type": "user", "name": user.user, "orgs": orgs, "auth": role}

    # -- repos and refs --------------------------------------------------------------------------

    def create_repo(self, body: dict[str, Any], user: HubToken | None) -> dict[str, Any]:
        self.create_requests.append(dict(body))
        name, org = body.get("name"), body.get("organization")
        if not name:
            raise HubHTTPError(400, "'name' is required")
        repo_id = f"{org}/{name}" if org else name
        repo_type = body.get("type") or "model"
        existing = self.repos.get((repo_type, repo_id))
        refusal = self._may_write(org or name, existing.owner if existing else None, user)
        if refusal is not None:
            raise HubHTTPError(401 if user is None else 403, refusal)
        if existing is not None:
            # The Hub's 409 body carries the repo url: `create_repo(exist_ok=True)` reads it.
            raise HubHTTPError(409, f"You already created this {repo_type} repo", url=self.repo_url(existing))
        repo = self.new_repo(repo_type, repo_id, body.get("visibility") == "private", user)
        return {"url": self.repo_url(repo), "name": repo_id, "id": uuid.uuid4().hex}

    def repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.endpoint}/{prefix}{repo.repo_id}"

    def create_ref(self, repo: Repo, ref: str, starting_point: str | None) -> dict[str, Any]:
        if ref in repo.refs:
            raise HubHTTPError(409, f"Reference already exists: {ref}")
        repo.refs[ref] = self.resolve(repo, starting_point or "main").sha
        return {}

    def refs(self, repo: Repo, include_prs: bool) -> dict[str, Any]:
        def entries(prefix: str) -> list[dict[str, str]]:
            return [
                {"name": ref.removeprefix(prefix), "ref": ref if prefix else f"refs/heads/{ref}", "targetCommit": sha}
                for ref, sha in sorted(repo.refs.items())
                if (ref.startswith(prefix) if prefix else not ref.startswith("refs/"))
            ]

        pulls = entries("refs/pr/") if include_prs else []
        return {"branches": entries(""), "tags": entries("refs/tags/"), "converts": [], "pullRequests": pulls}

    def repo_info(self, repo: Repo, revision: str, blobs: bool) -> dict[str, Any]:
        commit = self.resolve(repo, revision)
        siblings = []
        for path in commit.paths:
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(self._entry(commit, path))
                sibling["blobId"] = sibling.pop("oid")
            siblings.append(sibling)
        tags = sorted(ref.removeprefix("refs/tags/") for ref in repo.refs if ref.startswith("refs/tags/"))
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.namespace if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "createdAt": repo.created_at,
            "lastModified": commit.date,
            "siblings": siblings,
        }

    def _entry(self, commit: ServerCommit, path: str) -> dict[str, Any]:
        """A file's tree entry: its git oid (of the pointer, for LFS), size, and LFS info."""
        content_sha = commit.files[path]
        size = self.blob(content_sha).stat().st_size
        if path in commit.lfs:
            pointer = lfs_pointer(content_sha, size)
            lfs = {"oid": content_sha, "size": size, "pointerSize": len(pointer)}
            return {"oid": git_blob_oid(pointer), "size": size, "lfs": lfs}
        return {"oid": git_blob_oid(self.blob(content_sha).read_bytes()), "size": size}

    def tree(self, repo: Repo, revision: str, path: str, recursive: bool) -> list[dict[str, Any]]:
        commit = self.resolve(repo, revision)
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
                entries[file_path] = {"type": "file", "path": file_path, **self._entry(commit, file_path)}
        if prefix and not entries:
            raise HubHTTPError(404, f"{path} does not exist on {revision}", "EntryNotFound", commit.sha)
        return [entries[key] for key in sorted(entries)]

    def commit_log(self, repo: Repo, revision: str) -> list[dict[str, Any]]:
        sha: str | None = self.resolve(repo, revision).sha
        log = []
        while sha is not None:
            commit = repo.commits[sha]
            log.append({"id": sha, "title": commit.message, "message": "", "date": commit.date, "authors": []})
            sha = commit.parent
        return log

    # -- uploads ---------------------------------------------------------------------------------

    def _is_lfs(self, commit: ServerCommit, path: str, sample: bytes, size: int) -> bool:
        attributes = (
            self.blob(commit.files[".gitattributes"]).read_bytes().decode() if ".gitattributes" in commit.files else ""
        )
        patterns = [line.split()[0] for line in attributes.splitlines() if "filter=lfs" in line]
        name = path.rsplit("/", 1)[-1]
        by_attributes = any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p) for p in patterns)
        return size > 0 and (by_attributes or b"\x00" in sample or size >= LFS_MIN_SIZE)

    def preupload(self, repo: Repo, revision: str, body: dict[str, Any]) -> dict[str, Any]:
        commit = self.resolve(repo, revision)
        answers = []
        for item in body.get("files", []):
            path, sha256 = item["path"], commit.files.get(item["path"])
            lfs = self._is_lfs(commit, path, base64.b64decode(item.get("sample", "")), int(item.get("size", 0)))
            oid = None
            if sha256 is not None:  # the client compares this with its own: sha256 for LFS, git sha1 otherwise
                oid = sha256 if lfs else git_blob_oid(self.blob(sha256).read_bytes())
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return {"files": answers, "commitOid": commit.sha}

    def lfs_batch(self, repo: Repo, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("operation") != "upload":
            raise HubHTTPError(400, "This test server takes LFS uploads only (downloads go through resolve)")
        objects = []
        for item in body.get("objects", []):
            oid, size = item["oid"], int(item["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            stored = self.blob(oid)
            if not (stored.exists() and stored.stat().st_size == size):  # no action: already stored, skipped
                verify = {"href": f"{self.repo_url(repo)}.git/info/lfs/objects/verify", "header": {}}
                answer["actions"] = {"upload": self._upload_action(oid, size), "verify": verify}
            objects.append(answer)
        return {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}

    def _upload_action(self, oid: str, size: int) -> dict[str, Any]:
        signature = f"size={size}&sig={uuid.uuid4().hex}"
        if size < self.multipart_threshold:
            return {"href": self.storage_url(f"{oid}?{signature}"), "header": {}}
        count = -(-size // self.multipart_chunk_size)
        header: dict[str, str] = {"chunk_size": str(self.multipart_chunk_size)}
        header.update({f"{n:05d}": self.storage_url(f"{oid}/part/{n}?{signature}") for n in range(1, count + 1)})
        return {"href": self.storage_url(f"{oid}/complete?{signature}"), "header": header}

    def storage(self, method: str, parts: list[str], query: dict[str, str], body: bytes, range_: str) -> Answer:
        """The signed-URL storage: PUT an object (or a part), POST a multipart completion, GET an object."""
        oid = parts[0] if parts else ""
        if method in ("GET", "HEAD"):
            if not self.blob(oid).exists():
                raise HubHTTPError(404, "NoSuchKey")
            return _ranged(self.blob(oid).read_bytes(), range_, {"Content-Type": "application/octet-stream"})
        self.check_storage_upload()
        if method == "PUT" and parts[1:2] == ["part"]:
            self._parts.setdefault(oid, {})[int(parts[2])] = body
            return 200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}
        if method == "POST" and parts[1:2] == ["complete"]:
            chunks = self._parts.pop(oid, {})
            etags = [f'"{hashlib.md5(chunks[p["partNumber"]]).hexdigest()}"' for p in json.loads(body)["parts"]]
            if etags != [p["etag"] for p in json.loads(body)["parts"]]:
                raise HubHTTPError(400, "Multipart completion lists parts that were not uploaded")
            body = b"".join(chunks[n] for n in sorted(chunks))
        elif method != "PUT":
            raise HubHTTPError(405, f"{method} is not allowed on storage")
        if hashlib.sha256(body).hexdigest() != oid or len(body) != int(query.get("size", -1)):
            raise HubHTTPError(400, f"Uploaded content does not match its oid {oid} (a corrupted transfer)")
        self.store(body)
        self.lfs_uploads.append((oid, len(body)))
        return 200, b"", {"ETag": f'"{oid}"'}

    def lfs_verify(self, body: dict[str, Any]) -> dict[str, Any]:
        stored = self.blob(body["oid"])
        if not stored.exists() or stored.stat().st_size != int(body["size"]):
            raise HubHTTPError(404, f"LFS object {body['oid']} was not uploaded")
        return {"success": True}

    def commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]], *, create_pr: bool) -> dict[str, Any]:
        self.run_before_commit()
        if revision not in repo.refs or revision.startswith("refs/tags/"):
            raise HubHTTPError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.commits[repo.refs[revision]]
        header = next((line.get("value", {}) for line in lines if line.get("key") == "header"), {})
        parent = header.get("parentCommit")
        if parent and parent != head.sha and not create_pr:
            raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
        base = repo.commits[parent] if create_pr and parent in repo.commits else head
        files, lfs = self._apply(base, lines)
        if not header.get("summary"):
            raise HubHTTPError(400, "A commit summary is required")
        pr_url, ref = None, revision
        if create_pr:
            number = 1 + sum(ref.startswith("refs/pr/") for ref in repo.refs)
            ref, pr_url = f"refs/pr/{number}", f"{self.repo_url(repo)}/discussions/{number}"
        commit = self.new_commit(repo, ref, header["summary"], files, lfs, parent=base.sha)
        url = f"{self.repo_url(repo)}/commit/{commit.sha}"
        return {"success": True, "commitOid": commit.sha, "commitUrl": url, "pullRequestUrl": pr_url}

    def _apply(self, base: ServerCommit, lines: list[dict[str, Any]]) -> tuple[dict[str, str], frozenset[str]]:
        files, lfs = dict(base.files), set(base.lfs)
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            if key == "header":
                continue
            if key == "file":
                files[value["path"]] = self.store(base64.b64decode(value["content"]))
                lfs.discard(value["path"])
                self.inline_uploads.append(value["path"])
            elif key == "lfsFile":
                if not self.blob(value["oid"]).exists():
                    raise HubHTTPError(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = value["oid"]
                lfs.add(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubHTTPError(404, f"{value['path']} does not exist", "EntryNotFound", base.sha)
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                files = {p: s for p, s in files.items() if not p.startswith(folder)}
            else:
                raise HubHTTPError(400, f"Unsupported commit operation {key!r}")
        return files, frozenset(lfs)

    # -- downloads -------------------------------------------------------------------------------

    def resolve_file(self, method: str, parts: list[str], user: HubToken | None, range_: str) -> Answer:
        if method not in ("GET", "HEAD"):
            raise HubHTTPError(405, f"{method} is not allowed here")
        repo_type = "model"
        if parts and parts[0] in RESOLVE_PREFIXES:
            repo_type, parts = RESOLVE_PREFIXES[parts[0]], parts[1:]
        if "resolve" not in parts[1:3] or len(parts) < parts.index("resolve", 1) + 3:
            raise HubHTTPError(404, f"Unknown route /{'/'.join(parts)}")
        cut = parts.index("resolve", 1)
        repo_id, revision, path = "/".join(parts[:cut]), parts[cut + 1], "/".join(parts[cut + 2 :])
        commit = self.resolve(self.readable_repo(repo_type, repo_id, user), revision)
        if path not in commit.files:
            raise HubHTTPError(404, "Entry not found", "EntryNotFound", commit.sha)
        headers = {"X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
        headers["Content-Disposition"] = f'inline; filename="{path.rsplit("/", 1)[-1]}"'
        if path in commit.lfs:  # as the Hub: a redirect to signed storage, the file's facts in X-Linked-*
            sha256 = commit.files[path]
            size = self.blob(sha256).stat().st_size
            headers.update(
                {
                    "Location": self.storage_url(f"{sha256}?sig={uuid.uuid4().hex}"),
                    "ETag": f'"{git_blob_oid(lfs_pointer(sha256, size))}"',
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(size),
                }
            )
            return 302, b"", headers
        content = self.blob(commit.files[path]).read_bytes()
        headers.update({"Content-Type": "application/octet-stream", "ETag": f'"{git_blob_oid(content)}"'})
        return _ranged(content, range_ if method == "GET" else "", headers)


def _ranged(content: bytes, range_header: str, headers: dict[str, str]) -> Answer:
    """The whole content (200), or the one byte range asked for (206)."""
    status, start, end = 200, 0, len(content)
    if range_header.startswith("bytes=") and "," not in range_header:
        first, _, last = range_header[len("bytes=") :].partition("-")
        if first:
            start, end = int(first), (int(last) + 1 if last else len(content))
        elif last:
            start = max(len(content) - int(last), 0)
        status = 206
        headers = {**headers, "Content-Range": f"bytes {start}-{max(end - 1, start)}/{len(content)}"}
    return status, content[start:end], headers
