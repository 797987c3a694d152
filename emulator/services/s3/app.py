"""The S3 store's app: moto's S3 behind the gate, its objects kept in ``<state>/s3/`` across restarts.

Its process (``python -m emulator.control.s3_serve``) is started by ``emulator.control.s3_store``
next to the workspaces, and is the ``s3`` service under Compose.
"""

from __future__ import annotations

import logging
from pathlib import Path

from emulator.services.s3.credentials import master_key
from emulator.services.s3.object_files import ObjectFiles

_logger = logging.getLogger(__name__)

BUCKET = "uc-models"  # one bucket per emulated metastore, as UC's managed storage root


def build_gate(state_root: Path, token: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_server.werkzeug_app import create_backend_app
    from moto.s3.models import s3_backends

    from emulator.services.s3.gate import S3Gate

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    gate = S3Gate(create_backend_app("s3"), backend, master_key(token), ObjectFiles(state_root / "s3"))
    gate.ensure_bucket(BUCKET)
    restored = gate.restore()
    _logger.info("S3: %d object(s) restored from %s", restored, state_root / "s3")
    return gate
