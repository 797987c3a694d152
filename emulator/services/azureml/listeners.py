"""The Azure ML workspace's listeners besides the plain HTTP one: HTTPS and a CONNECT proxy.

HTTPS serves the same WSGI app (cheroot, with the per-state-dir certificate from tls.py). The
proxy (arrangement A: ``HTTPS_PROXY=http://127.0.0.1:<proxy port>``) lets unmodified clients use
the real Azure host names offline: it accepts ``CONNECT <name>:443`` only for this workspace's
Azure names and tunnels it to the HTTPS listener; anything else is refused, so nothing ever goes
out to the network.

``tls_listener(config)`` describes the HTTPS listener (host, port, SSL context) for the server's
list of listeners (emulator.workspace.app); ``start_proxy(config)`` runs the proxy in a daemon thread.
"""

from __future__ import annotations

import logging
import select
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass

from emulator.services.azureml import hosts, tls
from emulator.settings import REQUEST_HEAD_TIMEOUT, ServerConfig

_logger = logging.getLogger(__name__)
MAX_PROXY_HEADER = 16 * 1024
# After the HTTPS listener closed its side: how long to keep taking (and dropping) what the client
# still sends, so it reads the answer rather than a reset. Bounded in time; nothing is stored.
DISCARD_SECONDS = 10.0


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    certfile: str | None = None  # the same certificate as files, for servers that load their own
    keyfile: str | None = None


def certificate_names(config: ServerConfig) -> list[str]:
    names = ["127.0.0.1", "localhost", hosts.public_host(config), *hosts.azure_names(config)]
    return list(dict.fromkeys(n.lower() for n in names))  # ordered, no duplicates


def tls_listener(config: ServerConfig) -> Listener | None:
    if not config.tls_port:
        return None
    files = tls.ensure(config.state_dir, certificate_names(config))
    return Listener(config.host, config.tls_port, tls.server_context(files), str(files.cert), str(files.key))


class _ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # socketserver's 5 drops SYNs (seconds of retry) when many connect at once

    def __init__(self, address, allowed: set[str], target: tuple[str, int]):
        self.allowed = allowed
        self.target = target
        super().__init__(address, _ConnectHandler)


class _ConnectHandler(socketserver.BaseRequestHandler):
    def _answer(self, status: str, text: str = "") -> None:
        body = text.encode()
        self.request.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: "
                             f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)

    def handle(self) -> None:
        sock: socket.socket = self.request
        deadline = time.monotonic() + REQUEST_HEAD_TIMEOUT  # a trickled head holds its thread no longer
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                # fidelity: Slow and idle clients
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
                if len(head) > MAX_PROXY_HEADER:
                    return self._answer("431 Request Header Fields Too Large")
        except OSError:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) != 3 or line[0].upper() != "CONNECT":
            return self._answer("405 Method Not Allowed",
                                "This proxy only tunnels HTTPS (CONNECT) to the emulated Azure hosts.\n")
        host, _, port = line[1].rpartition(":")
        if host.lower() not in self.server.allowed or port != "443":
            # fidelity: Azure ML real clients (arrangement A) -- never a way out to the network
            return self._answer("403 Forbidden", f"{line[1]} is not an emulated Azure host.\n")
        try:
            upstream = socket.create_connection(self.server.target, timeout=30)
        except OSError as exc:
            return self._answer("502 Bad Gateway", f"the emulator's HTTPS listener is down: {exc}\n")
        rest = head.split(b"\r\n\r\n", 1)[1]
        with upstream:
            sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            _pipe(sock, upstream)


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways until both sides are done; half-closes pass through.

    The HTTPS listener may answer before it has read a request's body (a 413, a 401) and then
    close; the client is still sending. Cutting the tunnel then would reset the client's socket
    before it reads the answer (a TLS EOF instead of the 413). So an upstream FIN is passed on as
    a FIN, and what the client still sends is discarded for up to ``DISCARD_SECONDS``.
    """
    # fidelity: Azure ML real clients
    client.settimeout(None)
    upstream.settimeout(None)
    peers = {client: upstream, upstream: client}
    reading = [client, upstream]
    upstream_gone_at = None
    while reading:
        wait = 600 if upstream_gone_at is None else DISCARD_SECONDS - (time.monotonic() - upstream_gone_at)
        if wait <= 0:
            return
        readable, _, _ = select.select(reading, [], [], wait)
        if not readable:
            return
        for src in readable:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            dst = peers[src]
            if not data:
                reading.remove(src)
                if src is upstream and upstream_gone_at is None:
                    upstream_gone_at = time.monotonic()
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                continue
            if src is client and upstream_gone_at is not None:
                continue  # nobody reads it any more: discard
            try:
                dst.sendall(data)
            except OSError:
                if dst is client:
                    return  # the client went away: nothing left to deliver
                upstream_gone_at = upstream_gone_at or time.monotonic()
                if upstream in reading:
                    reading.remove(upstream)
                try:
                    client.shutdown(socket.SHUT_WR)
                except OSError:
                    pass


def start_proxy(config: ServerConfig) -> threading.Thread | None:
    """The CONNECT proxy in a daemon thread (it is not a WSGI listener), if configured."""
    if not (config.proxy_port and config.tls_port):
        return None
    target_host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    proxy = _ConnectProxy((config.host, config.proxy_port), set(hosts.azure_names(config)),
                          (target_host, config.tls_port))
    thread = threading.Thread(target=proxy.serve_forever, name="connect-proxy", daemon=True)
    thread.start()
    _logger.info("azureml CONNECT proxy listening on %s:%s", config.host, config.proxy_port)
    return thread
