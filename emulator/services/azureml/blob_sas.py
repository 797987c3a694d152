"""Moved to :mod:`emulator.services.blob.sas` (shared with the Databricks role); kept as an alias."""

from emulator.services.blob.sas import *  # noqa: F401,F403
from emulator.services.blob.sas import (  # noqa: F401
    AUTH_FAILED,
    READ,
    SAS_VERSION,
    TTL_SECONDS,
    WRITE,
    blob_url,
    sign,
    verify,
)
