"""The S3 store's process: ``python -m emulator.control.s3_serve --state-dir <state> --port N``.

The control plane's side of it: reads the state dir (the Databricks workspace's token keys the
gate) and serves the app ``emulator.services.s3.app`` builds, on waitress.
"""

from __future__ import annotations

import argparse
import logging
import os

from emulator.control.state import StateDir
from emulator.services.s3.app import build_gate
from emulator.settings import WAITRESS_CONNECTION_LIMITS

_logger = logging.getLogger(__name__)


def main(argv=None) -> None:
    from waitress import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.umask(0o077)
    state = StateDir(args.state_dir)
    gate = build_gate(state.root, state.config()["databricks_token"])
    _logger.info("UC S3 storage listening on %s:%s", args.host, args.port)
    serve(gate, host=args.host, port=args.port, threads=8, ident="emulator-s3",
          max_request_body_size=8 * 1024**3, **WAITRESS_CONNECTION_LIMITS)


if __name__ == "__main__":
    main()
