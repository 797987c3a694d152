"""``mlflow.rootRunId``: every run names the root of its nested-run tree, as Databricks tags it.

Tools find a run's descendants with ``tags.mlflow.rootRunId = '<root>'`` (mlflow-export-import's
nested-run export, which says the result "includes the root run"), so a run without a parent gets
its own id and a child its parent's root. The server sets it for runs from any client:

* after ``runs/create`` (the run id is known only then; the answer carries the tag too);
* when ``mlflow.parentRunId`` changes later (``runs/set-tag``, ``runs/log-batch``,
  ``runs/delete-tag``): the run and every run below it get the new root.

Lineage is read from the ``mlflow.parentRunId`` tags (not from stored roots), so runs written before
this existed are handled too. Tags are written with the store's ORM so that deleted runs in a tree
follow as well (the store's ``set_tag`` refuses runs that are not active).
"""

from __future__ import annotations

import json
import logging
import re
import threading

from flask import Flask, Response, request

_logger = logging.getLogger(__name__)

ROOT_RUN_ID = "mlflow.rootRunId"
PARENT_RUN_ID = "mlflow.parentRunId"
_ROUTE = re.compile(r"^/(?:ajax-)?api/2\.0/(?:preview/)?mlflow/(?P<ep>runs/(?:create|set-tag|log-batch|delete-tag))$")
# A parent chain longer than this is a cycle or garbage; stop there rather than loop.
_MAX_DEPTH = 1000


class Lineage:
    """Reads parent links and writes root ids straight in the tracking store's SQL tables."""

    def __init__(self):
        # One writer at a time: two re-parentings racing could otherwise leave a subtree on an old root.
        self._lock = threading.Lock()

    @staticmethod
    def _store():
        from mlflow.server.handlers import _get_tracking_store

        return _get_tracking_store()

    def _parent_of(self, session, run_id: str) -> str | None:
        from mlflow.store.tracking.dbmodels.models import SqlTag

        row = session.query(SqlTag.value).filter(SqlTag.run_uuid == run_id, SqlTag.key == PARENT_RUN_ID).first()
        return row[0] if row and row[0] else None

    def _root_of(self, session, run_id: str) -> str:
        """Follow parent links up; the topmost id reached is the root (a missing parent counts too)."""
        from mlflow.store.tracking.dbmodels.models import SqlRun

        seen, current = {run_id}, run_id
        for _ in range(_MAX_DEPTH):
            parent = self._parent_of(session, current)
            if parent is None or parent in seen:
                return current
            if session.query(SqlRun.run_uuid).filter(SqlRun.run_uuid == parent).first() is None:
                return parent  # the parent id is all that is known of the tree above
            seen.add(parent)
            current = parent
        return current

    def _subtree(self, session, run_id: str) -> list[str]:
        """The run and all runs below it (breadth first, each once)."""
        from mlflow.store.tracking.dbmodels.models import SqlTag

        found, frontier = [run_id], [run_id]
        seen = {run_id}
        while frontier:
            children = [
                r[0] for r in session.query(SqlTag.run_uuid)
                .filter(SqlTag.key == PARENT_RUN_ID, SqlTag.value.in_(frontier)).all()
                if r[0] not in seen
            ]
            seen.update(children)
            found += children
            frontier = children
        return found

    def assign(self, run_id: str) -> str:
        """Give ``run_id`` and its descendants the root of ``run_id``'s tree; returns that root."""
        from mlflow.store.tracking.dbmodels.models import SqlTag

        with self._lock, self._store().ManagedSessionMaker(read_only=False) as session:
            root = self._root_of(session, run_id)
            for member in self._subtree(session, run_id):
                session.merge(SqlTag(run_uuid=member, key=ROOT_RUN_ID, value=root))
        return root


def _with_root_tag(response: Response, root: str) -> None:
    """Add the tag to the ``runs/create`` answer, so the client's Run object carries it at once."""
    body = json.loads(response.get_data(as_text=True) or "{}")
    data = body.setdefault("run", {}).setdefault("data", {})
    tags = [t for t in data.get("tags", []) if t.get("key") != ROOT_RUN_ID]
    data["tags"] = tags + [{"key": ROOT_RUN_ID, "value": root}]
    response.set_data(json.dumps(body))


def _changes_parent(endpoint: str, body: dict) -> bool:
    if endpoint in ("runs/set-tag", "runs/delete-tag"):
        return body.get("key") == PARENT_RUN_ID
    tags = body.get("tags")
    return isinstance(tags, list) and any(isinstance(t, dict) and t.get("key") == PARENT_RUN_ID for t in tags)


def install(app: Flask) -> None:
    lineage = Lineage()

    @app.after_request
    def _root_run_id(response):
        match = _ROUTE.match(request.path)
        if not match or request.method != "POST" or response.status_code != 200:
            return response
        endpoint = match["ep"]
        try:
            if endpoint == "runs/create":
                run_id = json.loads(response.get_data(as_text=True))["run"]["info"]["run_id"]
                # fidelity: Databricks workspace
                _with_root_tag(response, lineage.assign(run_id))
                return response
            body = request.get_json(force=True, silent=True)
            body = body if isinstance(body, dict) else {}
            run_id = body.get("run_id") or body.get("run_uuid")
            if run_id and _changes_parent(endpoint, body):
                lineage.assign(run_id)  # fidelity: Databricks workspace
        except Exception:  # the write itself succeeded; a missing root tag must not turn it into a 500
            _logger.exception("could not set %s after %s", ROOT_RUN_ID, request.path)
        return response
