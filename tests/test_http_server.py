"""emulator.workspace.http_server: one app on several listeners (HTTP and HTTPS), real sockets, real clients."""

import shutil
import socket
import ssl
import subprocess
import threading

import pytest
import requests

from emulator.workspace.http_server import Listener, Servers


def app(environ, start_response):
    """Answers without reading the body (like a 401), naming the scheme it was reached on."""
    body = f"{environ['wsgi.url_scheme']} {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def tls_context(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def test_one_app_on_an_http_and_an_https_listener(tls_context):
    context, cert = tls_context
    servers = Servers(app, [Listener("127.0.0.1", 0), Listener("127.0.0.1", 0, context)], threads=2, name="t")
    servers.start()
    waiter = threading.Thread(target=servers.wait, daemon=True)
    waiter.start()
    try:
        (_, http_port), (_, https_port) = servers.bound
        assert requests.get(f"http://127.0.0.1:{http_port}/a", timeout=30).text == "http /a"
        assert requests.get(f"https://127.0.0.1:{https_port}/b", verify=str(cert), timeout=30).text == "https /b"
    finally:
        servers.stop()
        waiter.join(timeout=30)
    assert not waiter.is_alive()


def test_an_answer_to_an_unread_body_closes_the_connection():
    servers = Servers(app, [Listener("127.0.0.1", 0)], threads=2, name="t").start()
    try:
        (_, port), = servers.bound
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n"
                         b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.count(b"HTTP/1.1 200") == 1 and b"/smuggled" not in received
        assert b"Connection: close" in received
        # A request whose body was read keeps its connection (keep-alive still works).
        with requests.Session() as session:
            first = session.post(f"http://127.0.0.1:{port}/y", data=b"", timeout=30)
            assert first.headers.get("Connection") != "close"
    finally:
        servers.stop()


def test_oversized_headers_are_refused_before_the_app():
    servers = Servers(app, [Listener("127.0.0.1", 0)], threads=2, name="t").start()
    try:
        (_, port), = servers.bound
        received = b""
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            try:  # the server stops reading at the limit and closes: sending may be cut off
                sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"p" * (2 * 1024**2) + b"\r\n\r\n")
                while chunk := sock.recv(65536):
                    received += chunk
            except (BrokenPipeError, ConnectionResetError):
                pass
        # Refused (413, or the close cut it off), never served: unlimited, the app would answer 200.
        assert b" 200 " not in received
        assert not received or received.startswith(b"HTTP/1.1 413"), received[:200]
    finally:
        servers.stop()


def test_a_port_in_use_fails_the_start():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError):
            Servers(app, [Listener("127.0.0.1", port)], threads=1, name="t").start()


def _slow_clients(port: int, count: int, tls: ssl.SSLContext | None = None) -> list[socket.socket]:
    """Connections that stay open without finishing a request: half silent (on HTTPS: not even a
    TLS hello), half with a request head cut off mid-way, as a client trickling its headers."""
    held = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if i % 2:
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Trickle: a")
        held.append(sock)
    return held


def test_idle_and_trickling_connections_do_not_hold_the_worker_threads(tls_context):
    context, cert = tls_context
    client_tls = ssl.create_default_context(cafile=str(cert))
    servers = Servers(app, [Listener("127.0.0.1", 0), Listener("127.0.0.1", 0, context)], threads=2, name="t")
    servers.start()
    (_, http_port), (_, https_port) = servers.bound
    held = []
    try:
        held += _slow_clients(http_port, 100)
        held += _slow_clients(https_port, 100, client_tls)
        # Two threads per listener, 50 silent and 50 half-sent requests on each: still answered
        # (before the gate, the first two held both threads for the whole socket timeout).
        with requests.Session() as session:
            for _ in range(3):
                assert session.get(f"http://127.0.0.1:{http_port}/health", timeout=30).text == "http /health"
                assert session.get(f"https://127.0.0.1:{https_port}/health", verify=str(cert),
                                   timeout=30).text == "https /health"
        # A trickled head, once complete, is served like any other.
        slow = held[1]
        slow.sendall(b"\r\nConnection: close\r\n\r\n")
        assert slow.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
        servers.stop()


def test_a_head_that_never_completes_is_closed(monkeypatch):
    from emulator.workspace import header_gate

    monkeypatch.setattr(header_gate, "REQUEST_HEAD_TIMEOUT", 1.0)  # 20 s in service
    servers = Servers(app, [Listener("127.0.0.1", 0)], threads=2, name="t").start()
    try:
        (_, port), = servers.bound
        with socket.create_connection(("127.0.0.1", port), timeout=30) as silent, \
                socket.create_connection(("127.0.0.1", port), timeout=30) as trickling:
            trickling.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n")
            # Closed without an answer (not after cheroot's 60 s socket timeout, nor with its 408).
            assert _closed_unanswered(silent) and _closed_unanswered(trickling)
    finally:
        servers.stop()


def _closed_unanswered(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
