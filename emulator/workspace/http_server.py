"""The WSGI server under each workspace: cheroot (CherryPy's threaded server), one per listener.

Why cheroot and not waitress: waitress reads (and spools to the temp dir) the whole request body
before the app runs, so an unauthenticated client could fill the disk with one 8 GiB body before
getting its 401. cheroot hands ``wsgi.input`` to the app as a stream from the socket: the token
check answers before a byte of the body is read, and uploads are streamed to their destination.

Two cheroot details this module handles:

* After an answer given without reading the body (a 401, a 413, a 404 ...), cheroot would read
  and discard the rest of the body to keep the connection alive - for an 8 GiB body, 8 GiB.
  ``_CloseUnreadGateway`` closes the connection instead (RFC 9112 allows it; the client gets
  the answer, then EOF), so the unread body is never stored nor parsed as the next request.
  ``_LingeringConnection`` closes it gently: the answer, a FIN, then up to ``LINGER_SECONDS``
  of discarding what the client is still sending, so the client reads the answer rather than
  a connection reset.
* TLS: a listener may carry an ``ssl.SSLContext``; ``_ContextSSLAdapter`` lets cheroot use it
  as is (cheroot's builtin adapter otherwise wants certificate file paths), and leaves the
  handshake to the header gate.
* Slow or idle clients: ``emulator.workspace.header_gate`` keeps a connection out of the worker
  threads until its request head has arrived (``_GatedServer``).

Body size limits themselves are the app's job (``emulator.pipeline.body_limits``): the server sets none,
so that an unauthenticated caller gets the app's 401, not the server's plain-text 413.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from cheroot import wsgi
from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter

from emulator.pipeline import faults
from emulator.workspace import header_gate

_logger = logging.getLogger(__name__)

# Seconds a connection may stay silent mid-request (cheroot's default is 10; the test machine is
# loaded and large uploads pause between chunks).
SOCKET_TIMEOUT = 60
# After answering without reading the body: how long to keep discarding what the client still
# sends before closing, so the close is a FIN after the answer, not a reset that can destroy it
# (Apache's "lingering close"). Bounded in time; nothing is stored.
LINGER_SECONDS = 2.0
# Request line + headers (cheroot's default is unlimited; waitress allowed 256 KiB). Answered with
# cheroot's plain-text 413/414 before the app runs: no backend shape is possible there.
MAX_HEADER_BYTES = 1024**2


@dataclass(frozen=True)
class Listener:
    """One address the workspace answers on; with ``ssl_context`` it speaks HTTPS."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"


# fidelity: Body sizes
class _CloseUnreadGateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, but an answer sent before the request body was fully read
    closes the connection rather than draining the body from the socket."""

    def get_environ(self):
        environ = super().get_environ()
        environ[faults.CONNECTION_FILENO] = self.req.conn.socket.fileno()  # a delay fault watches it
        return environ

    def respond(self):
        try:
            super().respond()
        finally:
            if not _body_consumed(self.req):
                self.req.close_connection = True
                self.req.conn.unread_body = True

    def start_response(self, status, headers, exc_info=None):
        write = super().start_response(status, headers, exc_info)
        # Decided here, before cheroot sends the headers (and, keeping the connection, would
        # read the rest of the body): the answer must say "Connection: close".
        if not _body_consumed(self.req):
            self.req.close_connection = True
            self.req.conn.unread_body = True
        return write


def _body_consumed(req) -> bool:
    rfile = getattr(req, "rfile", None)
    if rfile is None:
        return True
    if req.chunked_read:
        return bool(getattr(rfile, "closed", False))
    return getattr(rfile, "remaining", 0) <= 0


class _LingeringConnection(HTTPConnection):
    unread_body = False

    def __init__(self, server, sock, makefile):
        super().__init__(server, header_gate.PrefixedSocket(sock), makefile)

    def close(self):
        if self.unread_body and not self.linger:
            self.unread_body = False
            _linger(self)
        super().close()


def _linger(conn: HTTPConnection) -> None:
    sock = conn.socket
    try:
        conn.wfile.flush()
        sock.shutdown(socket.SHUT_WR)  # the answer is complete: FIN
        deadline = time.monotonic() + LINGER_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(min(left, 0.5))
            if not sock.recv(256 * 1024):
                break  # the client closed too
    except (OSError, ValueError):
        pass  # timed out, reset or already closed: close now


class _ContextSSLAdapter(BuiltinSSLAdapter):
    """cheroot's builtin TLS adapter around a ready ``ssl.SSLContext``."""

    def __init__(self, context: ssl.SSLContext):  # noqa: super().__init__ needs certificate files
        self.certificate = self.private_key = self.certificate_chain = None
        self.ciphers = self.private_key_password = None
        self.context = context
        self._server_env = {}

    def wrap(self, sock):
        # The handshake is not done here, in cheroot's only accept thread, where a client that
        # never sends its hello would stall every other one: the header gate does it, unblocking.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), {}


