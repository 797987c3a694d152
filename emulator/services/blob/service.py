"""The Azure Blob data plane behind a workspace's SAS URLs, over the workspace's artifact root.

A WSGI middleware in front of the app: a request is a blob request when its Host is the
workspace's ``<account>.blob.core.windows.net`` (Azure ML arrangement A, Compose aliases) or its
path starts with ``/<account>.blob.core.windows.net/`` (path-style: Azure ML's loopback HTTPS
listener, and the Databricks workspace's own listener). The role's one container maps onto its
artifact root: blob ``<exp>/<run>/artifacts/<path>`` is the file MLflow's own artifact routes (and
on Databricks the Files API and DBFS) serve too, so every client sees the same bytes. A role may
add a ``check(segments)`` (Databricks: the run/model must exist, ``artifact_owners``) and an
``on_write(segments)`` called once a blob is committed (Databricks: the mirror records it).

What azure-storage-blob sends and checks (client source, azure-storage-blob 12.27): Put Blob
(``x-ms-blob-type: BlockBlob``, 201); over 64 MiB Put Block (``comp=block&blockid``) then Put Block
List (``comp=blocklist``, XML body); Get Blob with ``x-ms-range`` -> 206 + ``Content-Range``, later
chunks with ``If-Match: <ETag>``; a range on an empty blob -> 416, then a plain GET. Errors are
Storage's XML ``<Error><Code/><Message/></Error>`` with ``x-ms-error-code``. The SAS is the only
credential (blob_sas.py); no bearer token is read here.

Extra containers (``containers={name: folder}``, Azure ML's datastore container) are served the
same way, without the role's ``check``/``on_write``; for them azure-ai-ml also lists blobs
(listing.py), reads and sets metadata (metadata.py) and uploads with ``If-None-Match: *``.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from emulator.errors import EmulatorError
from emulator.services.blob import listing
from emulator.services.blob import metadata as blob_metadata
from emulator.services.blob import sas as blob_sas

CONTAINER = "azureml"  # Azure ML's container (the Databricks role passes its own)
STORAGE_VERSION = "2021-08-06"
MAX_BLOCK_LIST_BODY = 4 * 1024**2
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_COPY_CHUNK = 1024**2


def _error(code: str, message: str, status: int, headers: dict | None = None) -> Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}\nRequestId:{uuid.uuid4()}</Message></Error>")
    response = Response(body, status=status, content_type="application/xml")
    response.headers["x-ms-error-code"] = code
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _etag(stat: os.stat_result) -> str:
    return f'"0x{stat.st_mtime_ns:X}{stat.st_size:X}"'


def _http_date(timestamp: float | None) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


class BlobService:
    def __init__(self, wsgi_app, *, token: str, account: str, host: str, root: Path, staging: Path,
                 container: str = CONTAINER, check=None, on_write=None, containers: dict | None = None):
        self.wsgi_app = wsgi_app
        self.token = token
        self.account = account
        self.host = host.lower()
        self.container = container
        self.root = Path(root).resolve()
        self.staging = Path(staging)
        self.check = check  # check(segments) raises EmulatorError when the path's owner is missing
        self.on_write = on_write  # on_write(segments) after a blob is committed
        self.roots = {container: self.root, **{name: Path(folder).resolve() for name, folder in (containers or {}).items()}}
        self.metadata = blob_metadata.MetadataStore(self.staging / "metadata")

    # -- dispatch ---------------------------------------------------------------------------
    def _blob_path(self, environ) -> str | None:
        """The ``/<container>/<blob>`` part if this is a blob request, else None."""
        host = environ.get("HTTP_HOST", "").rsplit(":", 1)[0].lower()
        path = environ.get("PATH_INFO", "")
        if host == self.host:
            return path
        prefix = f"/{self.host}"
        if path.lower().startswith(prefix + "/"):
            return path[len(prefix):]
        return None

    def __call__(self, environ, start_response):
        path = self._blob_path(environ)
        if path is None:
            return self.wsgi_app(environ, start_response)
        try:
            response = self._handle(Request(environ), path)
        except OSError as exc:
            # A name the file system refuses (too long, a file where a folder is) is the caller's
            # input; Storage answers such names with 400, and azure-core would retry a 5xx.
            response = _error("InvalidResourceName", f"The blob name is not valid here: {exc.strerror}.", 400)
        except EmulatorError as exc:
            # The role's own check (a run or model that does not exist, a refused path), in
            # Storage's XML shape: these clients parse no JSON here.
            response = _error("ResourceNotFound" if exc.status == 404 else "InvalidResourceName",
                              exc.message, exc.status if exc.status < 500 else 400)
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        response.headers["x-ms-version"] = STORAGE_VERSION
        response.headers["Date"] = _http_date(None)
        return response(environ, start_response)

    def _resolve(self, container: str, blob: str) -> Path | None:
        parts = blob.split("/")
        root = self.roots.get(container)
        if root is None or not blob or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            return None
        target = (root / Path(*parts)).resolve()
        if not target.is_relative_to(root) or target == root:
            return None
        if self.check is not None and container == self.container:
            self.check(parts)
        return target

    def _handle(self, request: Request, path: str) -> Response:
        container, _, blob = unquote(path).lstrip("/").partition("/")
        if request.method not in ("GET", "HEAD", "PUT"):
            return _error("UnsupportedHttpVerb", f"The resource doesn't support {request.method}.", 405)
        listing_call = not blob and request.args.get("restype") == "container"
        needed = "l" if listing_call else "w" if request.method == "PUT" else "r"
        problem = blob_sas.verify(self.token, self.account, container, blob, request.args, needed)
        if problem:
            # fidelity: Azure ML real clients -- blob plane: SAS verified, Storage's XML errors
            return _error(*problem, 403)
        if listing_call:
            return self._list_blobs(request, container)
        target = self._resolve(container, blob)
        if target is None and request.method in ("GET", "HEAD") and blob.endswith("/") and container in self.roots:
            # A legal blob name ("folder/") that can never name a file here: Storage answers 404 (azure-ai-ml's
            # exists("<path>/") asks it before listing the folder).
            return _error("BlobNotFound", "The specified blob does not exist.", 404)
        if target is None:
            return _error("InvalidResourceName", f"The blob name '{blob}' is not valid here.", 400)
        if request.method == "PUT":
            comp = request.args.get("comp")
            if comp == "block":
                return self._put_block(request, blob)
            if comp == "metadata":
                return self._set_metadata(request, container, blob, target)
            if comp not in (None, "blocklist"):
                return _error("UnsupportedQueryParameter", f"comp={comp} is not supported by the emulator.", 400)
            try:
                meta = blob_metadata.from_headers(request.headers)
            except blob_metadata.BadMetadata as exc:
                return _error("InvalidMetadata", str(exc), 400)
            # fidelity: Azure ML datastores -- blob uploads
            if request.headers.get("If-None-Match") == "*" and target.is_file():
                return _error("BlobAlreadyExists", "The specified blob already exists.", 409)
            if comp == "blocklist":
                response = self._put_block_list(request, blob, target)
            else:
                response = self._put_blob(request, target)
            if response.status_code == 201:
                self.metadata.put(container, blob, meta)
            return self._committed(blob, response) if container == self.container else response
        return self._get_blob(request, target, self.metadata.get(container, blob))

    # -- containers and metadata --------------------------------------------------------------
    def _list_blobs(self, request: Request, container: str) -> Response:
        root = self.roots.get(container)
        if root is None:
            return _error("ContainerNotFound", "The specified container does not exist.", 404)
        if request.method != "GET" or request.args.get("comp") != "list":
            return _error("UnsupportedQueryParameter", "Only List Blobs (comp=list) is supported on a container "
                          "by the emulator.", 400)
        prefix, delimiter = request.args.get("prefix", ""), request.args.get("delimiter", "")
        marker = request.args.get("marker", "")
        after = listing.name_of(marker) if marker else None
        if marker and after is None:
            return _error("OutOfRangeInput", "The marker is not valid: pass NextMarker unchanged.", 400)
        try:
            max_results = int(request.args.get("maxresults", listing.MAX_RESULTS))
        except ValueError:
            max_results = 0
        if not 1 <= max_results <= listing.MAX_RESULTS:
            return _error("OutOfRangeQueryParameterValue", "maxresults must be between 1 and 5000.", 400)
        items, next_name = listing.list_blobs(root, prefix=prefix, delimiter=delimiter, after=after,
                                              max_results=max_results)
        body = listing.xml(f"https://{self.host}/", container, prefix=prefix, delimiter=delimiter, marker=marker,
                           max_results=int(request.args["maxresults"]) if "maxresults" in request.args else None,
                           items=items, next_name=next_name,
                           include_metadata="metadata" in request.args.get("include", "").split(","),
                           metadata_of=lambda name: self.metadata.get(container, name), etag_of=_etag,
                           date_of=_http_date)
        return Response(body, status=200, content_type="application/xml")

    def _set_metadata(self, request: Request, container: str, blob: str, target: Path) -> Response:
        if not target.is_file():
            return _error("BlobNotFound", "The specified blob does not exist.", 404)
        try:
            meta = blob_metadata.from_headers(request.headers)
        except blob_metadata.BadMetadata as exc:
            return _error("InvalidMetadata", str(exc), 400)
        self.metadata.put(container, blob, meta)
        stat = target.stat()
        response = Response(status=200)
        response.headers["ETag"] = _etag(stat)
        response.headers["Last-Modified"] = _http_date(stat.st_mtime)
        response.headers["x-ms-request-server-encrypted"] = "true"
        return response

    def _committed(self, blob: str, response: Response) -> Response:
        if self.on_write is None or response.status_code != 201:
            return response
        try:
            self.on_write(blob.split("/"))
        except Exception as exc:  # stored, but its follow-up (the mirror's record) failed: say so
            logging.getLogger(__name__).exception("blob %s: on_write failed", blob)
            return _error("InternalError", f"The blob was stored but could not be recorded: "
                          f"{type(exc).__name__}: {exc}", 500)
        return response

    # -- writes -----------------------------------------------------------------------------
    def _write_atomically(self, target: Path, chunks, expected_md5: str | None = None) -> Response:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".blob-", suffix=".tmp")
        md5 = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    md5.update(chunk)
                    out.write(chunk)
            if expected_md5 and base64.b64encode(md5.digest()).decode() != expected_md5.strip():
                # Transactional MD5 (azure-storage-blob's validate_content=True, which azure-ai-ml uses):
                # a body that does not match is refused and the old blob kept.
                Path(tmp).unlink(missing_ok=True)
                return _error("Md5Mismatch", "The MD5 value specified in the request did not match with the "
                              "MD5 value calculated by the server.", 400)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._created(target, md5.digest())

    def _created(self, target: Path, md5: bytes | None = None) -> Response:
        stat = target.stat()
        response = Response(status=201)
        response.headers["ETag"] = _etag(stat)
        response.headers["Last-Modified"] = _http_date(stat.st_mtime)
        response.headers["x-ms-request-server-encrypted"] = "true"
        if md5 is not None:
            response.headers["Content-MD5"] = base64.b64encode(md5).decode()
        return response

    @staticmethod
    def _body_chunks(request: Request):
        stream = request.stream
        while True:
            chunk = stream.read(_COPY_CHUNK)
            if not chunk:
                return
            yield chunk

    def _put_blob(self, request: Request, target: Path) -> Response:
        if request.headers.get("x-ms-blob-type", "BlockBlob") != "BlockBlob":
            return _error("InvalidHeaderValue", "Only block blobs (x-ms-blob-type: BlockBlob) are supported.", 400)
        if target.is_dir():
            return _error("InvalidResourceName", "A folder of artifacts already has this name.", 409)
        return self._write_atomically(target, self._body_chunks(request), request.headers.get("Content-MD5"))

    def _block_dir(self, blob: str) -> Path:
        return self.staging / hashlib.sha256(blob.encode()).hexdigest()

    def _put_block(self, request: Request, blob: str) -> Response:
        block_id = request.args.get("blockid", "")
        if not block_id or len(block_id) > 1024:
            return _error("InvalidQueryParameterValue", "blockid is required (at most 1024 characters).", 400)
        folder = self._block_dir(blob)
        folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(block_id.encode()).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".block-")
        with os.fdopen(fd, "wb") as out:
            for chunk in self._body_chunks(request):
                out.write(chunk)
        os.replace(tmp, folder / name)
        response = Response(status=201)
        response.headers["x-ms-request-server-encrypted"] = "true"
        return response

    def _put_block_list(self, request: Request, blob: str, target: Path) -> Response:
        raw = request.stream.read(MAX_BLOCK_LIST_BODY + 1)
        if len(raw) > MAX_BLOCK_LIST_BODY:
            return _error("RequestBodyTooLarge", "The block list is too large.", 413)
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError as exc:
            return _error("InvalidXmlDocument", f"XML specified is not syntactically valid: {exc}", 400)
        if root.tag != "BlockList":
            return _error("InvalidXmlDocument", "The root element must be BlockList.", 400)
        folder = self._block_dir(blob)
        parts = []
        for element in root:
            block = folder / hashlib.sha256((element.text or "").encode()).hexdigest()
            if element.tag not in ("Latest", "Uncommitted", "Committed") or not block.is_file():
                return _error("InvalidBlockList", "The specified block list is invalid: a block was "
                              f"not uploaded ({element.text!r}).", 400)
            parts.append(block)
        if target.is_dir():
            return _error("InvalidResourceName", "A folder of artifacts already has this name.", 409)

        def chunks():
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_COPY_CHUNK):
                        yield chunk

        response = self._write_atomically(target, chunks())
        response.headers.pop("Content-MD5", None)  # a block list's MD5 is not the content's
        shutil.rmtree(folder, ignore_errors=True)
        return response

    # -- reads ------------------------------------------------------------------------------
    def _get_blob(self, request: Request, target: Path, meta: dict | None = None) -> Response:
        try:
            stat = target.stat()
        except OSError:
            stat = None
        if stat is None or not target.is_file():
            return _error("BlobNotFound", "The specified blob does not exist.", 404)
        etag = _etag(stat)
        if_match = request.headers.get("If-Match")
        if if_match and if_match not in ("*", etag):
            return _error("ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.", 412)
        size = stat.st_size
        start, end, status = 0, size - 1, 200
        spec = request.headers.get("x-ms-range") or request.headers.get("Range")
        if spec:
            match = _RANGE.match(spec.strip())
            if not match:
                return _error("InvalidHeaderValue", f"The range '{spec}' is not valid.", 400)
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
            if start >= size or start > end:
                return _error("InvalidRange", "The range specified is invalid for the current size of the resource.",
                              416, {"Content-Range": f"bytes */{size}"})
            status = 206
        length = max(end - start + 1, 0)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "ETag": etag,
            "Last-Modified": _http_date(stat.st_mtime),
            "Accept-Ranges": "bytes",
            "x-ms-blob-type": "BlockBlob",
            "x-ms-creation-time": _http_date(stat.st_mtime),
            "x-ms-lease-status": "unlocked",
            "x-ms-lease-state": "available",
            "x-ms-server-encrypted": "true",
            **blob_metadata.as_headers(meta or {}),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if request.method == "HEAD":
            return Response(status=200, headers={**headers, "Content-Length": str(size)})

        def body():
            with open(target, "rb") as fh:
                fh.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = fh.read(min(_COPY_CHUNK, remaining))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk

        return Response(body(), status=status, headers=headers, direct_passthrough=True)
