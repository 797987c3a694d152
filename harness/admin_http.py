"""One keep-alive HTTP session per thread for the harness's admin calls to the workspaces
(``/__emulator/reset``, fault rules, the request journal, linking).

The pytest plugin makes four of these calls around every test. A bare ``requests.post`` builds
a session, scans the environment for proxies and opens a TCP connection each time: on a loaded
machine that was as long as the reset itself. Here the connection stays open between tests; one
the server closed while idle (a long test) is noticed before reuse (urllib3 checks a pooled
connection for EOF) and replaced.
"""

from __future__ import annotations

import os
import threading

import requests

_local = threading.local()


def session() -> requests.Session:
    """This thread's session (requests.Session is not meant to be shared across threads)."""
    http = getattr(_local, "session", None)
    if http is None or _local.pid != os.getpid():  # a forked child must not share its parent's sockets
        http = requests.Session()
        # The workspaces listen on loopback (or the Compose ports published there): no proxy from
        # the environment applies, and skipping its lookup saves a scan of os.environ per call.
        http.trust_env = False
        _local.session, _local.pid = http, os.getpid()
    return http