# fidelity: Slow and idle clients
class _GatedServer(wsgi.Server):
    def process_conn(self, conn):
        if header_gate.admit(self, conn):
            super().process_conn(conn)


def make_server(app, listener: Listener, threads: int, name: str) -> wsgi.Server:
    server = _GatedServer(
        (listener.host, listener.port),
        app,
        numthreads=threads,
        server_name=name,
        timeout=SOCKET_TIMEOUT,
        request_queue_size=1024,  # the listen backlog: many clients may connect at once
    )
    server.gateway = _CloseUnreadGateway
    server.ConnectionClass = _LingeringConnection
    server.max_request_body_size = 0  # limits are per route, in the app (emulator.pipeline.body_limits)
    server.max_request_header_size = MAX_HEADER_BYTES
    if listener.ssl_context is not None:
        server.ssl_adapter = _ContextSSLAdapter(listener.ssl_context)
    return server


class Servers:
    """Several cheroot servers for one app, each in its own thread; ``stop()`` ends them all."""

    def __init__(self, app, listeners: list[Listener], threads: int, name: str):
        if not listeners:
            raise ValueError("at least one listener is needed")
        self.listeners = list(listeners)
        self.servers = [make_server(app, lst, threads, name) for lst in self.listeners]
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._closed = False
        self._errors: list[BaseException] = []

    def start(self) -> Servers:
        # Bind every socket first: a port in use fails the start, not a thread later.
        for server in self.servers:
            server.prepare()
        for server, lst in zip(self.servers, self.listeners):
            thread = threading.Thread(target=self._serve, args=(server,), daemon=True,
                                      name=f"http-{lst.scheme}-{lst.port}")
            thread.start()
            self._threads.append(thread)
        return self

    def _serve(self, server: wsgi.Server) -> None:
        try:
            server.serve()
        except BaseException as exc:  # noqa: BLE001  reported by wait(); one dead listener stops all
            self._errors.append(exc)
        finally:
            self._stopped.set()

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The addresses actually bound (port 0 picks a free one)."""
        return [server.bind_addr for server in self.servers]

    def wait(self) -> None:
        """Block until a server stops (or stop() is called), then stop the others."""
        self._stopped.wait()
        self.stop()
        if self._errors:
            raise self._errors[0]

    def request_stop(self) -> None:
        """Ask wait() to stop everything (safe from a signal handler's helper thread)."""
        self._stopped.set()

    def stop(self) -> None:
        self._stopped.set()
        with self._stop_lock:
            if self._closed:
                return
            self._closed = True
        for server in self.servers:
            try:
                server.stop()
            except Exception:  # noqa: BLE001  stopping the rest matters more
                _logger.exception("could not stop %s", server.bind_addr)


def run_until_signalled(servers: Servers) -> None:
    """Serve until SIGTERM/SIGINT (the launcher and `docker stop` send SIGTERM)."""
    def _stop(signum, _frame):
        _logger.info("signal %s: stopping", signum)
        threading.Thread(target=servers.request_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    servers.start()
    servers.wait()
