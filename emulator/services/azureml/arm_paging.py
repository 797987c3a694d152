"""ARM list pages: ``$orderBy``/``orderBy``, ``$top``, ``$skip`` continuation tokens, ``nextLink``.

azure-ai-ml's ``label="latest"`` and ``name@latest`` list model versions with
``$orderBy=createdtime desc&$top=1`` and take the first item; every pager follows ``nextLink``
until it is null. One function shapes any workspace list so all of them page alike.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Callable
from urllib.parse import urlencode

from flask import request

from emulator.services.azureml.arm_resources import ArmError

PAGE_SIZE = 100  # items per page (the real page size is not documented)
PAGE_SIZE_ENV = "EMULATOR_AZUREML_PAGE_SIZE"  # smaller pages, so tests see nextLink with few items


def _page_size() -> int:
    try:
        return max(1, int(os.environ.get(PAGE_SIZE_ENV, PAGE_SIZE)))
    except ValueError:
        return PAGE_SIZE


# fidelity: ARM lists - order, top, skip
# Model versions take "createdtime desc" (azure-ai-ml's OrderString); online endpoints take the
# generated enum ("CreatedAtDesc"); both name the same two orders, plus last-modified for the enum.
_ORDERS = {
    "createdtime asc": ("createdAt", False), "createdtime desc": ("createdAt", True),
    "createdatasc": ("createdAt", False), "createdatdesc": ("createdAt", True),
    "updatedatasc": ("lastModifiedAt", False), "updatedatdesc": ("lastModifiedAt", True),
}


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _order(values: list[dict], raw: str | None) -> list[dict]:
    if raw is None:
        return values
    key = " ".join(raw.split()).lower()
    if key not in _ORDERS:
        raise ArmError("BadArgument", f"Invalid orderBy '{raw}': use 'createdtime desc' or 'createdtime asc' "
                       "(or CreatedAtDesc, CreatedAtAsc, UpdatedAtDesc, UpdatedAtAsc).", 400)
    field, descending = _ORDERS[key]
    # Ties (the same millisecond) fall back to the name, numbers compared as numbers: version 10 after 9.
    return sorted(values, key=lambda v: ((v.get("systemData") or {}).get(field) or "", _natural(v["name"])),
                  reverse=descending)


def _int_arg(name: str, minimum: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ArmError("BadArgument", f"'{name}' must be an integer of at least {minimum}, got '{raw}'.", 400)
    return value


def _token(offset: int, left: int | None) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset, "left": left}).encode()).decode().rstrip("=")


def _from_token(raw: str) -> tuple[int, int | None]:
    try:
        state = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        offset, left = state["offset"], state["left"]
        if not isinstance(offset, int) or offset < 0 or not (left is None or (isinstance(left, int) and left >= 0)):
            raise ValueError
        return offset, left
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ArmError("BadArgument", "Invalid '$skip' continuation token: pass the nextLink of the previous "
                       "page unchanged.", 400) from None


def _next_link(token: str) -> str:
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "$skip"]
    return f"{request.base_url}?{urlencode([*args, ('$skip', token)])}"


def page(values: list[dict], where: Callable[[dict], bool] | None = None) -> dict:
    """One page of ``values`` (ARM resources with ``name`` and ``systemData``) as ``{value, nextLink}``.

    ``$top`` caps the whole listing (the first page of "latest" is one item); the token in
    ``nextLink`` carries where the next page starts and how many of ``$top`` are left.
    """
    if where is not None:
        values = [v for v in values if where(v)]
    values = _order(values, request.args.get("$orderBy", request.args.get("orderBy")))
    top = _int_arg("$top", 1)
    if "$skip" in request.args:
        offset, left = _from_token(request.args["$skip"])
    else:
        offset, left = 0, top
    size = _page_size() if left is None else min(_page_size(), left)
    chunk = values[offset:offset + size]
    left = None if left is None else left - len(chunk)
    more = offset + len(chunk) < len(values) and (left is None or left > 0)
    return {"value": chunk, "nextLink": _next_link(_token(offset + len(chunk), left)) if more else None}
