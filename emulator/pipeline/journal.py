"""The request journal: every call a workspace answers, in order, to see what a client really did.

Each entry: sequence number, time, method, path, query, which kind of credential was presented
(never its value: no Authorization or cookie values are kept), status, latency, and for request
and answer the content type, size, SHA-256 and — when at most ``body_bytes`` of text — the body
itself (what ``harness replay`` resends). Credentials in queries and bodies, both ways, are blanked
(emulator.pipeline.redaction); size and SHA-256 are the original's. A fault that fired is noted
with its rule. Bounded: the oldest entries are dropped beyond ``max_entries``.

Off by default (it costs a hash per byte and memory): ``EMULATOR_JOURNAL=1`` in the server's
environment, or ``POST /__emulator/requests {"enabled": true}`` at run time (the pytest fixture
does that). ``/__emulator/*`` admin calls and ``/health`` probes are not journaled.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import logging
import os
import threading
import time
from collections import deque

from werkzeug.http import parse_cookie

from emulator.pipeline import auth, redaction

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/__emulator/"
# Set in the WSGI environ by a route whose bodies carry credentials (token endpoints): the entry
# keeps sizes and hashes, never the bodies.
SECRET_BODIES = "emulator.journal.secret_bodies"
# Liveness probes (Docker healthchecks, `emulator status`) would crowd real calls out of the bound.
UNJOURNALED = {"/health"}


class Journal:
    def __init__(self, enabled: bool = False, max_entries: int = 10000, body_bytes: int = 16384):
        self.enabled = enabled
        self.max_entries = max_entries
        self.body_bytes = body_bytes
        self._entries: deque = deque(maxlen=max_entries)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self.evicted = 0

    @classmethod
    def from_env(cls) -> Journal:
        return cls(enabled=os.environ.get("EMULATOR_JOURNAL", "").lower() in ("1", "true", "yes", "on"),
                   max_entries=int(os.environ.get("EMULATOR_JOURNAL_MAX_ENTRIES", "10000")),
                   body_bytes=int(os.environ.get("EMULATOR_JOURNAL_BODY_BYTES", "16384")))

    def configure(self, enabled: bool | None = None, max_entries: int | None = None) -> None:
        with self._lock:
            if enabled is not None:
                self.enabled = enabled
            if max_entries is not None and max_entries != self.max_entries:
                self.max_entries = max_entries
                self._entries = deque(self._entries, maxlen=max_entries)

    def next_seq(self) -> int:
        return next(self._seq)

    def add(self, entry: dict) -> None:
        with self._lock:
            if len(self._entries) == self._entries.maxlen:
                self.evicted += 1
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.evicted = 0

    def entries(self, since: int = 0, path: str | None = None, limit: int | None = None) -> list[dict]:
        with self._lock:
            out = [e for e in self._entries if e["seq"] > since]
        if path:
            glob = any(c in path for c in "*?[")
            out = [e for e in out if (fnmatch.fnmatchcase(e["path"], path) if glob else path in e["path"])]
        out.sort(key=lambda e: e["seq"])  # appended on completion: concurrent calls finish out of order
        return out[:limit] if limit else out

    def state(self) -> dict:
        return {"enabled": self.enabled, "max_entries": self.max_entries, "entries": len(self._entries),
                "evicted": self.evicted, "body_bytes": self.body_bytes}


class _Capture:
    """Hashes everything that passes and keeps the first ``limit`` bytes."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sha = hashlib.sha256()
        self.size = 0
        self.head = bytearray()

    def feed(self, data: bytes) -> bytes:
        if data:
            self.sha.update(data)
            self.size += len(data)
            if len(self.head) < self.limit + 1:
                self.head += data[: self.limit + 1 - len(self.head)]
        return data

    def summary(self, content_type: str | None) -> dict:
        out = {"content_type": content_type, "size": self.size, "sha256": self.sha.hexdigest()}
        if self.size and self.size <= self.limit:
            try:
                # fidelity: Request journal
                out["body"] = redaction.redact_body(bytes(self.head).decode("utf-8"), content_type)
            except UnicodeDecodeError:
                out["body_omitted"] = "binary"
        elif self.size:
            out["body_omitted"] = f"larger than {self.limit} bytes"
        return out


