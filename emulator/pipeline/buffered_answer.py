"""Call an inner WSGI app and hold its whole answer, for middlewares that rewrite JSON answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Answer:
    status: str
    headers: list
    exc_info: object
    body: bytes

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k.lower() == "content-type"), "")

    def replace_body(self, body: bytes) -> None:
        """A rewritten body: Content-Length follows it."""
        self.body = body
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        self.headers.append(("Content-Length", str(len(body))))

    def send(self, start_response) -> list[bytes]:
        start_response(self.status, self.headers, self.exc_info)
        return [self.body]


def buffered(app, environ) -> Answer:
    """The app's answer, written chunks and iterated body alike (the iterable is closed, as WSGI asks)."""
    captured: dict = {}

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers, exc_info=exc_info)
        return lambda data: captured.setdefault("written", []).append(data)

    result = app(environ, capture)
    try:
        chunks = captured.pop("written", []) + list(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return Answer(captured["status"], list(captured["headers"]), captured["exc_info"], b"".join(chunks))
