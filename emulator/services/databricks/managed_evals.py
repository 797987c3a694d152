"""``GET /api/2.0/managed-evals/datasets``: evaluation datasets as a Databricks workspace lists them.

On tracking URI ``databricks`` MLflow 3.17's ``search_datasets`` does not call the stock
``/api/3.0/mlflow/datasets/search``: ``DatabricksRestStore`` asks this managed-evals route with
``filter=experiment_id='<id>'`` (one experiment at most), ``page_size`` and ``page_token``, and
reads ``datasets[].{dataset_id, name, digest, create_time, last_update_time}`` (ISO 8601 times) and
``next_page_token``. The datasets listed are the tracking store's own (written through the stock
``/api/3.0/mlflow/datasets/...`` routes, which the workspace serves as a stock server does).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from flask import Flask, jsonify, request

from emulator.errors import EmulatorError

PATH = "/api/2.0/managed-evals/datasets"
_FILTER = re.compile(r"^\s*experiment_id\s*=\s*'(?P<id>[0-9]{1,19})'\s*$")
_MAX_PAGE = 1000  # MLflow's default page for this call; larger asks are capped, not refused


def _iso(ms: int | None) -> str:
    # protobuf Timestamp JSON form, which the client parses with datetime.fromisoformat
    stamp = datetime.fromtimestamp((ms or 0) / 1000, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return _MAX_PAGE
    if not raw.isdigit() or int(raw) < 1:
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"page_size must be a positive integer, got '{raw}'.")
    return min(int(raw), _MAX_PAGE)


def _experiment_ids(raw: str | None) -> list[str] | None:
    if not raw:
        return None
    match = _FILTER.match(raw)
    if not match:
        raise EmulatorError("INVALID_PARAMETER_VALUE",
                            f"Unsupported filter '{raw}': only experiment_id='<id>' is supported.")
    return [match.group("id")]


def _page_token(raw: str | None) -> str | None:
    """The store's own token (base64 ``{"offset": n}``); anything else is a 400, never the store's 500."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    if not raw:
        return None
    try:
        offset = SearchUtils.parse_start_offset_from_page_token(raw)
    except (MlflowException, AttributeError, TypeError, ValueError):  # e.g. a token of base64 "[1]"
        offset = -1
    if not isinstance(offset, int) or offset < 0:
        raise EmulatorError("INVALID_PARAMETER_VALUE", f"Invalid page_token '{raw}'.")
    return raw


def dataset_json(dataset) -> dict:
    return {
        "dataset_id": dataset.dataset_id,
        "name": dataset.name,
        "digest": dataset.digest or "",
        "create_time": _iso(dataset.created_time),
        "last_update_time": _iso(dataset.last_update_time),
        "created_by": dataset.created_by or "",
        "last_updated_by": dataset.last_updated_by or "",
    }


def install(app: Flask) -> None:
    @app.route(PATH, methods=["GET"])
    def _managed_evals_datasets():
        from mlflow.server.handlers import _get_tracking_store

        size = _page_size(request.args.get("page_size"))
        experiment_ids = _experiment_ids(request.args.get("filter"))
        token = _page_token(request.args.get("page_token"))
        # fidelity: Evaluation datasets, traces and prompts
        page = _get_tracking_store().search_datasets(experiment_ids=experiment_ids, max_results=size,
                                                     page_token=token)
        body = {"datasets": [dataset_json(d) for d in page]}
        if page.token:  # the SQL store's token is base64 bytes
            body["next_page_token"] = page.token.decode() if isinstance(page.token, bytes) else page.token
        return jsonify(body)
