"""Azure ML run ids: hyphenated GUIDs outside, MLflow's 32 hex digits inside.

Azure ML names an interactive MLflow run by a hyphenated GUID (``2bf891a5-5cb5-4e0e-8615-
5b6ad4bd3504``); MLflow's store names it ``uuid4().hex``. Both are the same 128 bits, so the
workspace's HTTP edge (experiment_id_view.py) converts without a table. The 32-hex form is still
taken inward (ids a client or the mirror's outbox kept from before), and passes through unchanged.
"""

from __future__ import annotations

import re
import uuid

_HEX = re.compile(r"^[0-9a-f]{32}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
GUID_TEXT = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def external(run_id):
    """The store's ``<32 hex>`` as clients see it; anything else unchanged."""
    if isinstance(run_id, str) and _HEX.match(run_id):
        return str(uuid.UUID(hex=run_id))
    return run_id


def internal(run_id):
    """A client's GUID as the store's ``<32 hex>``; anything else (the 32-hex form too) unchanged."""
    if isinstance(run_id, str) and GUID.match(run_id):
        return uuid.UUID(run_id).hex
    return run_id


# search filters: the run-id comparisons (``attributes.run_id = '...'``, ``run_id IN (...)``,
# ``tags.mlflow.parentRunId = '...'``); other quoted GUIDs (a user's tag value) are left alone.
_FILTER_CLAUSE = re.compile(
    r"(?<![\w.`\"])(?P<key>(?:(?:attributes?|attr|run|tags?|tag|metadata|request_metadata)\.)?[`\"]?"
    r"(?:run_id|run_uuid|source_run_id|mlflow\.parentRunId|mlflow\.sourceRun)[`\"]?)"
    r"(?P<op>\s*(?:!?=|(?:NOT\s+)?I?LIKE|(?:NOT\s+)?IN)\s*)"
    r"(?P<value>\([^)]*\)|'[^']*'|\"[^\"]*\")",
    re.IGNORECASE,
)
_QUOTED_GUID = re.compile(r"(?<=['\"])" + GUID_TEXT + r"(?=['\"])")


def internal_filter(text, seen: dict | None = None):
    """A search filter with the GUIDs it compares run ids with written as the store's hex."""
    if not isinstance(text, str) or "-" not in text:
        return text

    def value(m):
        def one(g):
            hex_id = uuid.UUID(g[0]).hex
            if seen is not None:
                seen[hex_id] = g[0]
            return hex_id

        return m["key"] + m["op"] + _QUOTED_GUID.sub(one, m["value"])

    return _FILTER_CLAUSE.sub(value, text)
