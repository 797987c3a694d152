"""User-defined blob metadata (``x-ms-meta-<name>``), kept beside the blobs, never among them.

Azure Storage stores name/value pairs with a blob: Put Blob and Put Block List set them from
``x-ms-meta-*`` request headers (replacing what was there), Set Blob Metadata
(``PUT ?comp=metadata``) replaces them, Get Blob / Get Blob Properties answer them as headers and
List Blobs with ``include=metadata`` as ``<Metadata>``. azure-ai-ml's upload confirmation
(``upload_status: completed`` + the asset's name and version on the first file of an upload) is
such metadata: without it every re-upload of the same folder would start over.

Stored as one JSON file per blob under ``<staging>/metadata/`` (named by a hash of container and
blob), so the artifact tree MLflow lists holds only the blobs themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

PREFIX = "x-ms-meta-"
# Metadata names are C# identifiers (Storage's rule); 8 KiB in all.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_TOTAL = 8 * 1024


class BadMetadata(ValueError):
    pass


def from_headers(headers) -> dict[str, str]:
    found = {}
    for key, value in headers.items():
        if key.lower().startswith(PREFIX):
            # WSGI spells '_' and '-' alike in header names (HTTP_X_MS_META_UPLOAD_STATUS), and a
            # metadata name cannot hold '-' (C# identifier): so every '-' here was a '_'. Header
            # names are case-insensitive; Storage keeps the case, we answer lower case.
            name = key[len(PREFIX):].lower().replace("-", "_")
            if not _NAME.match(name):
                raise BadMetadata(f"The metadata name '{name}' is not a valid C# identifier.")
            found[name] = value
    if sum(len(k) + len(v) for k, v in found.items()) > MAX_TOTAL:
        raise BadMetadata("The metadata exceeds 8 KB.")
    return found


def as_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {PREFIX + k: v for k, v in metadata.items()}


class MetadataStore:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _file(self, container: str, blob: str) -> Path:
        return self.folder / (hashlib.sha256(f"{container}/{blob}".encode()).hexdigest() + ".json")

    def get(self, container: str, blob: str) -> dict[str, str]:
        try:
            return json.loads(self._file(container, blob).read_text())
        except (OSError, ValueError):
            return {}

    def put(self, container: str, blob: str, metadata: dict[str, str]) -> None:
        target = self._file(container, blob)
        if not metadata:
            target.unlink(missing_ok=True)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".meta-")
        with os.fdopen(fd, "w") as out:
            json.dump(metadata, out)
        os.replace(tmp, target)