class _TeeInput:
    """wsgi.input that feeds what the application reads into a capture."""

    def __init__(self, stream, capture: _Capture):
        self._stream, self._capture = stream, capture

    def read(self, *args):
        return self._capture.feed(self._stream.read(*args))

    def readline(self, *args):
        return self._capture.feed(self._stream.readline(*args))

    def readlines(self, *args):
        return [self._capture.feed(line) for line in self._stream.readlines(*args)]

    def __iter__(self):
        return iter(self.readline, b"")


def credential_kind(environ) -> str | None:
    """Which credential came with the call, never its value."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header:
        return header.split(" ", 1)[0].lower() or "other"
    if "token=" in environ.get("QUERY_STRING", ""):
        return "query-token"
    if any(name.startswith(auth.COOKIE_PREFIX) for name in parse_cookie(environ.get("HTTP_COOKIE", ""))):
        return "cookie"
    return None


class JournalMiddleware:
    def __init__(self, wsgi_app, journal: Journal):
        self.wsgi_app = wsgi_app
        self.journal = journal

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not self.journal.enabled or path.startswith(ADMIN_PREFIX) or path in UNJOURNALED:
            return self.wsgi_app(environ, start_response)
        started = time.monotonic()
        try:
            entry = {"seq": self.journal.next_seq(), "time": round(time.time(), 6),
                     "method": environ.get("REQUEST_METHOD"), "path": path,
                     "query": redaction.redact_query(environ.get("QUERY_STRING", "")),
                     "auth": credential_kind(environ)}
        except Exception:  # a journal never changes an answer: a bookkeeping defect only loses the entry
            log.exception("journal: %s %s not recorded", environ.get("REQUEST_METHOD"), path)
            return self.wsgi_app(environ, start_response)
        limit = self.journal.body_bytes
        req, resp = _Capture(limit), _Capture(limit)
        environ["wsgi.input"] = _TeeInput(environ["wsgi.input"], req)
        answer: dict = {}

        def recording_start_response(status, headers, exc_info=None):
            answer["status"] = int(status.split(" ", 1)[0])
            answer["content_type"] = next((v for k, v in headers if k.lower() == "content-type"), None)
            write = start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
            return lambda data: write(resp.feed(data))

        def finish():
            from emulator.pipeline.faults import ENVIRON_RULE

            try:
                entry["status"] = answer.get("status")
                entry["latency_ms"] = round((time.monotonic() - started) * 1000, 2)
                entry["request"] = req.summary(environ.get("CONTENT_TYPE"))
                entry["response"] = resp.summary(answer.get("content_type"))
                if environ.get(SECRET_BODIES):
                    for side in (entry["request"], entry["response"]):
                        if side.pop("body", None) is not None:
                            side["body_omitted"] = "credentials"
                rule = environ.get(ENVIRON_RULE)
                if rule is not None:
                    entry["fault"] = rule.to_json()
                self.journal.add(entry)
            except Exception:  # as above: never turn an answered call into a failed one
                log.exception("journal: %s %s not recorded", entry.get("method"), path)

        try:
            result = self.wsgi_app(environ, recording_start_response)
        except BaseException:
            answer.setdefault("status", 500)
            finish()
            raise
        return _ClosingIterator(result, resp, finish)


class _ClosingIterator:
    """Passes the answer through, capturing it. The entry is recorded just before the last chunk is
    handed to the server, so a client that reads the journal right after its call finds the call."""

    def __init__(self, result, capture: _Capture, on_done):
        self._result, self._capture, self._on_done = result, capture, on_done
        self._done = False

    def _finish(self):
        if not self._done:
            self._done = True
            self._on_done()

    def __iter__(self):
        chunks = iter(self._result)
        try:
            previous = next(chunks)
        except StopIteration:
            self._finish()
            return
        for chunk in chunks:
            yield self._capture.feed(previous)
            previous = chunk
        self._capture.feed(previous)
        self._finish()
        yield previous

    def close(self):
        try:
            if hasattr(self._result, "close"):
                self._result.close()
        finally:
            self._finish()  # a client that went away mid-answer is journaled too
