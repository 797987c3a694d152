"""The per-user cache outside any checkout: client venvs, store templates, image build context.

``EMULATOR_CACHE_DIR`` moves it (CI keeps it between runs); else ``$XDG_CACHE_HOME`` or ``~/.cache``.
"""

from __future__ import annotations

import os
from pathlib import Path

DISTRIBUTION = "mlflow-azure-emulator"
CACHE_ENV = "EMULATOR_CACHE_DIR"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / DISTRIBUTION
