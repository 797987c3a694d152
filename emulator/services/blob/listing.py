"""List Blobs (``GET /<container>?restype=container&comp=list``) over a folder of files.

What azure-storage-blob 12.27 sends and parses (``ContainerClient.list_blobs`` / ``walk_blobs``):
``prefix``, ``delimiter`` (then folders below the prefix come back as ``<BlobPrefix>``),
``include=metadata``, ``marker`` + ``maxresults`` paging with ``<NextMarker>``; answered as
Storage's ``<EnumerationResults>`` XML. Names are listed in lexical order, as Storage does.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from xml.sax.saxutils import escape

MAX_RESULTS = 5000
TEMP_PREFIXES = (".blob-",)  # half-written uploads (service._write_atomically), never listed


def _names(root: Path):
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if name.startswith(TEMP_PREFIXES):
                continue
            path = Path(folder, name)
            if path.is_symlink():
                continue
            yield path.relative_to(root).as_posix(), path


def marker_of(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def name_of(marker: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def list_blobs(root: Path, *, prefix: str, delimiter: str, after: str | None,
               max_results: int) -> tuple[list, str | None]:
    """[(kind, name, path)] for one page, and the next page's first name (or None)."""
    entries: dict[str, tuple[str, Path | None]] = {}
    for name, path in _names(root):
        if not name.startswith(prefix):
            continue
        if delimiter:
            cut = name.find(delimiter, len(prefix))
            if cut >= 0:
                folder = name[:cut + len(delimiter)]
                entries.setdefault(folder, ("prefix", None))
                continue
        entries[name] = ("blob", path)
    ordered = sorted(entries)
    if after is not None:
        ordered = [n for n in ordered if n >= after]
    page, rest = ordered[:max_results], ordered[max_results:]
    return [(entries[n][0], n, entries[n][1]) for n in page], (rest[0] if rest else None)


def xml(service_endpoint: str, container: str, *, prefix: str, delimiter: str, marker: str,
        max_results: int | None, items, next_name: str | None, include_metadata: bool, metadata_of,
        etag_of, date_of) -> str:
    parts = [f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{escape(service_endpoint)}" '
             f'ContainerName="{escape(container)}">']
    if prefix:
        parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
    if marker:
        parts.append(f"<Marker>{escape(marker)}</Marker>")
    if max_results is not None:
        parts.append(f"<MaxResults>{max_results}</MaxResults>")
    if delimiter:
        parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
    parts.append("<Blobs>")
    for kind, name, path in items:
        if kind == "prefix":
            parts.append(f"<BlobPrefix><Name>{escape(name)}</Name></BlobPrefix>")
            continue
        stat = path.stat()
        when = date_of(stat.st_mtime)
        parts.append(
            f"<Blob><Name>{escape(name)}</Name><Properties><Creation-Time>{when}</Creation-Time>"
            f"<Last-Modified>{when}</Last-Modified><Etag>{escape(etag_of(stat))}</Etag>"
            f"<Content-Length>{stat.st_size}</Content-Length><Content-Type>application/octet-stream</Content-Type>"
            "<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>"
            "<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
            "<ServerEncrypted>true</ServerEncrypted></Properties>")
        if include_metadata:
            meta = metadata_of(name)
            parts.append("<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in meta.items()) + "</Metadata>")
        parts.append("</Blob>")
    parts.append("</Blobs>")
    parts.append(f"<NextMarker>{escape(marker_of(next_name))}</NextMarker>" if next_name else "<NextMarker />")
    parts.append("</EnumerationResults>")
    return "".join(parts)
