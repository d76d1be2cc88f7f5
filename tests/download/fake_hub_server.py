"""A small Hugging Face hub stand-in on 127.0.0.1, spoken to by the real huggingface_hub client.

Why not a hub server from PyPI: ``olah`` (the one self-hosted mirror that serves local repositories)
serves git repositories with their LFS objects, needs about twenty dependencies (fastapi, uvicorn,
GitPython, peewee, ...), and cannot cut a transfer, corrupt a file or require a token on demand, which
are the failures these tests are about. ``hf-local-hub`` on PyPI is only a client for a separate server.

It speaks the parts of the hub's API that downloads use, with the hub's own headers:

- ``GET /api/models/ORG/NAME[/revision/REV]?blobs=true``: commit sha and files (size, git blob id, LFS sha256)
- ``HEAD|GET /ORG/NAME/resolve/REV/PATH``: ``X-Repo-Commit``, ``ETag`` (git blob id, or the sha256 for
  LFS files with ``X-Linked-Etag`` / ``X-Linked-Size``), ``Range`` requests answered with 206
- the same for dataset repositories (``/api/datasets/...``, ``/datasets/ORG/NAME/resolve/...``; add them
  with ``add_commit("datasets/ORG/NAME", ...)``), and ``GET /api/{models,datasets}/ORG/NAME/tree/REV``
- errors with ``X-Error-Code``: ``RepoNotFound`` (401), ``RevisionNotFound`` / ``EntryNotFound`` (404),
  ``GatedRepo`` (401/403)

And the parts of the API that uploads use (``HfApi.create_repo`` / ``create_branch`` / ``create_commit``
with ``HF_HUB_DISABLE_XET=1``, so LFS files go through the basic LFS transfer), writes needing the token:

- ``POST /api/repos/create`` (409 when it exists), ``POST /api/models/ORG/NAME/branch/BRANCH``
- ``POST /api/validate-yaml`` (the model card's header must parse), ``POST /api/models/ORG/NAME/preupload/REV``: ``uploadMode`` lfs for weights and images, regular otherwise
- ``POST /ORG/NAME.git/info/lfs/objects/batch`` -> ``PUT /lfs-upload/OID`` (content checked against its sha256)
- ``POST /api/models/ORG/NAME/commit/REV``: the NDJSON commit (header, base64 ``file``, ``lfsFile``)

Faults on demand: ``cut(path, after_bytes, times)`` ends a GET body early, ``corrupt(path)`` serves
flipped bytes of the right size, ``fail(path, status, times)`` answers a GET with an error status.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

# The repositories the tests' session server holds (see conftest.py).
ADAPTER = "lorakit-test/tiny-lora"
MODEL = "lorakit-test/tiny-llama"
PRIVATE = "lorakit-test/private-lora"
GATED = "lorakit-test/gated-lora"
EMPTY = "lorakit-test/empty-lora"

DATASET_PREFIX = "datasets/"  # key of a dataset repository in HubServer.repos: "datasets/ORG/NAME"
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".msgpack", ".h5", ".onnx")


@dataclass
class HubFile:
    path: str
    data: bytes

    @property
    def lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def blob_id(self) -> str:
        """The git object id: of the LFS pointer for LFS files, of the content otherwise."""
        body = self.pointer() if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    def sibling(self) -> dict:
        entry = {"rfilename": self.path, "size": len(self.data), "blobId": self.blob_id}
        if self.lfs:
            entry["lfs"] = {"size": len(self.data), "sha256": self.sha256, "pointerSize": len(self.pointer())}
        return entry


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> sha
    private: bool = False
    gated: bool = False

    @staticmethod
    def is_sha(revision: str) -> bool:
        return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    authorized: bool
    status: int = 0
    body_bytes: int = 0


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


class HubServer:
    def __init__(self, token: str = "hf_lorakitTestToken0123456789abcdef"):
        self.token = token
        self.repos: dict[str, HubRepo] = {}
        self.requests: list[Request] = []
        self._cuts: dict[str, list[int]] = {}  # path -> [after_bytes, times]
        self._corrupt: set[str] = set()
        self._fails: dict[str, list[int]] = {}  # path -> [status, times]
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, uploaded but maybe not committed yet
        self.commit_messages: list[str] = []
        self.card_metadata: list[dict] = []  # parsed YAML headers of the model cards it validated
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-hub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "HubServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- content ---------------------------------------------------------------------------------------
    def add_commit(self, repo_id: str, files: dict[str, bytes], ref: str | None = "main", private=False, gated=False) -> str:
        repo = self.repos.setdefault(repo_id, HubRepo(repo_id, private=private, gated=gated))
        digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
        for path in sorted(files):
            digest.update(path.encode() + hashlib.sha256(files[path]).digest())
        sha = digest.hexdigest()
        repo.commits[sha] = {path: HubFile(path, data) for path, data in files.items()}
        if ref:
            repo.refs[ref] = sha
        return sha

    # -- faults ----------------------------------------------------------------------------------------
    def cut(self, path: str, after_bytes: int, times: int = 1) -> None:
        self._cuts[path] = [after_bytes, times]

    def corrupt(self, path: str) -> None:
        self._corrupt.add(path)

    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        self._fails[path] = [status, times]

    def clear_faults(self) -> None:
        self._cuts.clear()
        self._corrupt.clear()
        self._fails.clear()

    def _take(self, table: dict[str, list[int]], path: str) -> int | None:
        with self._lock:
            rule = table.get(path)
            if not rule or rule[1] <= 0:
                return None
            rule[1] -= 1
            return rule[0]

    def file_gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + path)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-hub/1"

    def log_message(self, format, *args):  # keep test output clean
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def do_GET(self):
        self._dispatch(send_body=True)

    def do_HEAD(self):
        self._dispatch(send_body=False)

    def do_POST(self):
        self._dispatch_write()

    def do_PUT(self):
        self._dispatch_write()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch_write(self) -> None:
        auth = self.headers.get("Authorization", "")
        record = Request(self.command, urlsplit(self.path).path, None, auth == f"Bearer {self.hub.token}")
        with self.hub._lock:
            self.hub.requests.append(record)
        self._record = record
        body = self._read_body()
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p != ""]
        if self.command == "PUT" and parts[:1] == ["lfs-upload"] and len(parts) == 2:
            return self._lfs_put(parts[1], body)
        if not record.authorized:
            return self._error(401, None, "Invalid credentials in Authorization header", True)
        if parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body)["content"])
        if parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if len(parts) >= 5 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit", "branch"):
            repo = self.hub.repos.get("/".join(parts[2:4]))
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", True)
            revision = "/".join(parts[5:]) or "main"
            if parts[4] == "branch":
                return self._create_branch(repo, revision)
            if parts[4] == "preupload":
                return self._preupload(json.loads(body))
            return self._commit(repo, revision, body)
        if parts[-4:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(json.loads(body))
        return self._error(404, None, "Not found", True)

    # -- write endpoints ----------------------------------------------------------------------------------
    def _create_repo(self, payload: dict) -> None:
        repo_id = f"{payload.get('organization')}/{payload.get('name')}"
        if repo_id in self.hub.repos:
            return self._json(409, {"error": "You already created this model repo", "url": f"{self.hub.url}/{repo_id}"}, True)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.hub.add_commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, private=private)
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id}, True)

    def _validate_yaml(self, content: str) -> None:
        """The hub checks a model card's YAML header before a commit; so does the stand-in (it must parse)."""
        import yaml

        if not content.startswith("---\n"):
            return self._json(200, {"warnings": [{"message": "empty or missing yaml metadata"}]}, True)
        header = content[4:].split("\n---\n", 1)[0]
        try:
            data = yaml.safe_load(header)
            assert isinstance(data, dict)
        except Exception as error:
            return self._json(400, {"errors": [{"message": f"invalid YAML: {error}"}]}, True)
        self.hub.card_metadata.append(data)
        self._json(200, {"warnings": []}, True)

    def _create_branch(self, repo: HubRepo, branch: str) -> None:
        if branch in repo.refs:
            return self._error(409, None, f"Reference refs/heads/{branch} already exists", True)
        repo.refs[branch] = repo.refs["main"]
        self._json(200, {}, True)

    def _preupload(self, payload: dict) -> None:
        lfs = LFS_SUFFIXES + (".png",)
        files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(lfs) else "regular", "shouldIgnore": False} for f in payload["files"]]
        self._json(200, {"files": files, "commitOid": None}, True)

    def _lfs_batch(self, payload: dict) -> None:
        objects = []
        for item in payload.get("objects", []):
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.hub.lfs_objects:
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects}, True)

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, None, "content does not match its oid", True)
        self.hub.lfs_objects[oid] = body
        self._json(200, {}, True)

    def _commit(self, repo: HubRepo, revision: str, body: bytes) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", True)
        files = {path: f.data for path, f in repo.commits[sha].items()}
        summary = ""
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] == "header":
                summary = value.get("summary", "")
            elif item["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs_objects:
                    return self._error(422, None, f"LFS object {value['oid']} was never uploaded", True)
                files[value["path"]] = self.hub.lfs_objects[value["oid"]]
            elif item["key"] == "deletedFile":
                files.pop(value["path"], None)
        self.hub.commit_messages.append(summary)
        new_sha = self.hub.add_commit(repo.repo_id, files, ref=revision if not HubRepo.is_sha(revision) else None)
        self._json(200, {"commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{new_sha}", "commitOid": new_sha, "success": True}, True)

    # -- plumbing ----------------------------------------------------------------------------------------
    def _dispatch(self, send_body: bool) -> None:
        auth = self.headers.get("Authorization", "")
        record = Request(self.command, urlsplit(self.path).path, self.headers.get("Range"), auth == f"Bearer {self.hub.token}")
        with self.hub._lock:
            self.hub.requests.append(record)
        self._record = record
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p != ""]
        prefix = ""
        if parts[:2] == ["api", "datasets"] or (parts[:1] == ["datasets"] and len(parts) >= 6):
            prefix = DATASET_PREFIX  # dataset repositories live beside the models under their own key
            parts = parts[:1] + parts[2:] if parts[0] == "api" else parts[1:]
            parts = (["api", "models"] + parts[1:]) if parts[0] == "api" else parts
        if parts[:2] == ["api", "models"] and len(parts) >= 5 and parts[4] == "tree":
            return self._tree(prefix + "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main", send_body)
        if parts[:2] == ["api", "models"]:
            return self._model_info(parts[2:], parse_qs(url.query), send_body, prefix)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(prefix + "/".join(parts[:2]), parts[3], "/".join(parts[4:]), send_body)
        return self._error(404, None, "Not found", send_body)

    def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool, length: int | None = None) -> None:
        self._record.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)
            self._record.body_bytes = len(body)

    def _json(self, status: int, data, send_body: bool, headers=None) -> None:
        self._send(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode(), send_body)

    def _error(self, status: int, code: str | None, message: str, send_body: bool, headers=None) -> None:
        extra = {"X-Error-Message": message, **(headers or {})}
        if code:
            extra["X-Error-Code"] = code
        self._json(status, {"error": message}, send_body, extra)

    def _repo_access(self, repo_id: str, send_body: bool) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        authorized = self._record.authorized
        if repo is None or (repo.private and not authorized):
            self._error(401, "RepoNotFound", "Repository not found", send_body)
            return None
        if repo.gated and not authorized:
            has_header = bool(self.headers.get("Authorization"))
            self._error(403 if has_header else 401, "GatedRepo", f"Access to model {repo_id} is restricted.", send_body)
            return None
        return repo

    # -- endpoints ---------------------------------------------------------------------------------------
    def _tree(self, key: str, revision: str, send_body: bool) -> None:
        """``GET /api/{models,datasets}/ORG/NAME/tree/REV?recursive=true``: every file, one page."""
        repo = self._repo_access(key, send_body)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", send_body)
        entries = []
        for f in sorted(repo.commits[sha].values(), key=lambda f: f.path):
            entry = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.path}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer())}
            entries.append(entry)
        self._json(200, entries, send_body)

    def _model_info(self, rest: list[str], query: dict, send_body: bool, prefix: str = "") -> None:
        if len(rest) < 2:
            return self._error(404, None, "Not found", send_body)
        repo_id, tail = prefix + "/".join(rest[:2]), rest[2:]
        revision = "/".join(tail[1:]) if tail[:1] == ["revision"] else "main"
        repo = self._repo_access(repo_id, send_body)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", send_body)
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = [f.sibling() if blobs else {"rfilename": f.path} for f in sorted(repo.commits[sha].values(), key=lambda f: f.path)]
        public_id = repo_id[len(DATASET_PREFIX):] if repo_id.startswith(DATASET_PREFIX) else repo_id
        info = {"_id": sha[:24], "id": public_id, "modelId": public_id, "sha": sha, "private": repo.private,
                "gated": "manual" if repo.gated else False, "lastModified": "2026-01-01T00:00:00.000Z", "tags": [], "siblings": siblings}
        self._json(200, info, send_body)

    def _resolve(self, repo_id: str, revision: str, path: str, send_body: bool) -> None:
        repo = self._repo_access(repo_id, send_body)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", send_body)
        hub_file = repo.commits[sha].get(path)
        if hub_file is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist", send_body, {"X-Repo-Commit": sha})
        if send_body and (status := self.hub._take(self.hub._fails, path)) is not None:
            return self._error(status, None, "Service temporarily unavailable", send_body)

        data = hub_file.data
        if path in self.hub._corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{hub_file.blob_id}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if hub_file.lfs:
            headers["X-Linked-Etag"] = f'"{hub_file.sha256}"'
            headers["X-Linked-Size"] = str(len(data))
        else:
            headers["ETag"] = f'"{hub_file.etag}"'
        status, start = 200, 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[len("bytes="):].partition("-")
            start = int(first or 0)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                return self._error(416, None, "Range Not Satisfiable", send_body, {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        if send_body and start == 0 and (after := self.hub._take(self.hub._cuts, path)) is not None:
            return self._cut(status, headers, data, after)
        self._send(status, headers, data, send_body)

    def _cut(self, status: int, headers: dict, data: bytes, after: int) -> None:
        """Announce the whole body, send ``after`` bytes of it, then drop the connection."""
        self._record.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:after])
        self.wfile.flush()
        self._record.body_bytes = after
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
