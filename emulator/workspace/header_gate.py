"""Hand a connection to a worker thread only once its request head has arrived.

cheroot gives every new connection, and every keep-alive connection that turns readable, to one
of its few worker threads, which then blocks reading the request line and headers (and, on
HTTPS, runs the TLS handshake in the single accept thread). So a handful of clients that connect
and stay silent, or trickle their headers a byte at a time, hold every thread - and /health
times out for everyone. A leaky client pool on a shared CI machine does that without malice.

The gate runs in cheroot's selector thread instead: it finishes the TLS handshake and reads
what the client has sent so far without blocking, keeps the connection in the selector until
the blank line that ends the headers (or the header size limit, or EOF) has arrived, and only
then lets a worker have it. A worker thus starts with the whole head buffered
(``PrefixedSocket`` replays the bytes the gate read). A client gets ``REQUEST_HEAD_TIMEOUT`` s,
from its first byte of a request (or from connecting), to send the whole head; then cheroot's
own expiry closes the socket. Idle sockets cost a file descriptor, never a thread.
"""

from __future__ import annotations

import ssl
import time

from emulator.settings import REQUEST_HEAD_TIMEOUT

_READ_CHUNK = 64 * 1024
_HEAD_END = b"\r\n\r\n"

READY, WAIT, DROP = "ready", "wait", "drop"


class PrefixedSocket:
    """A connection's socket whose first reads return the bytes the gate already took from it."""

    def __init__(self, sock):
        self.wrapped = sock
        self.prefix = bytearray()
        self.handshaken = not isinstance(sock, ssl.SSLSocket)
        self.head_started: float | None = None

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def recv_into(self, buffer, nbytes=0, flags=0):
        if self.prefix:
            n = min(nbytes or len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            del self.prefix[:n]
            return n
        return self.wrapped.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize, flags=0):
        if self.prefix:
            data = bytes(self.prefix[:bufsize])
            del self.prefix[:bufsize]
            return data
        return self.wrapped.recv(bufsize, flags)


def _step(sock: PrefixedSocket, ssl_adapter, head_limit: int) -> tuple[str, dict | None]:
    """Advance one connection without blocking: (READY | WAIT | DROP, TLS environ if just made)."""
    raw = sock.wrapped
    ssl_env = None
    if not sock.handshaken:
        try:
            raw.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return WAIT, None
        except (ssl.SSLError, OSError):
            return DROP, None  # not TLS (or a broken peer): nothing to answer in
        sock.handshaken = True
        ssl_env = ssl_adapter.get_environ(raw)
    while len(sock.prefix) < head_limit:
        seen = len(sock.prefix)
        try:
            chunk = raw.recv(_READ_CHUNK)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return WAIT, ssl_env
        except OSError:
            return DROP, ssl_env
        if not chunk:
            return (READY if sock.prefix else DROP), ssl_env  # EOF: a cut request gets cheroot's 400
        sock.prefix += chunk
        if sock.prefix.find(_HEAD_END, max(0, seen - 3)) >= 0:
            return READY, ssl_env
    return READY, ssl_env  # over the limit: cheroot answers its 413/414


def admit(server, conn) -> bool:
    """Whether ``conn`` may go to a worker now; if not, it waits in the selector (or is closed).

    Called by the server's ``process_conn``, from cheroot's selector thread (or from a worker
    returning a keep-alive connection with bytes already buffered, which goes straight through).
    """
    sock = conn.socket
    if not isinstance(sock, PrefixedSocket) or conn.rfile.has_data():
        return True
    sock.wrapped.settimeout(0)
    try:
        state, ssl_env = _step(sock, server.ssl_adapter, server.max_request_header_size or 1024**2)
    finally:
        try:
            sock.wrapped.settimeout(server.timeout)
        except OSError:
            pass
    if ssl_env is not None:
        conn.ssl_env = ssl_env
    if state == READY:
        sock.head_started = None
        return True
    if state == DROP:
        conn.close()
        return False
    now = time.time()
    if sock.head_started is None:
        sock.head_started = now
    # cheroot's selector closes a registered connection once ``last_used`` is older than
    # ``server.timeout``: dating it back makes that happen REQUEST_HEAD_TIMEOUT after the head began.
    server.put_conn(conn)  # back into the selector until more arrives
    conn.last_used = sock.head_started + REQUEST_HEAD_TIMEOUT - server.timeout
    return False
