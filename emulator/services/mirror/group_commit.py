"""Group commit: concurrent callers' writes share one transaction, so one fsync, not one each.

Each caller hands in its work and waits until the transaction that holds it has committed:
the durability promise is unchanged (a caller returns only once its write is on disk), but
while one commit is being fsync'd the writes that arrive queue up and go together in the next.
The first waiter that finds no commit in progress becomes the leader and commits everything
queued so far (leader/follower: no extra thread, nothing waits when there is no contention).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _Entry:
    __slots__ = ("work", "result", "error", "done")

    def __init__(self, work):
        self.work = work
        self.result = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit:
    def __init__(self, commit_batch: Callable[[list[_Entry]], None]):
        """``commit_batch(entries)`` runs every entry's ``work`` in one transaction and commits it,
        setting each entry's ``result`` (or ``error``, for that entry alone); if it raises, the
        whole batch failed and every entry gets that error."""
        self._commit_batch = commit_batch
        self._cv = threading.Condition()
        self._queue: list[_Entry] = []
        self._committing = False
        self.batches = 0  # how many commits, for the status (writes per commit)
        self.writes = 0

    def submit(self, work) -> Any:
        entry = _Entry(work)
        with self._cv:
            self._queue.append(entry)
            while not entry.done and self._committing:
                self._cv.wait()
            if entry.done:
                return _outcome(entry)
            self._committing = True  # lead: commit everything queued, this entry included
            batch, self._queue = self._queue, []
        try:
            self._commit_batch(batch)
        except BaseException as exc:  # nothing of the batch was committed
            for e in batch:
                e.error = exc
        finally:
            with self._cv:
                for e in batch:
                    e.done = True
                self.batches += 1
                self.writes += len(batch)
                self._committing = False
                self._cv.notify_all()
        return _outcome(entry)


def _outcome(entry: _Entry):
    if entry.error is not None:
        raise entry.error
    return entry.result
