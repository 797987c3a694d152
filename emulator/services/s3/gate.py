"""The S3 endpoint that holds UC model-version files: moto behind a gate that does what moto does not.

* authentication: SigV4 (header or presigned URL) with the temporary credentials the workspace
  issued, checked for expiry (``sigv4``);
* authorization: a credential reaches only its version's prefix, and writes only with READ_WRITE;
* immutability: once the workspace finalizes a version (``POST /__emulator/s3/seal``), its prefix
  takes no more writes;
* durability: moto keeps S3 in memory, so each successful write is also written to disk and
  restored into moto at start (``object_files``).
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import parse_qs

from emulator.services.s3 import sigv4
from emulator.services.s3.credentials import (
    CredentialError,
    Scope,
    admin_token,
)
from emulator.services.s3.object_files import ObjectFiles

_logger = logging.getLogger(__name__)

SEAL_PATH = "/__emulator/s3/seal"
RESET_PATH = "/__emulator/s3/reset"
HEALTH_PATH = "/__emulator/health"


def _xml_error(start_response, code: str, message: str, status: int):
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>emulator</RequestId></Error>").encode()
    start_response(f"{status} {_REASONS.get(status, 'Error')}", [("Content-Type", "application/xml"),
                                                                  ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, status: int, payload: dict):
    body = json.dumps(payload).encode()
    start_response(f"{status} {_REASONS.get(status, 'OK')}", [("Content-Type", "application/json"),
                                                              ("Content-Length", str(len(body)))])
    return [body]


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix.rstrip("/") + "/")


class S3Gate:
    def __init__(self, moto_app, backend, master: bytes, files: ObjectFiles):
        self.moto_app, self.backend, self.master, self.files = moto_app, backend, master, files
        self._sealed = files.sealed()

    def restore(self) -> int:
        """Put every object kept on disk back into moto (at start: moto begins empty)."""
        count = 0
        for bucket, key, path in self.files.objects():
            self.ensure_bucket(bucket)
            self.backend.put_object(bucket, key, path.read_bytes())
            count += 1
        return count

    def ensure_bucket(self, bucket: str) -> None:
        if bucket not in self.backend.buckets:
            self.backend.create_bucket(bucket, "us-east-1")

    def reset(self) -> None:
        for bucket in list(self.backend.buckets):
            for key in list(self.backend.buckets[bucket].keys.keys()):
                self.backend.delete_object(bucket, key)
        self.files.clear()
        self._sealed = set()

    def _admin(self, environ, start_response):
        presented = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")
        if not hmac.compare_digest(presented, admin_token(self.master)):
            return _json(start_response, 401, {"error_code": "UNAUTHENTICATED", "message": "Invalid admin token."})
        if environ["REQUEST_METHOD"] != "POST":
            return _json(start_response, 405, {"error_code": "BAD_REQUEST", "message": "POST only."})
        if environ["PATH_INFO"] == RESET_PATH:
            self.reset()
            return _json(start_response, 200, {"reset": True})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            prefix = json.loads(environ["wsgi.input"].read(length) or b"{}").get("prefix")
        except (ValueError, AttributeError):
            prefix = None
        if not isinstance(prefix, str) or not prefix.strip("/"):
            return _json(start_response, 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "A 'prefix' is required."})
        self.files.seal(prefix.rstrip("/"))
        self._sealed.add(prefix.rstrip("/"))
        return _json(start_response, 200, {"sealed": prefix})

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == HEALTH_PATH:
            return _json(start_response, 200, {"healthy": True})
        if path in (SEAL_PATH, RESET_PATH):
            return self._admin(environ, start_response)
        try:
            scope = sigv4.authenticate(environ, self.master)
        except CredentialError as exc:
            return _xml_error(start_response, exc.code, exc.message, exc.status)
        # PATH_INFO is already percent-decoded: the object key as S3 sees it, in WSGI's latin-1
        # transport of the URL's bytes, which are UTF-8.
        try:
            path = path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return _xml_error(start_response, "InvalidURI", "Couldn't parse the specified URI.", 400)
        bucket, _, key = path.lstrip("/").partition("/")
        method = environ["REQUEST_METHOD"]
        write = method in ("PUT", "POST", "DELETE")
        problem = self._refusal(scope, bucket, key, method, environ.get("QUERY_STRING", ""))
        if not problem and environ.get("HTTP_X_AMZ_COPY_SOURCE"):
            problem = "Access Denied"  # a copy would read outside the credential's prefix
        if problem:
            return _xml_error(start_response, "AccessDenied", problem, 403)
        if method in ("PUT", "POST") and key and not self.files.can_keep(key):
            # fidelity: Unity Catalog model registry  (a key its file can't be named after: S3's answer)
            return _xml_error(start_response, "KeyTooLongError", "Your key is too long.", 400)
        status_holder = {}

        def capture(status, headers, exc_info=None):
            status_holder["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = list(self.moto_app(environ, capture))
        if write and 200 <= status_holder.get("status", 500) < 300:
            self._persist(bucket, key, method, environ.get("QUERY_STRING", ""))
        return body

    def _refusal(self, scope: Scope, bucket: str, key: str, method: str, query: str) -> str | None:
        """Why S3 would refuse this request with these credentials (None: allowed)."""
        if bucket != scope.bucket:
            return "Access Denied"
        if not key:
            if method == "HEAD":
                return None  # HeadBucket: the client asks the bucket's region first
            params = parse_qs(query, keep_blank_values=True)
            if method == "GET" and ("list-type" in params or "prefix" in params):
                return None if _under(params.get("prefix", [""])[0], scope.prefix) else "Access Denied"
            return "Access Denied"
        if not _under(key, scope.prefix):
            return "Access Denied"
        if method in ("GET", "HEAD"):
            return None
        if not scope.write:
            return "Access Denied"
        # fidelity: Unity Catalog model registry
        if any(_under(key, sealed) for sealed in self._sealed):
            return "Access Denied: the files of a finalized model version cannot be changed"
        return None

    def _persist(self, bucket: str, key: str, method: str, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        if method == "DELETE" and "uploadId" not in params:
            self.files.remove(bucket, key)
        elif (method == "PUT" and "partNumber" not in params) or (method == "POST" and "uploadId" in params):
            obj = self.backend.get_object(bucket, key)
            if obj is not None:
                self.files.save(bucket, key, obj.value)
