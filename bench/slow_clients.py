"""Slow and idle clients: does every listener still answer while hundreds of connections sit open?

`python -m bench.slow_clients [--held N] [--probes N]` starts a fresh emulator, and, listener by
listener (Databricks HTTP, Azure ML HTTP, HTTPS and CONNECT proxy, the S3 store), holds N
connections open that never finish a request - silent ones (on HTTPS: no TLS hello), request heads
cut off mid-way (a client trickling its headers) and, on the proxy, idle tunnels - then times
/health and an authenticated call, each on a new connection. Writes bench/slow-clients-latest.json.
`python -m bench` measures the same with the workspaces of its run (a target row: p99 <= 1 s).

``listeners(emu)`` and ``hold(listener, n)`` are what tests/test_slow_clients.py holds them with.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

LATEST = Path(__file__).with_name("slow-clients-latest.json")
PARTIAL_HEAD = b"GET /slow HTTP/1.1\r\nHost: slow\r\nX-Trickle: a"
TUNNEL_HOST = "management.azure.com"


@dataclass
class Listener:
    name: str
    host: str
    port: int
    kind: str  # "http", "https" or "proxy"
    cafile: str | None
    health: Callable[[], requests.Response]
    api: Callable[[], requests.Response]  # an authenticated call (the S3 store: an unsigned one, refused)


def _get(method: str, url: str, **kwargs) -> requests.Response:
    with requests.Session() as session:  # a new connection per call: accept and handshake included
        session.trust_env = False
        return session.request(method, url, timeout=30, **kwargs)


def _msi_token(aml: dict) -> str:
    return _get("GET", aml["identity_endpoint"], headers={"X-IDENTITY-HEADER": aml["identity_header"]},
                params={"resource": "https://management.azure.com/", "api-version": "2019-08-01"}
                ).json()["access_token"]


def listeners(emu) -> list[Listener]:
    """Every listener of a running emulator, with a health probe and an authenticated call."""
    db, status = emu.databricks, emu.status()
    aml, s3_url = status["azureml"], status["s3"]["url"]
    arm = {"Authorization": f"Bearer {_msi_token(aml)}"}
    scope = (f"subscriptions/{aml['subscription_id']}/resourceGroups/{aml['resource_group']}/providers/"
             f"Microsoft.MachineLearningServices/workspaces/{aml['workspace_name']}")
    version = {"api-version": "2023-10-01"}
    ca = aml["ca_bundle"]
    tunnel = {"https": aml["proxy_url"]}

    def at(name: str, url: str, kind: str, health, api, cafile=None) -> Listener:
        parts = urlsplit(url)
        return Listener(name, parts.hostname, parts.port, kind, cafile, health, api)

    return [
        at("databricks http", db.url, "http", lambda: _get("GET", f"{db.url}/health"),
           lambda: _get("POST", f"{db.url}/api/2.0/mlflow/experiments/search", json={"max_results": 1},
                        headers={"Authorization": f"Bearer {db.token}"})),
        at("azureml http", aml["url"], "http", lambda: _get("GET", f"{aml['url']}/health"),
           lambda: _get("GET", f"{aml['url']}/{scope}", params=version, headers=arm)),
        at("azureml https", aml["tls_url"], "https", lambda: _get("GET", f"{aml['tls_url']}/health", verify=ca),
           lambda: _get("GET", f"{aml['tls_url']}/{scope}", params=version, headers=arm, verify=ca),
           aml["ca_file"]),
        at("azureml proxy", aml["proxy_url"], "proxy",
           lambda: _get("GET", f"https://{TUNNEL_HOST}/health", verify=ca, proxies=tunnel),
           lambda: _get("GET", f"https://{TUNNEL_HOST}/{scope}", params=version, headers=arm, verify=ca,
                        proxies=tunnel), aml["ca_file"]),
        at("s3 store", s3_url, "http", lambda: _get("GET", f"{s3_url}/__emulator/health"),
           lambda: _get("GET", f"{s3_url}/")),
    ]


def _tls(sock: socket.socket, cafile: str, host: str) -> ssl.SSLSocket:
    return ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname=host)


def _tunnel(sock: socket.socket) -> socket.socket:
    sock.sendall(f"CONNECT {TUNNEL_HOST}:443 HTTP/1.1\r\nHost: {TUNNEL_HOST}:443\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the proxy closed the tunnel")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(answer[:100])
    return sock


def _open_slow(listener: Listener, i: int) -> socket.socket:
    """The i-th slow connection: the kinds alternate (silent, half-sent head, ...)."""
    sock = socket.create_connection((listener.host, listener.port), timeout=30)
    try:
        if listener.kind == "proxy":
            kind = i % 4
            if kind == 1:
                sock.sendall(f"CONNECT {TUNNEL_HOST}:443 HTTP/1.1\r\nHost: ".encode())
            elif kind >= 2:
                sock = _tunnel(sock)  # kind 2: a tunnel left silent (no TLS hello inside)
                if kind == 3:
                    sock = _tls(sock, listener.cafile, TUNNEL_HOST)
                    sock.sendall(PARTIAL_HEAD)
        elif i % 2:
            if listener.kind == "https":
                sock = _tls(sock, listener.cafile, listener.host)
            sock.sendall(PARTIAL_HEAD)
        return sock
    except BaseException:
        sock.close()
        raise


@contextlib.contextmanager
def hold(targets: list[Listener], per_listener: int) -> Iterator[int]:
    """Hold ``per_listener`` slow connections on each listener; yields how many are open."""
    held: list[socket.socket] = []
    try:
        for listener in targets:
            for i in range(per_listener):
                held.append(_open_slow(listener, i))
        yield len(held)
    finally:
        for sock in held:
            sock.close()


def _p99(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=100, method="inclusive")[98], 3) if len(samples) > 1 else samples[0]


def measure(emu, held: int = 500, probes: int = 30) -> dict:
    """Per listener, with ``held`` slow connections on it: p99 / max seconds of /health and of an
    authenticated call (``probes`` of each), and whether every answer was the expected one."""
    figures = {}
    for listener in listeners(emu):
        times, ok = [], True
        with hold([listener], held) as open_now:
            for _ in range(probes):
                for call in (listener.health, listener.api):
                    started = time.monotonic()
                    status = call().status_code
                    times.append(time.monotonic() - started)
                    ok = ok and status < 500
        figures[listener.name] = {"held": open_now, "calls": len(times), "p99_s": _p99(times),
                                  "max_s": round(max(times), 3), "answered": ok}
    worst = max(f["p99_s"] for f in figures.values())
    return {"held_per_listener": held, "listeners": figures, "worst_p99_s": worst}


def main(argv=None) -> int:
    from bench.__main__ import _load, machine
    from harness.workspaces import Emulator

    parser = argparse.ArgumentParser(prog="python -m bench.slow_clients", description=__doc__)
    parser.add_argument("--held", type=int, default=500)
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--out", type=Path, default=LATEST)
    args = parser.parse_args(argv)
    result = {"machine": machine(), "load_average_at_start": _load()}
    emu = Emulator(Path(tempfile.mkdtemp(prefix="emulator-bench-slow-"))).up()
    try:
        result["slow_clients"] = measure(emu, args.held, args.probes)
    finally:
        emu.down()
    result["load_average_at_end"] = _load()
    text = json.dumps(result, indent=2)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
