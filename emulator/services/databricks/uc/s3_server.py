"""The S3 process: moto's S3 app behind the gate, served by waitress on its own port.

``python -m emulator.services.databricks.uc.s3_server --state-dir <state> --port N`` (``emulator.control.s3_store``
starts it next to the workspaces). Objects are kept in ``<state>/s3/`` across restarts.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from emulator.services.databricks.uc.credentials import master_key
from emulator.services.databricks.uc.s3_files import ObjectFiles

_logger = logging.getLogger(__name__)

BUCKET = "uc-models"  # one bucket per emulated metastore, as UC's managed storage root


def build_gate(state_root: Path, token: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import create_backend_app
    from moto.s3.models import s3_backends

    from emulator.services.databricks.uc.s3_gate import S3Gate

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    gate = S3Gate(create_backend_app("s3"), backend, master_key(token), ObjectFiles(state_root / "s3"))
    gate.ensure_bucket(BUCKET)
    restored = gate.restore()
    _logger.info("S3: %d object(s) restored from %s", restored, state_root / "s3")
    return gate


def main(argv=None) -> None:
    from waitress import serve

    from emulator.control.state import StateDir

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
          max_request_body_size=8 * 1024**3)


if __name__ == "__main__":
    main()
